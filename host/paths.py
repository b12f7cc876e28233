"""Where the repository's non-Python assets live, seen from the installed host package."""

from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = REPO_DIR / "firmware"
