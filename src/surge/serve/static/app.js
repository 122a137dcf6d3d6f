// surge serve's page: plain JS, no build step, nothing loaded from elsewhere.
// Each file: POST /api/jobs -> progress from /api/jobs/{id}/events (server-sent events, read with
// fetch so the token travels in a header) -> result fetched once into a blob -> job deleted on
// the server (its files go with it). Before/after and the downloads use the blobs.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const UPLOADS_IN_FLIGHT = 2; // the server computes one image per device; more would only wait in its queue
const state = { token: sessionStorage.getItem("surge-token"), limits: null, items: [], active: 0 };

// --- API --------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, retryAfter) { super(message); this.status = status; this.retryAfter = retryAfter; }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.token) headers.set("Authorization", `Bearer ${state.token}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    await askToken(state.token ? "That token was refused." : "");
    return api(path, options);
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (typeof body.detail === "string") message = body.detail;
      else if (Array.isArray(body.detail)) message = body.detail.map((d) => `${d.loc.slice(-1)[0]}: ${d.msg}`).join("; ");
    } catch (_) { /* not JSON: keep the status line */ }
    throw new ApiError(response.status, message, Number(response.headers.get("Retry-After")) || 0);
  }
  return response;
}

let tokenWaiters = null;
function askToken(reason) {
  const form = $("#token-form");
  $("#token-error").textContent = reason;
  form.hidden = false;
  $("#token").focus();
  if (!tokenWaiters) tokenWaiters = [];
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("#token").value.trim();
  sessionStorage.setItem("surge-token", state.token);
  $("#token-form").hidden = true;
  const waiters = tokenWaiters || [];
  tokenWaiters = null;
  waiters.forEach((resolve) => resolve());
});

// --- start-up: limits, models, formats ---------------------------------------------------

async function init() {
  const health = await (await fetch("/healthz")).json();
  state.limits = health;
  $("#server").textContent = `surge ${health.version}`;
  $("#limits").textContent = `; up to ${health.max_upload_mb} MB and ${(health.max_pixels / 1e6).toFixed(0)} MP each`;
  if (health.token_required && !state.token) await askToken("");
  const info = await (await api("/api/models")).json();
  const model = $("#model");
  const auto = document.createElement("option");
  auto.value = "auto";
  auto.textContent = info.default === "auto" ? "auto (best per file)" : `server default (${info.default})`;
  model.append(auto);
  for (const m of info.models) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = m.name;
    option.title = m.description;
    model.append(option);
  }
  for (const f of info.formats) {
    const option = document.createElement("option");
    option.value = f;
    option.textContent = f === "same" ? "same as input" : f.toUpperCase();
    $("#format").append(option);
  }
  document.body.dataset.ready = "1";
}

// --- choosing files ----------------------------------------------------------------------

const drop = $("#drop");
$("#files").addEventListener("change", (event) => { addFiles(event.target.files); event.target.value = ""; });
drop.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") $("#files").click(); });
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("over"); });
}
for (const type of ["dragleave", "drop"]) {
  drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.remove("over"); });
}
drop.addEventListener("drop", (event) => addFiles(event.dataTransfer.files));

function addFiles(files) {
  const options = { model: $("#model").value, scale: $("#scale").value, format: $("#format").value, quality: $("#quality").value };
  for (const file of files) {
    const item = { file, options, card: makeCard(file.name), job: null, result: null, name: null, status: "waiting" };
    state.items.push(item);
    const limit = state.limits ? state.limits.max_upload_mb * 1024 * 1024 : Infinity;
    if (file.size > limit) fail(item, `${file.name}: ${(file.size / 1048576).toFixed(1)} MB is over this server's limit of ${state.limits.max_upload_mb} MB`);
    else setStatus(item, "waiting");
  }
  pump();
}

function pump() {
  while (state.active < UPLOADS_IN_FLIGHT) {
    const next = state.items.find((item) => item.status === "waiting");
    if (!next) break;
    state.active += 1;
    setStatus(next, "uploading");
    run(next).finally(() => { state.active -= 1; pump(); });
  }
  updateToolbar();
}

// --- one file ----------------------------------------------------------------------------

async function run(item) {
  try {
    const job = await submit(item);
    item.job = job;
    await follow(item, job);
    if (item.status !== "done" && item.status !== "failed") { // the stream ended early: ask once more
      update(item, await (await api(job.urls.self)).json());
      if (item.status !== "done" && item.status !== "failed") throw new Error("lost the connection to the server while upscaling");
    }
    if (item.status !== "done") return;
    const response = await api(`/api/jobs/${job.id}/result`);
    item.result = await response.blob();
    item.name = job.filename;
    await showComparison(item, job);
    api(`/api/jobs/${job.id}`, { method: "DELETE" }).catch(() => {}); // the server's copy is no longer needed
  } catch (error) {
    fail(item, error.message || String(error));
  }
}

async function submit(item) {
  for (;;) {
    const form = new FormData();
    form.append("image", item.file, item.file.name);
    for (const [key, value] of Object.entries(item.options)) form.append(key, value);
    try {
      return await (await api("/api/jobs", { method: "POST", body: form })).json();
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 503) throw error;
      const wait = Math.max(1, error.retryAfter || 2);
      setStatus(item, "uploading", `server busy, retrying in ${wait} s`);
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    }
  }
}

async function follow(item, job) {
  const response = await api(job.urls.events);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n");
      if (data) update(item, JSON.parse(data));
    }
  }
}

function update(item, job) {
  const bar = $(".bar", item.card);
  if (job.total_tiles) { bar.max = job.total_tiles; bar.value = job.done_tiles; }
  if (job.status === "failed" || job.status === "cancelled") fail(item, job.error || job.status);
  else if (job.status === "done") setStatus(item, "done", `${job.model}, ${job.seconds.toFixed(1)} s`);
  else if (job.status === "running") setStatus(item, "running", job.total_tiles ? `tile ${job.done_tiles} of ${job.total_tiles}` : "starting");
  else setStatus(item, "queued");
}

// --- the card ----------------------------------------------------------------------------

function makeCard(name) {
  const card = $("#card-template").content.firstElementChild.cloneNode(true);
  $(".name", card).textContent = name;
  $("#list").append(card);
  return card;
}

const LABELS = { waiting: "waiting", uploading: "uploading", queued: "queued", running: "upscaling", done: "done", failed: "failed" };

function setStatus(item, status, detail = "") {
  item.status = status;
  item.card.className = `card ${status}`;
  item.card.dataset.status = status;
  $(".status", item.card).textContent = LABELS[status] + (detail ? `: ${detail}` : "");
  updateToolbar();
}

function fail(item, message) {
  setStatus(item, "failed");
  const error = $(".error", item.card);
  error.textContent = message;
  error.hidden = false;
}

async function showComparison(item, job) {
  const card = item.card;
  const afterUrl = URL.createObjectURL(item.result);
  const after = $(".after", card);
  const before = $(".before", card);
  after.src = afterUrl;
  before.src = URL.createObjectURL(item.file);
  try {
    await before.decode();
  } catch (_) { // HEIC, TIFF...: the browser cannot show the upload itself, the server converts it
    const png = await (await api(job.urls.source)).blob();
    before.src = URL.createObjectURL(png);
    await before.decode().catch(() => {});
  }
  await after.decode().catch(() => {});
  const link = $(".download", card);
  link.href = afterUrl;
  link.download = item.name;
  link.hidden = false;
  $(".info", card).textContent = `${before.naturalWidth}x${before.naturalHeight} -> ${after.naturalWidth}x${after.naturalHeight}`;
  const slider = $(".slider", card);
  const setSplit = () => {
    const p = Number(slider.value);
    before.style.clipPath = `inset(0 ${100 - p}% 0 0)`;
    $(".divider", card).style.left = `${p}%`;
  };
  slider.addEventListener("input", setSplit);
  setSplit();
  const stage = $(".stage", card);
  // Dragging on the picture moves the split too.
  stage.addEventListener("pointerdown", (event) => {
    const move = (e) => {
      const box = stage.getBoundingClientRect();
      slider.value = Math.min(100, Math.max(0, ((e.clientX - box.left) / box.width) * 100));
      setSplit();
    };
    move(event);
    stage.setPointerCapture(event.pointerId);
    stage.addEventListener("pointermove", move);
    stage.addEventListener("pointerup", () => stage.removeEventListener("pointermove", move), { once: true });
  });
  const zoom = $(".zoom", card);
  const layout = () => {
    if (zoom.value === "fit") { // the whole picture in view, never enlarged past its own pixels
      const fit = Math.min(1, $(".compare", card).clientWidth / after.naturalWidth, (0.7 * innerHeight) / after.naturalHeight);
      stage.style.width = `${Math.floor(after.naturalWidth * fit)}px`;
    } else {
      stage.style.width = `${after.naturalWidth * Number(zoom.value) / devicePixelRatio}px`;
    }
    stage.classList.toggle("pixels", zoom.value !== "fit" && Number(zoom.value) >= 2);
  };
  zoom.addEventListener("change", layout);
  addEventListener("resize", layout);
  $(".compare", card).hidden = false;
  layout();
}

// --- downloads ---------------------------------------------------------------------------

function updateToolbar() {
  const done = state.items.filter((item) => item.result);
  $("#download-all").disabled = done.length === 0;
  const failed = state.items.filter((item) => item.status === "failed").length;
  const busy = state.items.length - done.length - failed;
  $("#summary").textContent = state.items.length ? `${done.length} done, ${busy} in progress, ${failed} failed` : "";
}

$("#download-all").addEventListener("click", async () => {
  const files = [];
  const used = new Set();
  for (const item of state.items.filter((i) => i.result)) {
    let name = item.name;
    for (let n = 2; used.has(name); n += 1) name = item.name.replace(/(\.[^.]*)?$/, `-${n}$1`);
    used.add(name);
    files.push({ name, data: new Uint8Array(await item.result.arrayBuffer()) });
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(zip(files));
  link.download = "surge-upscaled.zip";
  document.body.append(link);
  link.click();
  link.remove();
});

$("#clear").addEventListener("click", () => {
  state.items = state.items.filter((item) => {
    const finished = item.status === "done" || item.status === "failed";
    if (finished) item.card.remove();
    return !finished;
  });
  updateToolbar();
});

// A stored (uncompressed) zip: the images are compressed already. Format: PKWARE APPNOTE 4.3.
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n += 1) {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes) {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i += 1) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function zip(files) {
  const encoder = new TextEncoder();
  const now = new Date();
  const time = (now.getHours() << 11) | (now.getMinutes() << 5) | (now.getSeconds() >> 1);
  const date = ((now.getFullYear() - 1980) << 9) | ((now.getMonth() + 1) << 5) | now.getDate();
  const parts = [];
  const central = [];
  let offset = 0;
  for (const file of files) {
    const name = encoder.encode(file.name);
    const crc = crc32(file.data);
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint16(4, 20, true); // version needed
    local.setUint16(6, 0x0800, true); // UTF-8 names
    local.setUint16(8, 0, true); // stored
    local.setUint16(10, time, true);
    local.setUint16(12, date, true);
    local.setUint32(14, crc, true);
    local.setUint32(18, file.data.length, true);
    local.setUint32(22, file.data.length, true);
    local.setUint16(26, name.length, true);
    local.setUint16(28, 0, true);
    parts.push(local, name, file.data);
    const entry = new DataView(new ArrayBuffer(46));
    entry.setUint32(0, 0x02014b50, true);
    entry.setUint16(4, 20, true);
    entry.setUint16(6, 20, true);
    entry.setUint16(8, 0x0800, true);
    entry.setUint16(10, 0, true);
    entry.setUint16(12, time, true);
    entry.setUint16(14, date, true);
    entry.setUint32(16, crc, true);
    entry.setUint32(20, file.data.length, true);
    entry.setUint32(24, file.data.length, true);
    entry.setUint16(28, name.length, true);
    entry.setUint32(42, offset, true);
    central.push(entry, name);
    offset += 30 + name.length + file.data.length;
  }
  const centralSize = central.reduce((sum, part) => sum + part.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, files.length, true);
  end.setUint16(10, files.length, true);
  end.setUint32(12, centralSize, true);
  end.setUint32(16, offset, true);
  return new Blob([...parts, ...central, end], { type: "application/zip" });
}

init().catch((error) => {
  $("#server").textContent = `cannot reach the server: ${error.message}`;
  $("#server").className = "error";
});
