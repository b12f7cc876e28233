"""The Andon board: a web page for the shop floor, served on the collector's own loop."""
