"""Firmware build checks: every firmware module compiles with mpy-cross and type-checks as
MicroPython on the ESP32 (tests/firmware-typecheck.ini), and both checks can fail."""

import subprocess
import sys
import textwrap
from importlib.metadata import distribution
from pathlib import Path, PurePosixPath

import pytest
from lampwatch.node_files import firmware_dir, firmware_sources

ROOT = Path(__file__).resolve().parent.parent
TYPECHECK_CONFIG = ROOT / "tests" / "firmware-typecheck.ini"
FIRMWARE_DIR = firmware_dir()
FIRMWARE_FILES = firmware_sources()
# The ESP32's architecture: mpy-cross then also compiles @micropython.native / viper code for it.
MPY_ARCH = "xtensawin"
MPY_VERSION = 6

# micropython.const as the stubs declare it, and as the assembled typeshed declares it instead.
CONST_TYPED = "def const(expr: Const_T, /) -> Const_T:"
CONST_UNTYPED = "def const(expr):"


def mpy_cross(source: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mpy_cross", f"-march={MPY_ARCH}", "-o", str(out), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    "source", FIRMWARE_FILES or [None], ids=lambda p: getattr(p, "name", "none")
)
def test_firmware_module_compiles_with_mpy_cross(source, tmp_path):
    assert source is not None, f"{FIRMWARE_DIR} has no .py files to build"
    out = tmp_path / (source.stem + ".mpy")
    result = mpy_cross(source, out)
    assert result.returncode == 0, f"mpy-cross {source.name}:\n{result.stderr}{result.stdout}"
    assert out.read_bytes()[:2] == bytes([ord("M"), MPY_VERSION])


def test_mpy_cross_rejects_syntax_micropython_lacks(tmp_path):
    bad = tmp_path / "uses_match.py"
    bad.write_text("def f(x):\n    match x:\n        case 1:\n            return 2\n")
    result = mpy_cross(bad, tmp_path / "uses_match.mpy")
    assert result.returncode != 0
    assert "SyntaxError" in result.stderr


def _assemble_typeshed(dest: Path) -> Path:
    """A typeshed made of the MicroPython stdlib stubs plus the ESP32 port's modules.

    micropython-stdlib-stubs installs a typeshed layout (stdlib/, stubs/) into site-packages;
    micropython-esp32-stubs installs the port's modules beside it as top-level .pyi files.
    Both are linked under dest/stdlib and every added module is listed in VERSIONS.
    """
    added = set()
    for dist_name in ("micropython-stdlib-stubs", "micropython-esp32-stubs"):
        dist = distribution(dist_name)
        for f in dist.files or ():
            parts = PurePosixPath(str(f)).parts
            if f.suffix != ".pyi" and f.name != "VERSIONS":
                continue
            if parts[0].endswith(".dist-info") or parts[0] == "__builtins__.pyi":  # pyright's
                continue
            if parts[0] in ("stdlib", "stubs"):
                rel = PurePosixPath(*parts)
            else:
                rel = PurePosixPath("stdlib", *parts)
                added.add(parts[0].removesuffix(".pyi"))
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(Path(dist.locate_file(f)).resolve())

    versions = dest / "stdlib" / "VERSIONS"
    text = versions.read_text(encoding="utf-8")
    listed = {line.split(":")[0].strip() for line in text.splitlines() if ":" in line}
    versions.unlink()
    versions.write_text(text + "".join(f"{m}: 3.0-\n" for m in sorted(added - listed)))

    stub = dest / "stdlib" / "micropython.pyi"
    text = stub.read_text(encoding="utf-8")
    assert text.count(CONST_TYPED) == 1, "micropython.pyi changed: revisit CONST_TYPED"
    stub.unlink()
    stub.write_text(text.replace(CONST_TYPED, CONST_UNTYPED), encoding="utf-8")
    return dest


@pytest.fixture(scope="session")
def mpy_typeshed(tmp_path_factory):
    return _assemble_typeshed(tmp_path_factory.mktemp("mpy-typeshed"))


def typecheck(typeshed: Path, files) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable, "-m", "mypy",
            "--config-file", str(TYPECHECK_CONFIG),
            "--custom-typeshed-dir", str(typeshed),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )  # fmt: skip


def test_typecheck_reports_apis_the_esp32_lacks(mpy_typeshed, tmp_path):
    snippet = tmp_path / "wrong.py"
    snippet.write_text(
        textwrap.dedent("""\
            import hmac
            import time

            import click
            import machine


            def elapsed():
                return time.monotonic()


            def arm(pin):
                pin.irq(handler=None, trigger=machine.Pin.IRQ_RISING, hard="yes")


            arm(machine.Pin(4, machine.Pin.IN))
            machine.Pin(4).irq(hard="yes")
        """)
    )
    result = typecheck(mpy_typeshed, [snippet])
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert (
        'wrong.py:1: error: Cannot find implementation or library stub for module named "hmac"'
        in out
    )
    assert (
        'wrong.py:4: error: Cannot find implementation or library stub for module named "click"'
        in out
    )
    assert 'wrong.py:9: error: Module has no attribute "monotonic"  [attr-defined]' in out
    assert (
        'wrong.py:17: error: Argument "hard" to "irq" of "Pin" has incompatible type "str"; '
        'expected "bool"  [arg-type]'
    ) in out
    assert "Found 4 errors in 1 file" in out


def test_typecheck_accepts_esp32_apis_and_the_cpython_const_fallback(mpy_typeshed, tmp_path):
    snippet = tmp_path / "right.py"
    snippet.write_text(
        textwrap.dedent("""\
            import asyncio
            import gc
            import struct
            import time

            import machine

            try:
                from micropython import const
            except ImportError:  # CPython

                def const(x):
                    return x


            _DEBOUNCE_MS = const(20)


            async def watch(pin, buf):
                start = time.ticks_ms()
                pin.irq(handler=lambda p: None, trigger=machine.Pin.IRQ_FALLING, hard=True)
                await asyncio.sleep_ms(_DEBOUNCE_MS)
                struct.pack_into("<I", buf, 0, time.ticks_diff(time.ticks_ms(), start))
                return gc.mem_free()
        """)
    )
    result = typecheck(mpy_typeshed, [snippet])
    assert result.returncode == 0, result.stdout + result.stderr


def test_firmware_typechecks_against_the_esp32_stubs(mpy_typeshed):
    assert FIRMWARE_FILES, f"{FIRMWARE_DIR} has no .py files to type-check"
    result = typecheck(mpy_typeshed, FIRMWARE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
