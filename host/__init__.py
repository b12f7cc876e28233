"""lampwatch host: collector, OEE engine and the `lampwatch` CLI."""

__version__ = "0.1.0"
