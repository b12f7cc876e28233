"""The MicroPython VM engine for tests: it is the real VM, and it reports and bounds failures."""

import statistics
import time

import pytest
from lampwatch.node_files import firmware_sources
from lampwatch.vnode import sim, vm
from lampwatch.vnode.vm import (
    MicroPythonError,
    MicroPythonTimeout,
    MicroPythonVMMissing,
    MpvmHarnessError,
)


def test_the_vm_is_micropython(micropython_vm):
    out = micropython_vm("import sys\nprint(sys.implementation.name, sys.implementation.version)")
    assert out == "micropython (1, 27, 0, '')\n"


def test_the_vm_has_what_the_firmware_uses_and_not_the_hardware(micropython_vm):
    out = micropython_vm(
        "import struct, hashlib, array, select, micropython\n"
        "print(hashlib.sha256(b'abc').digest().hex())\n"
        "print(struct.pack('<HI', 1, 2), micropython.const(7), hasattr(micropython, 'RingIO'))\n"
        "try:\n"
        "    import machine\n"
        "except ImportError:\n"
        "    print('no machine')\n"
    )
    assert out.splitlines() == [
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "b'\\x01\\x00\\x02\\x00\\x00\\x00' 7 True",
        "no machine",
    ]


def test_files_are_importable_modules_and_packages(micropython_vm):
    files = {
        "greet.py": "def hello(name):\n    return 'hello ' + name\n",
        "pkg/__init__.py": "from pkg.inner import VALUE\n",
        "pkg/inner.py": "VALUE = 42\n",
    }
    out = micropython_vm("import greet, pkg\nprint(greet.hello('vm'), pkg.VALUE)", files=files)
    assert out == "hello vm 42\n"


def test_files_shadow_the_vms_frozen_modules_as_on_a_node(micropython_vm):
    # Files go to the working directory, first on sys.path ahead of '.frozen', as on the ESP32.
    out = micropython_vm("import logging\nprint(logging.MINE)", files={"logging.py": "MINE = 1\n"})
    assert out == "1\n"


def test_output_keeps_non_ascii_text(micropython_vm):
    assert micropython_vm("print('Störung — 停止')") == "Störung — 停止\n"


def test_an_exception_surfaces_with_the_micropython_traceback(micropython_vm):
    files = {"broken.py": "def fail():\n    raise ValueError('boom')\n"}
    with pytest.raises(MicroPythonError) as info:
        micropython_vm("print('before')\nimport broken\nbroken.fail()\n", files=files)
    err = info.value
    assert err.traceback == (
        "Traceback (most recent call last):\n"
        '  File "<job>", line 3, in <module>\n'
        '  File "broken.py", line 2, in fail\n'
        "ValueError: boom\n"
    )
    assert err.stdout == "before\n"


def test_a_syntax_error_surfaces(micropython_vm):
    with pytest.raises(MicroPythonError, match="SyntaxError"):
        micropython_vm("def f(:\n    pass\n")


def test_sys_exit_zero_succeeds_and_non_zero_fails(micropython_vm):
    assert micropython_vm("import sys\nprint('ok')\nsys.exit(0)") == "ok\n"
    with pytest.raises(MicroPythonError, match="SystemExit: 3") as info:
        micropython_vm("import sys\nsys.exit(3)")
    assert info.value.returncode == 3


def test_heap_lock_makes_an_allocation_raise_memory_error(micropython_vm):
    # In a function: at module level even storing a new global may allocate.
    code = (
        "import micropython\n"
        "def alloc():\n"
        "    micropython.heap_lock()\n"
        "    try:\n"
        "        bytearray(16)\n"
        "    except MemoryError:\n"
        "        return 'MemoryError'\n"
        "    finally:\n"
        "        micropython.heap_unlock()\n"
        "    return 'allocated'\n"
        "print(alloc())\n"
    )
    assert micropython_vm(code) == "MemoryError\n"


def test_a_memory_error_escaping_with_the_heap_locked_is_reported_not_hung(micropython_vm):
    # Without run.mjs's unlock wrapper the VM spins forever here.
    with pytest.raises(MicroPythonError, match="MemoryError"):
        micropython_vm("import micropython\nmicropython.heap_lock()\nbytearray(16)\n", timeout=10)


def test_gc_mem_alloc_is_readable_and_counts_allocations(micropython_vm):
    out = micropython_vm(
        "import gc\n"
        "def grown(n):\n"
        "    before = gc.mem_alloc()\n"
        "    buf = bytearray(n)\n"
        "    return gc.mem_alloc() - before, len(buf)\n"
        "print(gc.mem_alloc() > 0, *grown(10000))\n"
    )
    used, delta, n = out.split()
    assert used == "True" and n == "10000"
    assert 10000 <= int(delta) < 10000 + 512


def test_heap_kb_sets_the_initial_heap(micropython_vm):
    out = micropython_vm("import micropython\nmicropython.mem_info()", heap_kb=64)
    assert "GC: total: 6" in out  # 64 KiB less the GC's own tables


def test_a_timeout_kills_an_infinite_loop(micropython_vm):
    start = time.monotonic()
    with pytest.raises(MicroPythonTimeout) as info:
        micropython_vm("print('started')\nwhile True:\n    pass\n", timeout=2)
    elapsed = time.monotonic() - start
    assert 2 <= elapsed < 4
    assert info.value.stdout == "started\n"


def test_a_malformed_job_is_a_harness_error_not_a_python_one(micropython_vm):
    with pytest.raises(MpvmHarnessError, match="heap_kb"):
        micropython_vm("pass", heap_kb=0)


def test_a_missing_vm_fails_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv(vm.NODE_MODULES_ENV, str(tmp_path))
    with pytest.raises(MicroPythonVMMissing, match=r"scripts/install\.sh --test"):
        vm.run_micropython("pass")


def test_the_vm_is_found_where_lampwatch_node_modules_points(micropython_vm, monkeypatch,
                                                             tmp_path):
    # the npm package installed elsewhere (e.g. for a wheel install): the same VM runs
    (tmp_path / "@micropython").symlink_to(vm.vm_package_dir().parent, target_is_directory=True)
    monkeypatch.setenv(vm.NODE_MODULES_ENV, str(tmp_path))
    assert vm.vm_package_dir() == tmp_path / vm.VM_PACKAGE
    assert micropython_vm("print(6 * 7)") == "42\n"


def test_firmware_files_are_the_node_s_modules_not_the_package_marker():
    files = vm.firmware_files()
    assert "__init__.py" not in files
    assert sorted(files) == sorted([f"{m}.py" for m in sim.FIRMWARE] + ["main.py"])
    for path in firmware_sources():
        assert files[path.name] == path.read_text(encoding="utf-8")


def test_vm_start_cost(micropython_vm, capsys):
    """Records what one VM start costs (a Node process, wasm compile, VM init)."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        micropython_vm("pass")
        times.append(time.perf_counter() - start)
    with capsys.disabled():
        print(f"\nmpvm: one VM start costs {statistics.median(times) * 1000:.0f} ms (median of 3)")


def test_then_steps_share_the_namespace_and_collect_garbage_between_them(micropython_vm):
    out = micropython_vm(
        "import gc\nkeep = bytearray(5000)\njunk = [bytearray(1000) for _ in range(100)]\n"
        "junk = None\nprint(gc.mem_alloc())",
        then=["gc.collect()"] * 2 + ["print(gc.mem_alloc(), len(keep))"])
    before, after, kept = (int(x) for x in out.split())
    assert kept == 5000
    assert before - after > 90_000  # the 100 kB of garbage went only between top-level runs


def test_an_error_in_a_then_step_is_reported(micropython_vm):
    with pytest.raises(MicroPythonError, match="ValueError: 41"):
        micropython_vm("x = 41", then=["raise ValueError(x)"])
