// text4vis serve: the page's logic. Plain JavaScript, no libraries, talks to this server only.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, health: null, previewUrl: null };
const COLORS = ["#2f6fed", "#e8590c", "#2b8a3e", "#ae3ec9", "#c2255c", "#1098ad", "#5c940d", "#f08c00", "#495057"];

function headers() {
  const key = sessionStorage.getItem("text4vis-key") || $("apikey").value.trim();
  return key ? { "Authorization": "Bearer " + key } : {};
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function busy(on, text) {
  $("busy").hidden = !on;
  if (text) $("busy-text").textContent = text;
  $("go").disabled = on || !state.file;
}

async function call(path, options) {
  // fetch + one-line errors: the server answers {"error": "..."} for every failure
  let response;
  try {
    response = await fetch(path, { ...options, headers: { ...headers(), ...(options && options.headers) } });
  } catch (e) {
    throw new Error("cannot reach the server (" + e.message + ")");
  }
  let body = null;
  try { body = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) {
    if (response.status === 401) { $("key-row").hidden = false; sessionStorage.removeItem("text4vis-key"); }
    const retry = response.headers.get("Retry-After");
    const why = (body && body.error) || response.statusText || "request failed";
    throw new Error(why + (retry ? " (retry in " + retry + " s)" : "") + " [" + response.status + "]");
  }
  return body;
}

async function loadHealth() {
  try {
    const h = await (await fetch("healthz")).json();
    state.health = h;
    const name = String(h.model || "").split("/").pop();
    $("model").textContent = name + " · " + h.labels + " labels · " + h.frames + " frames · " + h.device;
    $("model").title = h.model;
    $("drop-hint").textContent = "mp4, webm, mkv, mov, avi, gif… up to " + h.max_upload_mb + " MB";
    $("timeline-opt").hidden = !h.timeline;
    $("search-box").hidden = !h.index;
    if (h.index) $("search-title").textContent = "Search the index (" + h.index_entries + " entries)";
    if (!h.custom_labels) {
      $("labels").disabled = true;
      $("labels").placeholder = "This model has no text tower: custom labels are not available.";
    }
  } catch (e) {
    $("model").textContent = "server not reachable";
  }
}

function pickFile(file) {
  if (!file) return;
  state.file = file;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  const video = $("preview");
  video.src = state.previewUrl;
  video.hidden = false;
  video.onerror = () => { video.hidden = true; };  // the browser cannot play it; the server may still decode it
  $("drop").classList.add("has-file");
  document.querySelector(".drop-main").innerHTML = "Drop another video or <u>choose a file</u>";
  $("file-info").textContent = file.name + " · " + (file.size / 1048576).toFixed(2) + " MB";
  $("go").disabled = false;
  recognise();
}

function customLabels() {
  return $("labels").value.split("\n").map((s) => s.trim()).filter(Boolean);
}

function form(extra) {
  const data = new FormData();
  data.append("video", state.file, state.file.name);
  const labels = customLabels();
  if (labels.length) data.append("labels", labels.join("\n"));
  for (const [k, v] of Object.entries(extra)) data.append(k, v);
  return data;
}

async function recognise() {
  if (!state.file) return;
  const key = $("apikey").value.trim();
  if (key) sessionStorage.setItem("text4vis-key", key);
  showError("");
  $("empty").hidden = true;
  busy(true, "Recognising " + state.file.name + "…");
  const t0 = performance.now();
  try {
    const record = await call("v1/predict", { method: "POST", body: form({ topk: $("topk").value, views: $("views").value }) });
    const ms = performance.now() - t0;
    const kind = customLabels().length ? "your " + customLabels().length + " labels" : "model labels";
    $("result-meta").textContent = "· " + record.video + " · " + kind + " · " + (ms / 1000).toFixed(2) + " s";
    renderTop(record.top);
    if ($("want-timeline").checked && state.health && state.health.timeline) await timeline();
  } catch (e) {
    showError(e.message);
    $("top").innerHTML = "";
    $("result-meta").textContent = "";
  } finally {
    busy(false);
  }
}

function renderTop(top) {
  const list = $("top");
  list.innerHTML = "";
  const best = Math.max(...top.map((t) => t.score), 1e-9);
  for (const t of top) {
    const li = document.createElement("li");
    li.innerHTML = '<span class="label"></span><span class="track"><span class="fill"></span></span><span class="pct"></span>';
    li.querySelector(".label").textContent = t.label;
    li.querySelector(".label").title = t.label;
    li.querySelector(".pct").textContent = (100 * t.score).toFixed(1) + "%";
    list.appendChild(li);
    requestAnimationFrame(() => { li.querySelector(".fill").style.width = (100 * t.score / best).toFixed(1) + "%"; });
  }
}

async function timeline() {
  busy(true, "Building the timeline…");
  const record = await call("v1/timeline", { method: "POST", body: form({ topk: 3 }) });
  renderTimeline(record);
}

function renderTimeline(record) {
  const box = $("timeline"), legend = $("timeline-legend");
  box.innerHTML = ""; legend.innerHTML = "";
  const duration = record.duration || Math.max(0, ...record.windows.map((w) => w.end));
  const colors = new Map();
  for (const seg of record.segments || []) {
    if (!colors.has(seg.label)) colors.set(seg.label, COLORS[colors.size % COLORS.length]);
    const div = document.createElement("div");
    div.className = "seg";
    div.style.left = (100 * seg.start / duration) + "%";
    div.style.width = (100 * (seg.end - seg.start) / duration) + "%";
    div.style.background = colors.get(seg.label);
    div.title = seg.label + " · " + seg.start.toFixed(1) + "–" + seg.end.toFixed(1) + " s · " + (100 * seg.score).toFixed(0) + "%";
    div.textContent = seg.label;
    box.appendChild(div);
  }
  for (const [label, color] of colors) {
    const span = document.createElement("span");
    span.innerHTML = "<i></i>";
    span.querySelector("i").style.background = color;
    span.appendChild(document.createTextNode(label));
    legend.appendChild(span);
  }
  legend.appendChild(document.createTextNode("0 – " + duration.toFixed(1) + " s"));
  $("timeline-box").hidden = false;
}

async function search(event) {
  event.preventDefault();
  const q = $("query").value.trim();
  if (!q) return;
  showError("");
  try {
    const record = await call("v1/search?k=10&q=" + encodeURIComponent(q));
    renderHits(record);
  } catch (e) {
    showError(e.message);
  }
}

function renderHits(record) {
  const list = $("hits");
  list.innerHTML = "";
  for (const hit of record.results || record.hits || []) {
    const li = document.createElement("li");
    const where = hit.end ? hit.start.toFixed(1) + "–" + hit.end.toFixed(1) + " s · " : "";
    li.innerHTML = '<span class="what"></span><span class="where"></span>';
    li.querySelector(".what").textContent = String(hit.video).split(/[\\/]/).pop();
    li.querySelector(".what").title = hit.video;
    li.querySelector(".where").textContent = where + "similarity " + Number(hit.score).toFixed(3);
    list.appendChild(li);
  }
  if (!list.children.length) list.innerHTML = '<li class="hint">No matches.</li>';
}

function setup() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => pickFile(e.target.files[0]));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => pickFile(e.dataTransfer.files[0]));
  $("go").addEventListener("click", recognise);
  $("search-form").addEventListener("submit", search);
  $("labels").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) recognise(); });
  loadHealth();
}

setup();
