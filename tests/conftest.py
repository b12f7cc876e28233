"""Shared test setup: tests/ on sys.path for its helper modules, and the MicroPython VM fixture."""

import sys
from pathlib import Path

import pytest
from lampwatch.vnode import vm

# tests/ is not a package; its helpers (servers, ...) are imported by top-level name.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def micropython_vm():
    """lampwatch.vnode.vm.run_micropython, after checking the VM is installed: a missing VM
    FAILS the test, with the command that installs it; it never skips."""
    reason = vm.vm_missing_reason()
    if reason is not None:
        pytest.fail(reason, pytrace=False)
    return vm.run_micropython
