// run.mjs: run one job in the real MicroPython VM (the official WebAssembly port); driven by
// lampwatch.vnode.vm.run_micropython, for the virtual node's engine and the tests alike.
//
// Job, as JSON on stdin: {"pkg": "<dir>", "files": {"name.py": "source", ...}, "code": "source"}
//   pkg      the npm package @micropython/micropython-webassembly-pyscript's directory (the
//            caller finds it: beside this file, or where LAMPWATCH_NODE_MODULES points)
//   files    written to / (the working directory, as on a node's flash), so `import name` works;
//            sys.path is ['', '.frozen', '/lib'] as on the ESP32: these shadow frozen modules
//   code     run as __main__ (its tracebacks name it "<job>")
//   then     optional list of further sources, each run as its own top-level runPython() in
//            the same __main__ namespace after `code`. Garbage is collected only between
//            top-level runs (see heap_kb), so a step that calls gc.collect() after a setup step
//            measures the live heap.
//   heap_kb  optional initial GC heap (default 1024). Not a budget: this port grows its heap on
//            demand and only collects garbage between top-level runs, never inside one
//            (MICROPY_GC_SPLIT_HEAP_AUTO), so a job never runs out of memory.
// Output: the program's stdout on stdout, line by line as it runs (a killed run keeps what it
// printed). Exit 0 on success; 1 on a Python exception (traceback on stderr) or a SystemExit
// with a non-zero code; 2 on a malformed job or a crash of the VM itself.
// Time limits are the caller's: a busy VM blocks Node's event loop, so only a kill can stop it.
import { readFileSync, writeSync } from "node:fs";
import { pathToFileURL } from "node:url";

const FILES_DIR = ""; // the root, which is the working directory
const FLUSH_BYTES = 4096;

function writeAll(fd, bytes) {
    let off = 0;
    while (off < bytes.length) {
        try {
            off += writeSync(fd, bytes, off, bytes.length - off);
        } catch (e) {
            if (e.code !== "EAGAIN") throw e; // a full non-blocking pipe: try again
        }
    }
}

// Collects the VM's output byte by byte and writes whole lines, so no UTF-8 sequence is split.
class LineSink {
    constructor(fd) {
        this.fd = fd;
        this.buf = [];
    }
    push(bytes) {
        for (const b of bytes) {
            this.buf.push(b);
            if (b === 10 || this.buf.length >= FLUSH_BYTES) this.flush();
        }
    }
    flush() {
        if (this.buf.length) writeAll(this.fd, Uint8Array.from(this.buf));
        this.buf = [];
    }
}

const stdout = new LineSink(1);
const vmStderr = new LineSink(2);

function finish(exitCode, message) {
    stdout.flush();
    vmStderr.flush();
    if (message) writeAll(2, Buffer.from(message.endsWith("\n") ? message : message + "\n"));
    process.exit(exitCode);
}

function readJob() {
    let job;
    try {
        job = JSON.parse(readFileSync(0, "utf8"));
    } catch (e) {
        finish(2, `mpvm: bad job: ${e.message}`);
    }
    const files = job.files ?? {};
    if (typeof job.pkg !== "string") finish(2, 'mpvm: bad job: "pkg" must be a directory');
    if (typeof job.code !== "string") finish(2, 'mpvm: bad job: "code" must be a string');
    if (typeof files !== "object" || Array.isArray(files)) {
        finish(2, 'mpvm: bad job: "files" must be an object');
    }
    for (const [name, source] of Object.entries(files)) {
        if (typeof source !== "string" || name.startsWith("/") || name.split("/").includes("..")) {
            finish(2, `mpvm: bad job: file ${JSON.stringify(name)} needs a relative path and text`);
        }
    }
    if (job.heap_kb != null && !(Number.isInteger(job.heap_kb) && job.heap_kb > 0)) {
        finish(2, 'mpvm: bad job: "heap_kb" must be a positive integer');
    }
    const then = job.then ?? [];
    if (!Array.isArray(then) || then.some((s) => typeof s !== "string")) {
        finish(2, 'mpvm: bad job: "then" must be a list of sources');
    }
    return { pkg: job.pkg, code: job.code, then, files, heapKb: job.heap_kb };
}

// The job runs inside exec() so that this wrapper can release micropython.heap_lock() before an
// exception leaves the VM: reporting an exception to JavaScript allocates, and with the heap
// still locked the VM spins forever in nlr_jump_fail() instead. heap_unlock() returns the
// remaining depth, and goes below 0 if the heap was not locked, hence the final heap_lock().
const WRAPPER = `
import micropython as _lw_mp
def _lw_unlock():
    d = _lw_mp.heap_unlock()
    while d > 0:
        d = _lw_mp.heap_unlock()
    if d < 0:
        _lw_mp.heap_lock()
_lw_exit = 0
_lw_e = None
try:
    _lw_ns
except NameError:
    _lw_ns = {"__name__": "__main__"}
try:
    exec(compile(_lw_src, "<job>", "exec"), _lw_ns)
except SystemExit as _lw_e:
    _lw_unlock()
    _lw_exit = _lw_e.args[0] if _lw_e.args else 0
finally:
    _lw_unlock()
`;
// The wrapper's own frame is noise in every traceback.
const WRAPPER_FRAME = /^ {2}File "<stdin>", line \d+, in <module>\n/gm;

const job = readJob();
const options = {
    linebuffer: false,
    stdout: (bytes) => stdout.push(bytes),
    stderr: (bytes) => vmStderr.push(bytes),
};
if (job.heapKb != null) options.heapsize = job.heapKb * 1024;

let mp;
try {
    const { loadMicroPython } = await import(pathToFileURL(`${job.pkg}/micropython.mjs`).href);
    mp = await loadMicroPython(options);
    for (const [name, source] of Object.entries(job.files)) {
        const path = `${FILES_DIR}/${name}`;
        const dir = path.slice(0, path.lastIndexOf("/"));
        if (dir) mp.FS.mkdirTree(dir);
        mp.FS.writeFile(path, source);
    }
} catch (e) {
    finish(2, `mpvm: cannot start the VM: ${e.stack ?? e}`);
}

for (const source of [job.code, ...job.then]) {
    mp.globals.set("_lw_src", source);
    try {
        mp.runPython(WRAPPER);
    } catch (e) {
        if (e.name !== "PythonError") finish(2, `mpvm: the VM crashed: ${e.stack ?? e}`);
        finish(1, e.message.replace(WRAPPER_FRAME, ""));
    }
    const status = mp.globals.get("_lw_exit");
    if (status === null || status === 0) continue;
    if (Number.isInteger(status)) {
        finish(status === 2 ? 1 : status & 0xff || 1, `SystemExit: ${status}`);
    }
    finish(1, String(status)); // sys.exit("message"): like CPython, print it and exit 1
}
finish(0);
