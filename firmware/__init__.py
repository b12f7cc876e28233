# Not node firmware: this file makes firmware/ the Python package lampwatch.firmware, so the
# host ships these files in its wheel and finds them with importlib.resources
# (host/node_files.py). `lampwatch flash` never copies it to a board.
