// text4vis serve: the "Live" panel. Each live stream (GET /v1/streams) gets a card with its current label,
// a scrolling timeline of its segments and alerts (read from GET /v1/streams/ID/events, Server-Sent Events,
// through fetch so that the API key can go in a header), and a field to add an alert sentence
// (POST /v1/streams/ID/alerts). Plain JavaScript, separate from app.js; it only reads the API key field.
"use strict";

(function () {
  const POLL_MS = 3000;          // how often the list of streams is refreshed while there are streams
  const IDLE_MS = 10000;         // how often /healthz is asked whether there are any
  const MAX_ITEMS = 200;         // timeline entries kept per stream (the oldest go)
  const RETRY_MS = 3000;         // reconnect delay of an event stream that ended while its stream is listed
  const cards = new Map();       // stream id -> {el, abort, items}
  const el = (id) => document.getElementById(id);

  function liveKey() {
    const field = el("apikey");
    return (field && field.value.trim()) || sessionStorage.getItem("text4vis-key") || "";
  }

  function liveHeaders(extra) {
    const key = liveKey();
    return { ...(key ? { "Authorization": "Bearer " + key } : {}), ...(extra || {}) };
  }

  function make(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function secs(t) {
    return (typeof t === "number") ? t.toFixed(1) + " s" : "";
  }

  function span(ev) {
    const a = (typeof ev.start === "number") ? ev.start.toFixed(1) : "?";
    return a + "–" + ((typeof ev.end === "number") ? ev.end.toFixed(1) + " s" : "now");
  }

  function clock(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleTimeString();
  }

  // ---------------------------------------------------------------- one stream's card

  function card(info) {
    const root = make("article", "live-stream");
    root.dataset.id = info.id;
    const head = make("div", "live-head");
    const name = make("span", "live-source", info.source);
    name.title = info.source;
    const status = make("span", "live-status hint", "");
    head.append(make("span", "live-dot"), name, status);
    const now = make("div", "live-now");
    const label = make("span", "live-label", "waiting for the first window…");
    const score = make("span", "live-score", "");
    now.append(label, score);
    const alerts = make("div", "live-alerts");
    const form = make("form", "row live-alert-form");
    const input = make("input", "grow live-alert-input");
    input.type = "text";
    input.maxLength = 500;
    input.placeholder = "alert when… e.g. a person falls down";
    input.setAttribute("aria-label", "alert sentence for " + info.source);
    const add = make("button", "small", "Add alert");
    form.append(input, add);
    const timeline = make("ol", "live-timeline");
    timeline.setAttribute("aria-live", "polite");
    timeline.setAttribute("aria-label", "segments and alerts of " + info.source);
    root.append(head, now, alerts, timeline, form);
    const c = { root, status, label, score, alerts, timeline, input, abort: null, open: false, info };
    form.addEventListener("submit", (e) => { e.preventDefault(); addAlert(c); });
    showInfo(c, info);
    return c;
  }

  function showInfo(c, info) {
    c.info = info;
    if (info.current && !c.open) showCurrent(c, info.current);
    c.alerts.replaceChildren(...(info.alerts || []).map((q) => make("span", "live-chip", q)));
    if (!c.open || info.done) {         // while its events arrive, they say more (latency)
      c.status.textContent = (info.done ? "ended · " : "") + info.windows + " windows"
        + (info.dropped ? " · " + info.dropped + " dropped" : "");
    }
    c.root.classList.toggle("done", !!info.done);
  }

  function showCurrent(c, top) {
    c.label.textContent = top.label;
    c.score.textContent = (100 * top.score).toFixed(1) + "%";
  }

  function addItem(c, kind, text, when) {
    const li = make("li", "live-item " + kind);
    li.append(make("span", "live-when", when), make("span", "live-what", text));
    const box = c.timeline;
    const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    box.append(li);
    while (box.children.length > MAX_ITEMS) box.firstElementChild.remove();
    if (atEnd) box.scrollTop = box.scrollHeight;  // follows the newest unless the reader scrolled back
    return li;
  }

  function onEvent(c, kind, ev) {
    if (kind === "window") {
      const top = ev.top && ev.top[0];
      if (top) showCurrent(c, top);
      c.status.textContent = secs(ev.end) + " · latency " + (ev.latency ?? 0).toFixed(2) + " s"
        + (ev.dropped ? " · " + ev.dropped + " dropped" : "");
    } else if (kind === "segment") {
      // a segment opens (no end yet: "now") and later closes: the same line, updated
      const when = span(ev);
      const what = ev.label + (ev.score !== undefined ? " " + (100 * ev.score).toFixed(0) + "%" : "");
      const open = c.openSegment;
      if (open && open.isConnected && open.dataset.start === String(ev.start) && ev.end !== undefined) {
        open.querySelector(".live-when").textContent = when;
        open.querySelector(".live-what").textContent = what;
        c.openSegment = null;
      } else {
        const li = addItem(c, "segment", what, when);
        li.dataset.start = String(ev.start);
        c.openSegment = ev.end === undefined ? li : null;
      }
    } else if (kind === "alert") {
      const li = addItem(c, "alert", "ALERT “" + ev.query + "” score " + Number(ev.score).toFixed(3), span(ev));
      li.title = "window end at " + clock(ev.time);
    } else if (kind === "alert_added") {
      addItem(c, "note", "alert added: “" + ev.query + "”", clock(ev.time));
    } else if (kind !== "end" && kind !== "summary") {
      const why = ev.error || ev.reason || "";
      addItem(c, kind === "error" ? "alert" : "note", kind + (why ? ": " + why : ""), clock(ev.time));
    }
  }

  async function follow(c) {
    // read the stream's events until it ends, the card goes or the page stops it
    const abort = new AbortController();
    c.abort = abort;
    c.open = true;
    try {
      const r = await fetch("v1/streams/" + encodeURIComponent(c.info.id) + "/events",
                            { headers: liveHeaders(), signal: abort.signal });
      if (!r.ok || !r.body) throw new Error("events: " + r.status);
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let kind = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) kind = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (!data) continue;  // a keep-alive comment
          try { onEvent(c, kind, JSON.parse(data)); } catch (e) { /* one bad event is skipped */ }
          if (kind === "end") return;
        }
      }
    } catch (e) {
      if (!abort.signal.aborted) c.status.textContent = "disconnected; retrying…";
    } finally {
      c.open = false;
      c.abort = null;
    }
  }

  async function addAlert(c) {
    const query = c.input.value.trim();
    if (!query) return;
    c.input.disabled = true;
    try {
      const r = await fetch("v1/streams/" + encodeURIComponent(c.info.id) + "/alerts", {
        method: "POST", headers: liveHeaders({ "Content-Type": "application/json" }),
        body: JSON.stringify({ query }) });
      let body = null;
      try { body = await r.json(); } catch (e) { /* not JSON */ }
      if (!r.ok) throw new Error(((body && (body.error || body.detail)) || r.statusText) + " [" + r.status + "]");
      c.input.value = "";
      showInfo(c, body);
    } catch (e) {
      addItem(c, "alert", "could not add the alert: " + e.message, "");
    } finally {
      c.input.disabled = false;
      c.input.focus();
    }
  }

  // ---------------------------------------------------------------- the panel

  let refusedKey = null;           // the key (or "") that GET /v1/streams refused: not asked again with it

  async function refresh() {
    // /healthz (no key) says whether the server watches any stream; only then is /v1/streams asked
    const panel = el("live");
    let body;
    try {
      const health = await (await fetch("healthz")).json();
      if (!health.streams && cards.size === 0) return IDLE_MS;
      if (refusedKey === liveKey()) return POLL_MS;   // 401 with this key: wait for another one
      const r = await fetch("v1/streams", { headers: liveHeaders() });
      if (r.status === 401) refusedKey = liveKey();   // app.js asks for the key in its own words
      if (!r.ok) return POLL_MS;
      refusedKey = null;
      body = await r.json();
    } catch (e) {
      return POLL_MS;                   // the server is away: try again later
    }
    const streams = body.streams || [];
    const seen = new Set();
    for (const info of streams) {
      seen.add(info.id);
      let c = cards.get(info.id);
      if (!c) {
        c = card(info);
        cards.set(info.id, c);
        el("live-streams").append(c.root);
      } else {
        showInfo(c, info);
      }
      if (!c.open && !info.done && !(c.retryAt > Date.now())) {
        c.retryAt = Date.now() + RETRY_MS;
        follow(c);
      }
    }
    for (const [id, c] of cards) {      // deleted streams: their card goes
      if (!seen.has(id)) {
        if (c.abort) c.abort.abort();
        c.root.remove();
        cards.delete(id);
      }
    }
    panel.hidden = cards.size === 0;
    return POLL_MS;
  }

  async function loop() {
    const wait = await refresh();
    setTimeout(loop, wait);
  }

  function start() {
    if (el("live")) loop();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
