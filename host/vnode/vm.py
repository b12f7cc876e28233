"""The one way lampwatch runs code in the real MicroPython VM (WebAssembly port under Node.js).

Each call starts a fresh VM in its own Node process (run.mjs, beside this file), so runs never
share state and a runaway program is killed without taking the caller with it. The virtual
node's micropython engine (mpvm.py) and the tests both run their code through run_micropython.

The VM is the official MicroPython 1.27 WebAssembly port (npm
@micropython/micropython-webassembly-pyscript), not an ESP32: it has no `machine`, `network` or
`socket`, and it has frozen modules the ESP32 lacks (`hmac`, `logging`, ...). Its GC heap grows
on demand and collects only between runs, so a run never raises MemoryError on its own; within
a run `gc.mem_alloc()` only grows, which makes it a counter of bytes allocated.
`micropython.heap_lock()` works and makes any allocation raise MemoryError. Its `asyncio` is
PyScript's, driven by the JavaScript event loop: there is no `asyncio.run()` and nothing runs
the loop during a synchronous run, so step coroutines by hand (`coro.send(None)`) instead.

The npm package is installed by `scripts/install.sh --test` into node_modules/ beside this file
(never shipped in the wheel); LAMPWATCH_NODE_MODULES names another node_modules folder.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
import subprocess
from pathlib import Path

from .. import node_files
from ..errors import LampwatchError

NODE_MODULES_ENV = "LAMPWATCH_NODE_MODULES"
VM_PACKAGE = "@micropython/micropython-webassembly-pyscript"
INSTALL_HINT = "run `bash scripts/install.sh --test` to install it (CI always does)"

_EXIT_PYTHON_ERROR = 1  # run.mjs: a Python exception or SystemExit; 2: the harness itself failed
_EXIT_HARNESS_ERROR = 2


class MicroPythonEngineError(LampwatchError):
    """The MicroPython VM is missing or broken, or a program failed inside it."""


class MicroPythonVMMissing(MicroPythonEngineError):
    """The VM (Node.js or the npm package) is not installed; tests must fail, never skip."""


class MicroPythonError(MicroPythonEngineError):
    """The program raised an exception (or exited non-zero) inside the VM.

    Attributes:
        traceback: MicroPython's traceback text (or the SystemExit message).
        stdout: what the program printed before it failed.
        returncode: the runner's exit status.
    """

    def __init__(self, traceback: str, stdout: str = "", returncode: int = _EXIT_PYTHON_ERROR):
        super().__init__(traceback.rstrip("\n"))
        self.traceback = traceback
        self.stdout = stdout
        self.returncode = returncode


class MicroPythonTimeout(MicroPythonEngineError):
    """The program did not finish within the timeout; its VM was killed.

    Attributes:
        timeout: the limit in seconds.
        stdout: what the program printed before it was killed.
    """

    def __init__(self, timeout: float, stdout: str = ""):
        super().__init__(f"MicroPython program did not finish within {timeout} s (killed)")
        self.timeout = timeout
        self.stdout = stdout


class MpvmHarnessError(MicroPythonEngineError):
    """run.mjs itself failed: a malformed job or a crash of the VM, not a Python exception."""


def package_file(name: str) -> Path:
    """A file beside this module: the Node.js side (run.mjs, repl_bridge.mjs), node_modules."""
    return Path(str(importlib.resources.files(__package__).joinpath(name)))


def vm_package_dir() -> Path:
    """Where the npm package is: $LAMPWATCH_NODE_MODULES, else node_modules/ beside this file."""
    env = os.environ.get(NODE_MODULES_ENV)
    modules = Path(env) if env else package_file("node_modules")
    return modules / VM_PACKAGE


def vm_missing_reason() -> str | None:
    """Why the VM cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return f"Node.js (`node`) is not on PATH; the MicroPython VM needs it: {INSTALL_HINT}"
    module = vm_package_dir() / "micropython.mjs"
    if not module.is_file():
        where = f" or set {NODE_MODULES_ENV}" if NODE_MODULES_ENV not in os.environ else ""
        return (f"the MicroPython VM is not installed ({module} is missing): "
                f"{INSTALL_HINT}{where}")
    return None


def require_vm() -> None:
    """Raise MicroPythonVMMissing, with what to do, unless the VM can run."""
    reason = vm_missing_reason()
    if reason is not None:
        raise MicroPythonVMMissing(reason)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="replace")


def run_micropython(
    code: str,
    files: dict[str, str] | None = None,
    timeout: float = 30,
    heap_kb: int | None = None,
    then: list[str] | None = None,
) -> str:
    """Run code as __main__ in a fresh MicroPython VM and return what it printed.

    Args:
        code: MicroPython source to run.
        files: {relative path: text} written to the VM's working directory, which is first
            on sys.path (before frozen modules) as on a node, e.g. firmware_files() so that
            `import lwproto` imports the real firmware module.
        timeout: seconds (wall clock, VM start included, about 0.2 s) before the VM is killed.
        heap_kb: initial GC heap in KiB (default 1024). Not a limit: the heap grows on demand.
        then: further sources run after `code`, each as its own top-level run in the same
            namespace. The VM collects garbage only between top-level runs, so a step that
            calls gc.collect() after a setup step sees the live heap.

    Returns:
        The program's stdout.

    Raises:
        MicroPythonError: the program raised (its traceback is the message) or exited non-zero.
        MicroPythonTimeout: it ran longer than timeout.
        MicroPythonVMMissing: Node.js or the VM package is not installed.
        MpvmHarnessError: the runner could not run the job at all.
    """
    require_vm()
    job: dict[str, object] = {"pkg": str(vm_package_dir()), "code": code, "files": files or {}}
    if heap_kb is not None:
        job["heap_kb"] = heap_kb
    if then:
        job["then"] = list(then)
    try:
        proc = subprocess.run(["node", str(package_file("run.mjs"))],
                              input=json.dumps(job).encode("utf-8"), capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:  # subprocess.run has already killed the VM
        raise MicroPythonTimeout(timeout, _text(exc.stdout)) from None
    stdout, stderr = _text(proc.stdout), _text(proc.stderr)
    if proc.returncode == 0:
        return stdout
    if proc.returncode == _EXIT_HARNESS_ERROR:
        raise MpvmHarnessError(stderr.strip() or "run.mjs failed with no message")
    if proc.returncode < 0:
        raise MpvmHarnessError(f"the VM process died of signal {-proc.returncode}: {stderr}")
    raise MicroPythonError(stderr, stdout, proc.returncode)


def firmware_files(folder: Path | None = None) -> dict[str, str]:
    """{file name: source} of the node's modules (default: the installed firmware), to pass
    as run_micropython(files=...)."""
    return {p.name: p.read_text(encoding="utf-8")
            for p in node_files.firmware_sources(folder)}
