"""`lampwatch flash` with the real mpremote against the virtual board's real MicroPython REPL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lampwatch.vnode.repl import ReplServer

MPREMOTE = Path(sys.executable).with_name("mpremote")


def mpremote(port: int, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([str(MPREMOTE), "connect", f"socket://127.0.0.1:{port}", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def board(tmp_path):
    srv = ReplServer(root_dir=tmp_path / "flash")
    srv.start()
    yield srv
    srv.stop()


def test_bridge_serves_mpremote_and_persists_files(tmp_path):
    src = tmp_path / "hello.py"
    src.write_bytes(b"print('hi')\n")
    root = tmp_path / "flash"
    with ReplServer(root_dir=root, files={"old.txt": b"x"}) as b:
        r = mpremote(b.port, "fs", "cp", str(src), ":hello.py", "+", "fs", "ls",
                     "+", "exec", "import hello", "+", "fs", "rm", ":old.txt")
        assert r.returncode == 0, r.stderr
        assert "hello.py" in r.stdout and "hi" in r.stdout
        assert b.files() == {"hello.py": b"print('hi')\n"}
        # a missing file is ENOENT (2) as on a board, so mpremote's error mapping works
        r = mpremote(b.port, "fs", "cat", ":nope.py")
        assert r.returncode != 0 and "No such file" in r.stderr
    assert {p.name: p.read_bytes() for p in root.iterdir()} == {"hello.py": b"print('hi')\n"}
    with ReplServer(root_dir=root) as b:  # restored from the host directory
        r = mpremote(b.port, "exec", "import hello")
        assert r.stdout.strip() == "hi"


def test_bridge_quota_makes_the_file_system_full(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(40_000))
    with ReplServer(quota_bytes=32 * 1024) as b:
        r = mpremote(b.port, "exec", "import os; s = os.statvfs('/'); print(s[0] * s[4])")
        assert int(r.stdout) == 32 * 1024
        r = mpremote(b.port, "fs", "cp", str(big), ":big.bin")
        assert r.returncode != 0 and "No space left" in r.stderr
