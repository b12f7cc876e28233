"""`python -m lampwatch.cli`: the same entry point as the `lampwatch` command."""

from . import main

main()
