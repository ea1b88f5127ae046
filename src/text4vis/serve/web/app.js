// text4vis serve: the page's logic. Plain JavaScript, no libraries, talks to this server only.
//
// Every recognition is one "run": choosing another video, pressing Recognise again or Cancel starts a new
// run (or ends this one) and aborts the request in flight, and an answer is shown only while its run is the
// current one, under the name of the file it was asked for. So a late answer can never appear beside
// another video's preview.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, health: null, previewUrl: null, run: 0, xhr: null, timer: null, downloadUrl: null };
const COLORS = ["#2f6fed", "#e8590c", "#2b8a3e", "#ae3ec9", "#c2255c", "#1098ad", "#5c940d", "#f08c00", "#495057"];

function apiKey() {
  return $("apikey").value.trim() || sessionStorage.getItem("text4vis-key") || "";
}

function headers() {
  const key = apiKey();
  return key ? { "Authorization": "Bearer " + key } : {};
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function needKey() {
  $("key-row").hidden = false;
  sessionStorage.removeItem("text4vis-key");
  $("apikey").focus();
  return "This server needs an API key: type it in the API key field and press Enter.";
}

// ------------------------------------------------------------------ requests

function failure(status, body, statusText, retry) {
  if (status === 401) return new Error(needKey());
  const why = (body && body.error) || statusText || "request failed";
  return new Error(why + (retry ? " (retry in " + retry + " s)" : "") + " [" + status + "]");
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
  if (!response.ok) throw failure(response.status, body, response.statusText, response.headers.get("Retry-After"));
  return body;
}

function send(path, data, run) {
  // POST a form with upload progress (XMLHttpRequest); Cancel or a newer run aborts it
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    state.xhr = xhr;
    xhr.open("POST", path);
    for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
    xhr.responseType = "text";
    xhr.upload.onprogress = (e) => {
      if (run === state.run && e.lengthComputable) state.progress = e.loaded / e.total;
    };
    xhr.upload.onload = () => { if (run === state.run) state.progress = 1; };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(failure(xhr.status, body, xhr.statusText, xhr.getResponseHeader("Retry-After")));
    };
    xhr.onerror = () => reject(new Error("cannot reach the server (the connection failed)"));
    xhr.onabort = () => { const e = new Error("cancelled"); e.aborted = true; reject(e); };
    xhr.send(data);
  });
}

// ------------------------------------------------------------------ progress

function busyStart(run, phase) {
  state.phase = phase;
  state.progress = 0;
  state.t0 = performance.now();
  $("busy").hidden = false;
  $("cancel").hidden = false;
  $("go").disabled = true;
  clearInterval(state.timer);
  const tick = () => {
    if (run !== state.run) return;
    const s = ((performance.now() - state.t0) / 1000).toFixed(1) + " s";
    const uploading = state.progress < 1 && state.phase.startsWith("Uploading");
    $("busy-text").textContent = uploading ? state.phase + " " + Math.round(100 * state.progress) + "% · " + s
                                           : state.phase + " · " + s;
    if (!uploading && state.phase.startsWith("Uploading")) state.phase = state.phase.replace("Uploading", "Recognising");
  };
  tick();
  state.timer = setInterval(tick, 200);
}

function busyStop() {
  clearInterval(state.timer);
  state.timer = null;
  state.xhr = null;
  $("busy").hidden = true;
  $("cancel").hidden = true;
  $("go").disabled = !state.file;
}

function cancel() {
  const xhr = state.xhr;
  state.run += 1;  // nothing of the cancelled run is shown any more
  busyStop();
  if (xhr) xhr.abort();
  $("result-meta").textContent = "· cancelled";
}

// ------------------------------------------------------------------ the page

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

function clearResults() {
  // the previous video's bars, timeline and JSON go at once: they never stand beside another video
  $("top").innerHTML = "";
  $("result-meta").textContent = "";
  $("result-file").hidden = true;
  $("timeline-box").hidden = true;
  $("raw").hidden = true;
  showError("");
}

function pickFile(file) {
  if (!file) return;
  if (state.xhr) cancel();
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
  clearResults();
  recognise();
}

function customLabels() {
  // one per line; a single line with commas is a comma-separated list
  let labels = $("labels").value.split("\n").map((s) => s.trim()).filter(Boolean);
  if (labels.length === 1 && labels[0].includes(",")) labels = labels[0].split(",").map((s) => s.trim()).filter(Boolean);
  return labels;
}

function fieldsFor(extra) {
  const fields = { ...extra };
  const labels = customLabels();
  if (labels.length) fields.labels = labels.join("\n");
  return fields;
}

function form(file, fields) {
  const data = new FormData();
  data.append("video", file, file.name);
  for (const [k, v] of Object.entries(fields)) data.append(k, v);
  return data;
}

function scrollToResults() {
  // narrow screens: the results sit below the video card; bring them into view
  const box = $("output").getBoundingClientRect();
  if (box.top > window.innerHeight - 120 || box.bottom < 0) $("output").scrollIntoView({ block: "start" });
}

async function recognise() {
  if (!state.file) return;
  if (state.xhr) cancel();
  const file = state.file, run = ++state.run;
  const key = $("apikey").value.trim();
  if (key) sessionStorage.setItem("text4vis-key", key);
  clearResults();
  $("empty").hidden = true;
  $("result-file").textContent = file.name;
  $("result-file").hidden = false;
  busyStart(run, "Uploading " + file.name);
  scrollToResults();
  const labels = customLabels();
  const result = {};
  try {
    const fields = fieldsFor({ topk: $("topk").value, views: $("views").value });
    result.predict = await send("v1/predict", form(file, fields), run);
    if (run !== state.run) return;  // a newer choice: this answer is not for what is on screen
    const s = ((performance.now() - state.t0) / 1000).toFixed(2);
    const kind = labels.length ? "your " + labels.length + " label" + (labels.length > 1 ? "s" : "") : "model labels";
    $("result-meta").textContent = "· " + kind + " · " + s + " s";
    renderTop(result.predict.top);
    showRaw(file, "v1/predict", fields, result);
    scrollToResults();
    if ($("want-timeline").checked && state.health && state.health.timeline) {
      busyStart(run, "Building the timeline of " + file.name);
      const tfields = fieldsFor({ topk: 3 });
      result.timeline = await send("v1/timeline", form(file, tfields), run);
      if (run !== state.run) return;
      if ($("want-timeline").checked) renderTimeline(result.timeline);
      showRaw(file, "v1/predict", fields, result);
    }
  } catch (e) {
    if (run !== state.run) return;  // cancelled, or replaced by a newer run
    showError(file.name + ": " + e.message);
    $("top").innerHTML = "";
    $("result-meta").textContent = "";
    $("timeline-box").hidden = true;
    scrollToResults();
  } finally {
    if (run === state.run) busyStop();
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
    li.querySelector(".track").setAttribute("aria-hidden", "true");
    list.appendChild(li);
    requestAnimationFrame(() => { li.querySelector(".fill").style.width = (100 * t.score / best).toFixed(1) + "%"; });
  }
}

function shellQuote(text) {
  // bash $'...' quoting: newlines, backslashes and quotes survive a copy-paste
  return "$'" + text.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\n/g, "\\n") + "'";
}

function showRaw(file, path, fields, result) {
  const url = new URL(path, window.location.href).href;
  const parts = ["curl", "-F", shellQuote("video=@" + file.name)];
  for (const [k, v] of Object.entries(fields)) parts.push("-F", shellQuote(k + "=" + v));
  if (apiKey()) parts.push("-H", '"Authorization: Bearer $TEXT4VIS_KEY"');
  parts.push(url);
  $("curl").textContent = parts.join(" ");
  const record = result.timeline ? result : result.predict;
  const text = JSON.stringify(record, null, 2);
  $("json").textContent = text;
  if (state.downloadUrl) URL.revokeObjectURL(state.downloadUrl);
  state.downloadUrl = URL.createObjectURL(new Blob([text + "\n"], { type: "application/json" }));
  $("download").href = state.downloadUrl;
  $("download").download = file.name.replace(/\.[^.]*$/, "") + ".text4vis.json";
  $("copied").textContent = "";
  $("raw").hidden = false;
}

async function copyCurl() {
  const text = $("curl").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("copied").textContent = "copied";
  } catch (e) {  // no clipboard access (plain http on another host): select it for Ctrl-C
    const range = document.createRange();
    range.selectNodeContents($("curl"));
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    $("copied").textContent = "selected: press Ctrl-C";
  }
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
  $("timeline-meta").textContent = "· " + record.video + " · " + (record.windows || []).length + " windows";
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
  $("file").addEventListener("change", (e) => { pickFile(e.target.files[0]); e.target.value = ""; });
  drop.addEventListener("click", () => $("file").click());
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); }
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => pickFile(e.dataTransfer.files[0]));
  $("go").addEventListener("click", recognise);
  $("cancel").addEventListener("click", cancel);
  $("copy-curl").addEventListener("click", copyCurl);
  $("want-timeline").addEventListener("change", (e) => { if (!e.target.checked) $("timeline-box").hidden = true; });
  $("search-form").addEventListener("submit", search);
  $("labels").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) recognise(); });
  $("labels").addEventListener("input", () => { $("one-label").classList.toggle("warn", customLabels().length === 1); });
  $("apikey").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); recognise(); } });
  loadHealth();
}

setup();
