"""Reports read from the journal and from logbooks: OEE per machine, logbook OEE, node status."""
