"""A virtual board's serial console: the real MicroPython VM's REPL on a TCP socket (127.0.0.1).

    with ReplServer(root_dir=tmp / "flash") as board:   # files restored from root_dir
        port = board.port                                # mpremote connect socket://127.0.0.1:PORT
        board.files()                                    # {"main.py": b"...", ...} right now
    # on stop() the board's files are written back to root_dir

The bridge (repl_bridge.mjs, run by Node.js) feeds the socket's bytes to the VM's
replProcessChar() and sends its output back; see its header for how it differs from a board.
"""

from __future__ import annotations

import base64
import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path

from typing_extensions import Self

from .vm import MicroPythonEngineError, package_file, require_vm, vm_package_dir


class ReplServer:
    """One virtual board with a file system, served on 127.0.0.1.

    Args:
        root_dir: the board's flash as a host directory: read at start, rewritten at stop.
        files: initial files instead ({"main.py": b"..."}); ignored when root_dir is given.
        quota_bytes: the file system's size (default: Emscripten's, about 4 GB).
        timeout_s: how long a control request may take (the VM may be busy running code).
    """

    def __init__(self, root_dir: Path | None = None, files: dict[str, bytes] | None = None,
                 quota_bytes: int | None = None, timeout_s: float = 30.0):
        self.root_dir = Path(root_dir) if root_dir is not None else None
        self.initial = dict(files or {})
        self.quota_bytes = quota_bytes
        self.timeout_s = timeout_s
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue = queue.Queue()

    def start(self, port: int = 0) -> int:
        """Start the VM and listen; returns the TCP port."""
        require_vm()
        files = self.initial
        if self.root_dir is not None and self.root_dir.is_dir():
            files = {p.relative_to(self.root_dir).as_posix(): p.read_bytes()
                     for p in sorted(self.root_dir.rglob("*")) if p.is_file()}
        self._proc = subprocess.Popen(["node", str(package_file("repl_bridge.mjs"))],
                                      stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        threading.Thread(target=self._read, daemon=True, name="repl-bridge").start()
        self._send({"pkg": str(vm_package_dir()), "port": port, "quota_bytes": self.quota_bytes,
                    "files": {n: base64.b64encode(d).decode() for n, d in files.items()}})
        self.port = int(self._reply("listening")["port"])
        return self.port

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)  # the bridge exited

    def _send(self, msg: dict) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(msg).encode() + b"\n")
        self._proc.stdin.flush()

    def _reply(self, event: str) -> dict:
        try:
            line = self._lines.get(timeout=self.timeout_s)
        except queue.Empty:
            raise MicroPythonEngineError(
                f"the REPL bridge did not answer within {self.timeout_s} s") from None
        if line is None:
            err = self._proc.stderr.read().decode("utf-8", "replace") if self._proc else ""
            raise MicroPythonEngineError(f"the REPL bridge exited: {err.strip()}")
        msg = json.loads(line)
        if msg.get("event") != event:
            raise MicroPythonEngineError(f"the REPL bridge said {msg!r}, expected {event}")
        return msg

    def files(self) -> dict[str, bytes]:
        """The board's files now (paths relative to its root)."""
        self._send({"cmd": "files"})
        return _decode(self._reply("files")["files"])

    def stop(self) -> dict[str, bytes]:
        """Stop the board; returns its files and writes them to root_dir (if given)."""
        if self._proc is None:
            return {}
        proc, files = self._proc, {}
        try:
            if proc.poll() is None:
                self._send({"cmd": "stop"})
                files = _decode(self._reply("files")["files"])
        finally:
            try:
                proc.wait(self.timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for f in (proc.stdin, proc.stdout, proc.stderr):
                if f is not None:
                    f.close()
            self._proc = None
        if self.root_dir is not None and files:
            if self.root_dir.is_dir():
                shutil.rmtree(self.root_dir)
            for name, data in files.items():
                path = self.root_dir / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        return files

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _decode(files: dict[str, str]) -> dict[str, bytes]:
    return {n: base64.b64decode(d) for n, d in files.items()}
