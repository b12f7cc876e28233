"""CLI start-up benchmark: `lampwatch --help` against a bare `python -c 'import click'`.

    .venv/bin/python bench/cli_help.py [--runs 30] [--warmup 3]

Runs the two commands alternately (so load on the machine affects both alike), each a fresh
process of the same interpreter: the baseline is this interpreter with `-c 'import click'`,
the subject the installed `lampwatch` entry point beside it (whose shebang must name this
interpreter). Prints one JSON object: the median and minimum wall time of each, in seconds,
and ratio = median(lampwatch --help) / median(import click). Issue 11's limit is 2.5.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

LIMIT = 2.5


def entry_point() -> Path:
    """The installed `lampwatch` script next to this interpreter, checked to run on it."""
    script = Path(sys.executable).parent / "lampwatch"
    if not script.is_file():
        sys.exit(f"cli_help: no {script}: install lampwatch into this environment first")
    shebang = script.read_text(encoding="utf-8").splitlines()[0]
    if shebang != f"#!{sys.executable}":
        sys.exit(f"cli_help: {script} runs {shebang[2:]!r}, not this interpreter "
                 f"{sys.executable!r}; the comparison would not be fair")
    return script


def wall_s(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30, help="timed runs of each command")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs of each first")
    args = ap.parse_args()
    baseline = [sys.executable, "-c", "import click"]
    subject = [str(entry_point()), "--help"]
    for _ in range(args.warmup):  # fill the page cache and the .pyc files
        wall_s(baseline)
        wall_s(subject)
    base_s, help_s = [], []
    for _ in range(args.runs):
        base_s.append(wall_s(baseline))
        help_s.append(wall_s(subject))
    ratio = statistics.median(help_s) / statistics.median(base_s)
    print(json.dumps({
        "python": sys.executable,
        "runs": args.runs,
        "import_click_s": {"median": round(statistics.median(base_s), 4),
                           "min": round(min(base_s), 4)},
        "lampwatch_help_s": {"median": round(statistics.median(help_s), 4),
                             "min": round(min(help_s), 4)},
        "ratio": round(ratio, 2),
        "limit": LIMIT,
        "within_limit": ratio <= LIMIT,
    }, indent=2))


if __name__ == "__main__":
    main()
