// lampwatch Andon board: renders the collector's /events stream (server-sent events).
// Everything comes from this server; no CDN, no external fonts.
"use strict";

// Every text this page writes comes from the server's catalogue (host/i18n), in the
// config's [board] lang: the JSON block in the page, key -> text.
const L = JSON.parse(document.getElementById("labels").textContent);
const tr = (key, fields = {}) =>
  (L[key] ?? key).replace(/\{(\w+)\}/g, (_, k) => String(fields[k] ?? ""));
const reasonLabel = (r) => L[`reason.${r}`] ?? r;
const LAMPS = ["green", "yellow", "red", "blue", "white"];
const tiles = new Map();          // machine -> tile element
let board = null;                 // the last board received
let clockOffsetS = 0;             // server time minus this browser's time
let dialogMachine = null;
let dialogReason = null;

const $ = (id) => document.getElementById(id);

// The server sends ratios as fractions and the page writes them (lampwatch.oee.percent is
// the Python side's one formatter; here whole percent, an en dash when unknown).
function pct(v) { return v === null || v === undefined ? "–" : `${Math.round(100 * v)}%`; }
function num(v) { return Math.round(v || 0).toLocaleString(L.locale); }
function duration(s) {
  if (s === null || s === undefined) return "";
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = String(m).padStart(2, "0"), ss = String(sec).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${m}:${ss}`;
}
function nowS() { return Date.now() / 1000 + clockOffsetS; }
function el(tag, cls, parent) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (parent) parent.appendChild(e);
  return e;
}

function makeTile(machine) {
  const t = el("section", "tile");
  t.dataset.machine = machine;
  const top = el("div", "top", t);
  el("div", "name", top).textContent = machine;
  const lamps = el("div", "lamps", top);
  for (const name of LAMPS) {
    const l = el("span", `lamp ${name}`, lamps);
    l.dataset.lamp = name;
  }
  const st = el("div", "state-line", t);
  el("span", "state", st);
  el("span", "since", st);
  const note = el("div", "note", t);
  el("span", "reason", note);
  el("span", "warn", note);
  el("div", "pct", t);
  el("div", "apq", t);
  el("div", "parts", t);
  const b = el("button", "reason-btn", t);
  b.type = "button";
  b.textContent = tr("board.reason_button");
  b.addEventListener("click", () => openDialog(machine));
  return t;
}

function updateTile(t, m) {
  if (t.dataset.state !== m.state) t.dataset.state = m.state;
  t.classList.toggle("blink", !!m.blink);
  t.dataset.since = m.since_s === null ? "" : String(m.since_s);
  t.querySelector(".state").textContent = L[`state.${m.state}`] ?? m.state;
  t.querySelector(".reason").textContent = m.reason ? reasonLabel(m.reason) : "";
  t.querySelector(".pct").textContent = `OEE ${pct(m.oee)}`;
  t.querySelector(".apq").textContent =
    `A ${pct(m.availability)} · P ${pct(m.performance)} · Q ${pct(m.quality)}`;
  t.querySelector(".parts").textContent =
    `${num(m.good)} ${tr("board.good")} · ${num(m.ng)} ${tr("board.ng")}`;
  for (const l of t.querySelectorAll(".lamp")) {
    const s = m.lamps[l.dataset.lamp];
    // Blue and white are rare on tower lamps: shown only while lit.
    l.hidden = !["green", "yellow", "red"].includes(l.dataset.lamp) && !(s === "ON" || s === "BLINK");
    l.classList.toggle("lit", s === "ON" || s === "BLINK");
    l.classList.toggle("blinking", s === "BLINK");
  }
  t.dataset.silent = m.silent ? "1" : "0";
  t.dataset.lastHeard = m.last_heard_s === null ? "" : String(m.last_heard_s);
  t.dataset.warnings = m.warnings.join(" · ");
  t.querySelector(".reason-btn").hidden = !(board.operator && m.can_reason);
}

function tickTimes() {
  const now = nowS();
  for (const t of tiles.values()) {
    const since = t.dataset.since ? Number(t.dataset.since) : null;
    t.querySelector(".since").textContent = since === null ? "" : duration(now - since);
    let warn = t.dataset.warnings || "";
    if (t.dataset.silent === "1" && t.dataset.lastHeard) {
      warn = warn.replace(tr("board.w.silent"),
        tr("board.w.silent_for", { duration: duration(now - Number(t.dataset.lastHeard)) }));
    }
    t.querySelector(".warn").textContent = warn ? `⚠ ${warn}` : "";
  }
  const d = new Date(now * 1000);
  $("clock").textContent = d.toLocaleTimeString(L.locale, { hour12: false });
}

// Tiles as large as the screen allows: the column count that gives the biggest tile.
function layout() {
  const main = $("tiles");
  const n = Math.max(1, tiles.size), W = main.clientWidth - 20, H = main.clientHeight - 20;
  let best = { size: 0, cols: 1, h: H };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const w = (W - 10 * (cols - 1)) / cols, h = (H - 10 * (rows - 1)) / rows;
    const size = Math.min(w / 1.7, h);  // tiles read best a little wider than tall
    if (size > best.size) best = { size, cols, h: Math.min(h, w / 1.25) };
  }
  main.style.setProperty("--cols", best.cols);
  main.style.setProperty("--tile-h", `${best.h}px`);
  main.style.setProperty("--u", `${best.h / 100}px`);
}

function render(b) {
  board = b;
  clockOffsetS = b.now_s - Date.now() / 1000;
  const main = $("tiles");
  const names = new Set(b.machines.map((m) => m.machine));
  for (const [name, t] of tiles) if (!names.has(name)) { t.remove(); tiles.delete(name); }
  let changed = false;
  b.machines.forEach((m, i) => {
    let t = tiles.get(m.machine);
    if (!t) { t = makeTile(m.machine); tiles.set(m.machine, t); changed = true; }
    // The server's order; a node is only moved when out of place (moving restarts blinking).
    if (main.children[i] !== t) main.insertBefore(t, main.children[i] || null);
    updateTile(t, m);
  });
  if (changed) layout();
  const p = b.plant;
  $("shift").textContent = b.shift ? tr("board.shift", { shift: b.shift }) : tr("board.no_shift");
  $("plant-oee").textContent = pct(p.oee);
  $("plant-a").textContent = pct(p.availability);
  $("plant-p").textContent = pct(p.performance);
  $("plant-q").textContent = pct(p.quality);
  $("plant-good").textContent = num(p.good);
  $("plant-ng").textContent = num(p.ng);
  for (const k of ["running", "idle", "stopped", "off", "unknown"]) $(`n-${k}`).textContent = p[k];
  $("c-off").hidden = !p.off;
  $("c-unknown").hidden = !p.unknown;
  tickTimes();
  document.body.dataset.updated = String(Date.now());
}

// --- stop reasons (only offered when the collector has an operator PIN) ---------------------

function openDialog(machine) {
  dialogMachine = machine;
  dialogReason = null;
  $("reason-machine").textContent = machine;
  $("reason-status").textContent = "";
  $("pin").value = "";
  const box = $("reason-choices");
  box.replaceChildren();
  for (const r of board.reasons) {
    const btn = el("button", "", box);
    btn.type = "button";
    btn.dataset.reason = r;
    btn.textContent = reasonLabel(r);
    btn.addEventListener("click", () => {
      dialogReason = r;
      for (const x of box.children) x.classList.toggle("chosen", x === btn);
    });
  }
  $("reason-dialog").showModal();
}

async function submitReason(ev) {
  ev.preventDefault();
  const status = $("reason-status");
  if (!dialogReason) { status.textContent = tr("board.choose"); return; }
  status.textContent = tr("board.saving");
  try {
    const res = await fetch("/api/reason", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ machine: dialogMachine, reason: dialogReason, pin: $("pin").value }),
    });
    if (!res.ok) {
      // the server's error is English, for the log; the operator reads the catalogue's
      const known = { 403: "board.wrong_pin", 429: "board.wait" }[res.status];
      status.textContent = tr(known || "board.not_saved", { status: res.status });
      return;
    }
    status.textContent = tr("board.saved");
    $("pin").value = "";
    setTimeout(() => $("reason-dialog").close(), 600);
  } catch (e) {
    status.textContent = tr("board.no_connection");
  }
}

// EventSource reconnects by itself after a network error, but gives up on an HTTP error,
// such as the 503 a screen gets when all live slots are taken (Retry-After: 5). Then the
// page shows the board once from /api/board and tries the stream again in 5-10 s, spread
// out so that many screens do not come back at the same moment.
const RETRY_MS = 5000;

async function snapshot() {
  try {
    const res = await fetch("/api/board");
    if (res.ok) render(await res.json());
  } catch (e) { /* the collector is away: the offline banner says so */ }
}

function connect() {
  const es = new EventSource("/events");
  es.onmessage = (e) => { $("offline").hidden = true; render(JSON.parse(e.data)); };
  es.onerror = () => {
    $("offline").hidden = false;
    if (es.readyState === EventSource.CLOSED) {
      snapshot();
      setTimeout(connect, RETRY_MS * (1 + Math.random()));
    }
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("reason-form").addEventListener("submit", submitReason);
  $("reason-cancel").addEventListener("click", () => $("reason-dialog").close());
  window.addEventListener("resize", layout);
  setInterval(tickTimes, 1000);
  connect();
});
