"""A technician's tools at a node: build and flash the firmware, batches, commissioning."""
