// repl_bridge.mjs: the virtual board's serial console. The real MicroPython VM (WebAssembly
// port) serves its REPL (friendly and raw, as mpremote drives it) on one TCP socket on
// 127.0.0.1, so `mpremote connect socket://127.0.0.1:PORT` talks to it as to a board.
//
// Control, one JSON object per line. stdin, first line: {"pkg": "<dir of the npm package>",
//   "port": 0, "files": {"main.py": "<base64>", ...}, "quota_bytes": null}
// then commands {"cmd": "files"} and {"cmd": "stop"}. stdout: {"event": "listening",
// "port": N}, and {"event": "files", "files": {...}} for each command (after "stop" the
// bridge exits).
//
// What differs from a board, and why:
// - Raw-paste mode (Ctrl-E 'A' Ctrl-A) is answered "R\x00" (not supported) by the bridge: in
//   this port the VM would read the pasted bytes with a blocking stdin read that never returns
//   (the event-driven REPL only gets bytes through replProcessChar). mpremote then falls back
//   to the plain raw REPL.
// - A soft reset (Ctrl-D on an empty line) starts a fresh VM with the same files, as a board
//   keeps its flash; main.py is not run (this VM has no `machine`): booting the flashed files
//   is the virtual node's job (lampwatch.vnode).
// - The file system is Emscripten's MEMFS, dumped on request; quota_bytes makes it small, for
//   "file system full" (os.statvfs reports it, writes past it fail with ENOSPC).
// - This port's file errors carry Emscripten's errno numbers (ENOENT is 44), which neither
//   its own `errno` module nor mpremote know: mpremote's fs commands then fail on a missing
//   file. They are renumbered as on a board (ENOENT 2) where a syscall returns them, and
//   only there: Emscripten's FS compares its own numbers internally.
// - One connection at a time, like an exclusively opened serial port: others are closed.
import net from "node:net";
import readline from "node:readline";
import { pathToFileURL } from "node:url";

const SYSTEM_DIRS = new Set(["tmp", "home", "dev", "proc"]);
const CTRL_A = 0x01, CTRL_B = 0x02, CTRL_C = 0x03, CTRL_D = 0x04, CTRL_E = 0x05;
const FORCED_EXIT = 0x100;
const ENOSPC = 51; // Emscripten's number (renumbered to 28 on the way out)
const BLOCK = 4096;
// Emscripten errno -> MicroPython's (the Linux numbers), for the errors file calls can raise.
const ERRNO = { 63: 1, 44: 2, 29: 5, 8: 9, 6: 11, 48: 12, 2: 13, 10: 16, 20: 17, 43: 19, 54: 20,
    31: 21, 28: 22, 51: 28, 69: 30, 37: 36, 55: 39 };
const SYSCALL_FRAME = /^\s*at (Object\.)?(__syscall_|fd_)/;

let mod; // the npm package's module
let mp; // the running VM
let quota = null;
let conn = null; // the one client socket
let mode = "friendly"; // which REPL the VM is in, to come back to it after a soft reset
let line = []; // raw REPL: the first bytes of the command being typed (raw-paste detection)
let muted = false;

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

function vmOut(bytes) {
    if (!muted && conn !== null) conn.write(Buffer.from(bytes));
}

function walk(dir, out) {
    for (const name of mp.FS.readdir(dir)) {
        if (name === "." || name === "..") continue;
        if (dir === "/" && SYSTEM_DIRS.has(name)) continue;
        const path = dir === "/" ? `/${name}` : `${dir}/${name}`;
        const st = mp.FS.stat(path);
        if (mp.FS.isDir(st.mode)) walk(path, out);
        else if (mp.FS.isFile(st.mode)) out[path.slice(1)] = mp.FS.readFile(path);
    }
    return out;
}

function dumpFiles() {
    const files = {};
    for (const [name, data] of Object.entries(walk("/", {}))) {
        files[name] = Buffer.from(data).toString("base64");
    }
    return files;
}

function usedBytes() {
    let n = 0;
    for (const data of Object.values(walk("/", {}))) n += Math.ceil(data.length / BLOCK) * BLOCK;
    return n;
}

// A small flash: statvfs tells the truth about it and a write that would pass it fails.
function applyQuota(FS) {
    const write = FS.write;
    FS.write = (stream, buffer, offset, length, position, canOwn) => {
        if (FS.isFile(stream.node.mode)) { // not the console, a character device
            const at = position ?? stream.position;
            const grow = Math.max(0, at + length - stream.node.usedBytes);
            if (grow > 0 && usedBytes() + grow > quota) throw new FS.ErrnoError(ENOSPC);
        }
        return write(stream, buffer, offset, length, position, canOwn);
    };
    const statfs = FS.statfs;
    FS.statfs = (path) => {
        const st = statfs(path);
        const blocks = Math.floor(quota / BLOCK);
        const free = Math.max(0, blocks - Math.ceil(usedBytes() / BLOCK));
        return { ...st, bsize: BLOCK, frsize: BLOCK, blocks, bfree: free, bavail: free };
    };
}

function renumberErrors(FS) {
    const ErrnoError = FS.ErrnoError;
    FS.ErrnoError = class extends ErrnoError {
        constructor(errno) {
            super(errno);
            this.raw = errno;
            delete this.errno; // an own property would hide the getter
        }
        get errno() {
            // the caller: a syscall returning -errno to libc, or FS code checking its own codes
            const caller = new Error().stack.split("\n")[2] ?? "";
            return SYSCALL_FRAME.test(caller) ? (ERRNO[this.raw] ?? this.raw) : this.raw;
        }
        set errno(value) {
            this.raw = value;
        }
    };
}

async function boot(files) {
    mp = await mod.loadMicroPython({ linebuffer: false, stdout: vmOut, stderr: vmOut });
    renumberErrors(mp.FS);
    for (const [name, data] of Object.entries(files)) {
        const dir = name.includes("/") ? "/" + name.slice(0, name.lastIndexOf("/")) : "";
        if (dir) mp.FS.mkdirTree(dir);
        mp.FS.writeFile(`/${name}`, data);
    }
    if (quota !== null) applyQuota(mp.FS);
}

async function softReset() {
    const files = walk("/", {});
    vmOut(Buffer.from("MPY: soft reboot\r\n"));
    muted = true;
    await boot(files);
    muted = mode === "raw"; // the fresh VM starts in the friendly REPL: its banner shows
    mp.replInit();
    if (mode === "raw") {
        mp.replProcessChar(CTRL_A);
        muted = false;
        vmOut(Buffer.from("raw REPL; CTRL-B to exit\r\n>"));
    }
    muted = false;
}

async function feed(byte) {
    if (mode === "raw") {
        if (byte === CTRL_A && line.length === 2 && line[0] === CTRL_E && line[1] === 0x41) {
            conn.write(Buffer.from([0x52, 0x00])); // "R\0": raw-paste not supported
            mp.replProcessChar(CTRL_C); // forget the "\x05A" typed so far
            line = [];
            return;
        }
        if (byte === CTRL_A || byte === CTRL_C || byte === CTRL_D) line = [];
        else if (line.length < 2) line.push(byte);
    }
    if (byte === CTRL_A) mode = "raw";
    else if (byte === CTRL_B) mode = "friendly";
    const ret = mp.replProcessChar(byte);
    if (ret & FORCED_EXIT) await softReset();
}

// Bytes are fed strictly in order, even across the awaits of a soft reset.
let queue = Promise.resolve();

function serve(sock) {
    if (conn !== null) {
        sock.destroy(); // busy: the port is open elsewhere
        return;
    }
    conn = sock;
    sock.setNoDelay(true);
    sock.on("data", (data) => {
        queue = queue.then(async () => {
            for (const b of data) await feed(b);
        });
    });
    const drop = () => {
        if (conn === sock) conn = null;
    };
    sock.on("close", drop);
    sock.on("error", drop);
}

const input = readline.createInterface({ input: process.stdin });
let server = null;
let control = Promise.resolve();
input.on("line", (text) => {
    control = control.then(() => command(text));
});

async function command(text) {
    const msg = JSON.parse(text);
    if (server === null) {
        mod = await import(pathToFileURL(`${msg.pkg}/micropython.mjs`).href);
        quota = msg.quota_bytes ?? null;
        const files = {};
        for (const [name, b64] of Object.entries(msg.files ?? {})) {
            files[name] = Buffer.from(b64, "base64");
        }
        muted = true;
        await boot(files);
        mp.replInit();
        muted = false;
        server = net.createServer(serve);
        server.listen(msg.port ?? 0, "127.0.0.1", () => {
            emit({ event: "listening", port: server.address().port });
        });
        return;
    }
    await queue;
    emit({ event: "files", files: dumpFiles() });
    if (msg.cmd === "stop") {
        if (conn !== null) conn.destroy();
        server.close();
        process.exit(0);
    }
}

input.on("close", () => process.exit(0));
