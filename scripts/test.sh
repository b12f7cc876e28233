#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what the tests need (idempotent), then run it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
exec .venv/bin/python -m pytest "$@"
