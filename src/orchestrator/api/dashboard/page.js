// The dashboard's script: reads GET /events (Server-Sent Events) with
// fetch() so that it can send the cluster token, draws each snapshot, and
// fetches the heavy things (files, studies, a task, failures) only when a
// snapshot says they changed, or when asked.
// No library, nothing from another server.
"use strict";

const TOKEN_KEY = "orquesta-token";
const $ = (id) => document.getElementById(id);
let token = null;
let updates = 0;
let lastFailuresTotal = -1;
let failuresAsked = 0;
let lastFilesKey = null;
let filesAsked = 0;

// The token: from the address's fragment (#token=…, never sent to a
// server), kept in this tab's sessionStorage; the fragment is then
// cleared from the address bar and history.
function takeToken() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  token = sessionStorage.getItem(TOKEN_KEY);
}

function headers() {
  const h = { Accept: "application/json" };
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

// A JSON call to this server; rejects with the server's error text.
async function api(path, method) {
  const resp = await fetch(path, { method: method || "GET", headers: headers(), cache: "no-store" });
  if (resp.status === 401) { askToken(); throw new Error("the token was refused"); }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const e = new Error(body.error || ("HTTP " + resp.status));
    e.status = resp.status;
    throw e;
  }
  return body;
}

function setState(state, text) {
  document.body.dataset.state = state;
  const c = $("conn");
  c.textContent = text;
  c.className = "badge " + (state === "live" ? "live" : state === "error" || state === "auth" ? "error" : "");
}

function askToken() {
  setState("auth", "token needed");
  $("token-form").hidden = false;
  $("token-input").focus();
}

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("token-input").value.trim();
  if (!t) return;
  sessionStorage.setItem(TOKEN_KEY, t);
  token = t;
  $("token-input").value = "";
  $("token-form").hidden = true;
  connect();
  refreshFiles();
  refreshStudies();
});

// ---- formatting ----
function esc(s) {
  return String(s == null ? "" : s).replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function num(n) {
  if (n == null) return "–";
  const a = Math.abs(n);
  if (a >= 1e12) return (n / 1e12).toFixed(1) + "T";
  if (a >= 1e9) return (n / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}
function secs(s) {
  if (s == null) return "–";
  if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 1 : 0) + " ms";
  if (s < 120) return s.toFixed(s < 10 ? 2 : 1) + " s";
  if (s < 7200) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function bound(s) { return s < 1 ? Math.round(s * 1000) + "ms" : s + "s"; }
function when(unix) { return new Date(unix * 1000).toLocaleTimeString(); }

// ---- the stream ----
// Parses text/event-stream from a fetch() body: events end with a blank
// line; `data:` lines are joined.
async function connect() {
  setState("connecting", "connecting…");
  let resp;
  try {
    resp = await fetch("/events", { headers: headers(), cache: "no-store" });
  } catch (e) {
    setState("error", "disconnected");
    return setTimeout(connect, 2000);
  }
  if (resp.status === 401) return askToken();
  if (!resp.ok || !resp.body) {
    setState("error", "stream refused (HTTP " + resp.status + ")");
    return setTimeout(connect, 3000);
  }
  setState("live", "live");
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
        if (data) {
          try { render(JSON.parse(data)); } catch (e) { console.error(e); }
        }
      }
    }
  } catch (e) { /* the connection dropped */ }
  setState("error", "disconnected, reconnecting…");
  setTimeout(connect, 2000);
}

// ---- drawing a snapshot ----
function render(s) {
  if (s.error) { $("summary").textContent = s.error; return; }
  updates += 1;
  const b = document.body;
  b.dataset.updates = String(updates);
  b.dataset.tasksDone = String(s.tasks.by_status.completed || 0);
  b.dataset.running = String(s.running.length);
  const wc = s.worker_counts;
  $("summary").textContent = "v" + s.version + " · up " + secs(s.uptime_seconds) + " · " + num(wc.up) + "/" +
    num(wc.total) + " workers up · " + num(s.tasks.total) + " tasks stored";
  drawWorkers(s);
  drawAllocations(s.allocations || []);
  drawQueue(s.tasks);
  drawChart(s.activity);
  drawRunning(s.running);
  drawHistograms(s.activity);
  if (s.activity.failures_total !== lastFailuresTotal && Date.now() - failuresAsked > 2000) {
    lastFailuresTotal = s.activity.failures_total;
    failuresAsked = Date.now();
    refreshFailures();
  }
  // a file taken or rejected, or tasks ended: the Files and Studies lists
  // are read again (at most every 2 s)
  const c = s.tasks.by_status;
  const filesKey = [s.last_file_id, s.tasks.total, c.completed || 0, c.failed || 0, c.cancelled || 0].join("/");
  if (filesKey !== lastFilesKey && Date.now() - filesAsked > 2000) {
    lastFilesKey = filesKey;
    filesAsked = Date.now();
    refreshFiles();
    refreshStudies();
  }
}

function drawWorkers(s) {
  const rows = s.workers.map((w) => {
    // the bar's length is capacity + backlog: running fills the part up
    // to the capacity mark, the backlog sent ahead comes after it
    const span = Math.max(w.capacity + w.backlog, 1);
    const run = Math.min(w.running / span, 1) * 100;
    const back = Math.min(w.backlog / span, 1 - run / 100) * 100;
    const mark = Math.min(w.capacity / span, 1) * 100;
    const age = w.heartbeat_age_seconds;
    const hb = age == null ? "never" : secs(age) + " ago";
    const drain = w.state === "draining" || w.state === "drained";
    const action = drain ? "resume" : "drain";
    return "<tr data-worker=\"" + esc(w.id) + "\">" +
      "<td><b>" + esc(w.id) + "</b> <span class=\"muted\">" + esc(w.source) + " · " + esc(w.address) + "</span></td>" +
      "<td><span class=\"badge state-" + esc(w.state) + "\" title=\"" + esc(w.state_reason || "") + "\">" + esc(w.state) + "</span>" +
      // a suspect or quarantined worker says why, not only in a tooltip
      (/^suspect: /.test(w.state_reason || "") ? "<div class=\"muted\">" + esc(w.state_reason) + "</div>" : "") + "</td>" +
      "<td><span class=\"load\"><span class=\"run\" style=\"width:" + run.toFixed(1) + "%\"></span>" +
      "<span class=\"back\" style=\"left:" + mark.toFixed(1) + "%;width:" + back.toFixed(1) + "%\"></span>" +
      "<span class=\"cap\" style=\"left:" + mark.toFixed(1) + "%\"></span></span>" +
      "<span class=\"load-text\">" + w.running + " / " + w.capacity + (w.backlog ? " + " + w.backlog : "") + "</span></td>" +
      "<td>" + hb + "</td>" +
      "<td class=\"num\">" + num(w.tasks_completed) + "</td><td class=\"num\">" + num(w.tasks_failed) + "</td>" +
      "<td class=\"num\">" + secs(w.mean_seconds) + "</td><td class=\"num\">" + secs(w.p95_seconds) + "</td>" +
      "<td>" + esc((w.kernels || []).join(", ")) + "</td>" +
      "<td><button type=\"button\" class=\"small\" data-act=\"" + action + "\" data-id=\"" + esc(w.id) + "\">" + action + "</button></td></tr>";
  });
  $("workers").tBodies[0].innerHTML = rows.join("") ||
    "<tr><td colspan=\"10\" class=\"note\">no worker configured or joined</td></tr>";
  // the snapshot carries the first rows only; the counts cover every worker
  const wc = s.worker_counts;
  const states = Object.keys(wc.by_state).map((k) => num(wc.by_state[k]) + " " + k).join(", ");
  $("workers-count").textContent = num(wc.total) + " (" + num(wc.total - wc.joined) + " configured, " + num(wc.joined) + " joined" +
    (states ? "; " + states : "") + ")" +
    (wc.total > s.workers.length ? " · the first " + s.workers.length + " shown; GET /workers?offset=" + s.workers.length + "&limit=… lists the rest" : "");
}

$("workers").addEventListener("click", async (ev) => {
  const btn = ev.target.closest("button[data-act]");
  if (!btn) return;
  const id = btn.dataset.id, act = btn.dataset.act;
  const what = act === "drain"
    ? "Drain worker " + id + "? It takes no new tasks; running ones finish."
    : "Resume worker " + id + "? It takes tasks again.";
  if (!confirm(what)) return;
  try {
    const r = await api("/workers/" + encodeURIComponent(id) + "/" + act, "POST");
    $("worker-action").textContent = "worker " + r.id + " is now " + r.state;
  } catch (e) {
    $("worker-action").textContent = act + " " + id + ": " + e.message;
  }
});

// Each allocation queue (orquesta alloc) with its jobs: id, state,
// workers joined, age, and why it waits or failed; the queue's last
// failed command under it.
function drawAllocations(list) {
  $("alloc-count").textContent = list.length ? String(list.length) : "";
  if (!list.length) {
    $("allocations").innerHTML = "<p class=\"note\">no allocation queue: workers come from the configuration and " +
      "<code>--join</code> only (<code>orquesta alloc add</code> lets the cluster manager add them)</p>";
    return;
  }
  $("allocations").innerHTML = list.map((q) => {
    const jobs = q.jobs.map((j) =>
      "<tr data-job=\"" + esc(j.id) + "\" data-job-state=\"" + esc(j.state) + "\" data-joined=\"" + j.workers_joined + "\">" +
      "<td>" + esc(j.id) + "</td><td><span class=\"badge state-" + esc(j.state) + "\">" + esc(j.state) + "</span></td>" +
      "<td class=\"num\">" + j.workers_joined + " / " + q.spec.workers_per_job + "</td>" +
      "<td class=\"num\">" + secs(j.age_seconds) + "</td>" +
      "<td class=\"wrap\">" + esc((j.workers || []).join(", ")) + (j.reason ? " <span class=\"muted\">" + esc(j.reason) + "</span>" : "") + "</td></tr>").join("");
    const err = q.last_error
      ? "<p class=\"error-text\" data-alloc-error=\"" + esc(q.name) + "\">last error (" + esc(q.last_error.at) + "): " +
        esc(q.last_error.message) + (q.last_error.output ? "<br><code>" + esc(q.last_error.output) + "</code>" : "") + "</p>"
      : "";
    return "<div data-alloc=\"" + esc(q.name) + "\"><h3>" + esc(q.name) + " <span class=\"muted\">" + esc(q.kind) +
      " · max " + q.spec.max_jobs + " jobs × " + q.spec.workers_per_job + " workers × " + q.spec.capacity + " slots · " +
      q.jobs_submitted + " submitted, " + q.jobs_failed + " failed</span> <span class=\"badge state-" + esc(q.state) + "\">" +
      esc(q.state) + "</span>" + (q.backoff_until ? " <span class=\"muted\">until " + esc(q.backoff_until) + "</span>" : "") + "</h3>" +
      "<table><thead><tr><th>job</th><th>state</th><th class=\"num\">workers joined</th><th class=\"num\">age</th><th>workers · reason</th></tr></thead><tbody>" +
      (jobs || "<tr><td colspan=\"5\" class=\"note\">no job now</td></tr>") + "</tbody></table>" + err + "</div>";
  }).join("");
}

const STATUSES = ["queued", "running", "completed", "failed", "cancelled"];
function drawQueue(t) {
  $("queue-total").textContent = num(t.total) + " stored";
  $("queue-status").innerHTML = STATUSES.map((k) =>
    "<div class=\"tile\" data-status=\"" + k + "\"><div class=\"n\">" + num(t.by_status[k] || 0) +
    "</div><div class=\"k\">" + k + "</div></div>").join("");
  $("queue-priority").tBodies[0].innerHTML = ["high", "medium", "low"].map((p) => {
    const c = t.by_priority[p] || {};
    return "<tr><td>" + p + "</td>" + STATUSES.map((k) => "<td class=\"num\">" + num(c[k] || 0) + "</td>").join("") + "</tr>";
  }).join("");
}

// Completed (and failed for good) tasks per bin over the last 10 minutes,
// as bars; the scale's top is the largest bin.
function drawChart(a) {
  $("rate-tasks").textContent = num(a.completed_per_second);
  $("rate-steps").textContent = num(a.particle_steps_per_second);
  const W = 600, H = 150, L = 34, B = 18, n = a.completed.length;
  const top = Math.max(1, ...a.completed.map((c, i) => c + a.failed[i]));
  const bw = (W - L) / n;
  let bars = "";
  for (let i = 0; i < n; i++) {
    const x = L + i * bw, hc = (a.completed[i] / top) * (H - B - 6), hf = (a.failed[i] / top) * (H - B - 6);
    if (hc > 0) bars += "<rect class=\"done\" x=\"" + x.toFixed(1) + "\" y=\"" + (H - B - hc).toFixed(1) + "\" width=\"" + (bw - 1).toFixed(1) + "\" height=\"" + hc.toFixed(1) + "\"><title>" + a.completed[i] + " completed</title></rect>";
    if (hf > 0) bars += "<rect class=\"fail\" x=\"" + x.toFixed(1) + "\" y=\"" + (H - B - hc - hf).toFixed(1) + "\" width=\"" + (bw - 1).toFixed(1) + "\" height=\"" + hf.toFixed(1) + "\"><title>" + a.failed[i] + " failed</title></rect>";
  }
  const perBin = a.bin_seconds + " s";
  $("chart").innerHTML = "<svg viewBox=\"0 0 " + W + " " + H + "\" role=\"img\" aria-label=\"tasks completed per " + perBin + "\" data-bins=\"" + n + "\" data-max=\"" + top + "\">" +
    "<line x1=\"" + L + "\" y1=\"" + (H - B) + "\" x2=\"" + W + "\" y2=\"" + (H - B) + "\"></line>" +
    "<line x1=\"" + L + "\" y1=\"6\" x2=\"" + W + "\" y2=\"6\"></line>" +
    "<text x=\"" + (L - 4) + "\" y=\"12\" text-anchor=\"end\">" + num(top) + "</text>" +
    "<text x=\"" + (L - 4) + "\" y=\"" + (H - B) + "\" text-anchor=\"end\">0</text>" +
    "<text x=\"" + L + "\" y=\"" + (H - 4) + "\">−10 min</text>" +
    "<text x=\"" + (L + (W - L) / 2) + "\" y=\"" + (H - 4) + "\" text-anchor=\"middle\">tasks per " + perBin + " (red: failed)</text>" +
    "<text x=\"" + W + "\" y=\"" + (H - 4) + "\" text-anchor=\"end\">now</text>" + bars + "</svg>";
}

function drawRunning(list) {
  $("running-count").textContent = list.length ? list.length + " shown" : "";
  $("running").tBodies[0].innerHTML = list.map((t) => {
    const p = Math.max(0, Math.min(1, t.progress || 0)) * 100;
    return "<tr data-task=\"" + esc(t.task_id) + "\" data-progress=\"" + p.toFixed(1) + "\">" +
      "<td><a data-find=\"" + esc(t.task_id) + "\">" + esc(t.task_id) + "</a></td><td>" + esc(t.worker_id) + "</td>" +
      "<td>" + esc(t.kernel) + " <span class=\"muted\">N=" + num(t.num_particles) + "</span></td>" +
      "<td><span class=\"progress\"><div style=\"width:" + p.toFixed(1) + "%\"></div></span> " +
      num(t.steps_done) + " / " + num(t.num_steps) + "</td><td class=\"num\">" + secs(t.elapsed_seconds) + "</td></tr>";
  }).join("") || "<tr><td colspan=\"5\" class=\"note\">nothing runs now</td></tr>";
}

// One histogram per kernel on the fixed buckets, cut to the buckets used.
function drawHistograms(a) {
  const bounds = a.bucket_bounds_seconds;
  const out = a.kernels.map((k) => {
    const h = k.histogram;
    let lo = h.findIndex((c) => c > 0), hi = h.length - 1 - [...h].reverse().findIndex((c) => c > 0);
    if (lo < 0) return "";
    while (hi - lo < 5) { if (lo > 0) lo--; if (hi - lo < 5 && hi < h.length - 1) hi++; if (lo === 0 && hi === h.length - 1) break; }
    const W = 600, H = 90, B = 16, n = hi - lo + 1, bw = W / n, top = Math.max(...h.slice(lo, hi + 1));
    let svg = "";
    for (let i = lo; i <= hi; i++) {
      const x = (i - lo) * bw, hh = (h[i] / top) * (H - B - 4);
      const label = i < bounds.length ? "≤" + bound(bounds[i]) : ">" + bound(bounds[bounds.length - 1]);
      svg += "<rect class=\"bar\" x=\"" + (x + 1).toFixed(1) + "\" y=\"" + (H - B - hh).toFixed(1) + "\" width=\"" + (bw - 2).toFixed(1) + "\" height=\"" + hh.toFixed(1) + "\"><title>" + h[i] + " tasks " + label + "</title></rect>" +
        "<text x=\"" + (x + bw / 2).toFixed(1) + "\" y=\"" + (H - 3) + "\" text-anchor=\"middle\">" + label + "</text>";
    }
    return "<div class=\"hist\" data-kernel=\"" + esc(k.name) + "\"><b>" + esc(k.name) + "</b> <span class=\"muted\">" + num(k.count) +
      " tasks · mean " + secs(k.mean_seconds) + " · p95 " + secs(k.p95_seconds) + "</span>" +
      "<svg viewBox=\"0 0 " + W + " " + H + "\"><line x1=\"0\" y1=\"" + (H - B) + "\" x2=\"" + W + "\" y2=\"" + (H - B) + "\"></line>" + svg + "</svg></div>";
  }).join("");
  $("histograms").innerHTML = out || "<p class=\"note\">no task has completed since the orchestrator started</p>";
}

async function refreshFailures() {
  try {
    const r = await api("/activity/failures");
    $("failures-count").textContent = r.failures.length ? r.failures.length + " latest" : "";
    $("failures").innerHTML = r.failures.map((f) =>
      "<li><span class=\"muted\">" + when(f.at) + "</span> <a data-find=\"" + esc(f.task_id) + "\">" + esc(f.task_id) + "</a> on " +
      esc(f.worker_id) + ", attempt " + f.attempt + " " +
      (f.is_final ? "<span class=\"fail-final\">failed for good</span>" : "<span class=\"muted\">(" + esc(f.outcome) + ", will retry)</span>") +
      "<br>" + esc(f.reason) + "</li>").join("") || "<li class=\"note\">no failure since the orchestrator started</li>";
  } catch (e) {
    $("failures").innerHTML = "<li class=\"error-text\">" + esc(e.message) + "</li>";
  }
}

// ---- files (GET /files), a file's report or tasks ----
async function refreshFiles() {
  let r;
  try {
    r = await api("/files?limit=20");
  } catch (e) {
    $("files").innerHTML = e.status === 404
      ? "<p class=\"note\" data-files=\"unavailable\">the file list is not available on this orchestrator (GET /files answers 404)</p>"
      : "<p class=\"error-text\">" + esc(e.message) + "</p>";
    return;
  }
  const rows = r.files.map((f) => {
    const c = f.counts || {};
    const ended = (c.completed || 0) + (c.failed || 0) + (c.cancelled || 0);
    const p = f.tasks ? (ended / f.tasks) * 100 : 0;
    const what = f.state === "rejected"
      ? "<span class=\"fail-final\">rejected</span> " + esc(f.summary || "") + " <a data-report=\"" + f.id + "\">report</a>"
      : "<span class=\"progress\"><div style=\"width:" + p.toFixed(1) + "%\"></div></span> " + num(ended) + " / " + num(f.tasks) +
        (c.failed ? " <span class=\"fail-final\">" + num(c.failed) + " failed</span>" : "") +
        " <a data-batch=\"" + esc(f.name) + "\">tasks</a>";
    return "<tr><td>" + esc(f.name) + "</td><td class=\"muted\">" + when(f.at) + "</td><td class=\"wrap\">" + what + "</td></tr>";
  });
  $("files").innerHTML = "<div class=\"scroll\"><table><thead><tr><th>file</th><th>at</th><th>progress</th></tr></thead><tbody>" +
    (rows.join("") || "<tr><td colspan=\"3\" class=\"note\">no file taken yet</td></tr>") + "</tbody></table></div>" +
    "<p class=\"muted\">" + num(r.total) + " files</p>";
}

$("files-refresh").addEventListener("click", refreshFiles);

// ---- studies (GET /studies), each with a link to its report ----
async function refreshStudies() {
  let r;
  try {
    r = await api("/studies");
  } catch (e) {
    $("studies").innerHTML = "<p class=\"error-text\">" + esc(e.message) + "</p>";
    return;
  }
  const rows = r.studies.map((s) => {
    const c = s.by_status || {};
    const ended = (c.completed || 0) + (c.failed || 0) + (c.cancelled || 0);
    const href = "/studies/" + encodeURIComponent(s.name) + "/report";
    return "<tr><td>" + esc(s.name) + "</td><td class=\"num\">" + num(ended) + " / " + num(s.tasks) +
      "</td><td>" + esc(s.swept.join(", ")) + "</td><td><a href=\"" + esc(href) + "\" data-study-report=\"" +
      esc(s.name) + "\" target=\"_blank\" rel=\"noopener\">report</a></td></tr>";
  });
  $("studies").innerHTML = rows.length
    ? "<div class=\"scroll\"><table><thead><tr><th>study</th><th class=\"num\">ended</th><th>swept</th><th></th></tr></thead><tbody>" +
      rows.join("") + "</tbody></table></div>"
    : "<p class=\"note\">no study yet: tasks join one with a <code>study</code> field (<code>orquesta gen --study NAME</code>)</p>";
}

$("studies-refresh").addEventListener("click", refreshStudies);

// With a token the report is fetched with it (a plain link cannot send
// it) and opened from memory; without one the link opens it directly.
document.addEventListener("click", async (ev) => {
  const a = ev.target.closest("a[data-study-report]");
  if (!a || !token) return;
  ev.preventDefault();
  try {
    const resp = await fetch(a.getAttribute("href"), { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    const url = URL.createObjectURL(await resp.blob());
    window.open(url, "_blank", "noopener");
  } catch (e) {
    $("studies").insertAdjacentHTML("beforeend", "<p class=\"error-text\">" + esc(e.message) + "</p>");
  }
});

document.addEventListener("click", async (ev) => {
  const a = ev.target.closest("a[data-report], a[data-batch], a[data-find]");
  if (!a) return;
  if (a.dataset.find) { $("search-input").value = a.dataset.find; return showTask(a.dataset.find); }
  const out = $("file-detail");
  try {
    if (a.dataset.report) {
      const f = await api("/files/" + encodeURIComponent(a.dataset.report));
      out.innerHTML = "<h3>" + esc(f.name) + "</h3><pre>" + esc(JSON.stringify(f.report, null, 2)) + "</pre>";
    } else {
      const name = a.dataset.batch;
      const r = await api("/tasks?file=" + encodeURIComponent(name) + "&limit=50");
      out.innerHTML = "<h3>" + esc(name) + " <span class=\"muted\">" + r.returned + " of " + num(r.total) + " tasks</span></h3>" +
        "<div class=\"scroll\"><table><tbody>" + r.tasks.map((t) =>
          "<tr><td><a data-find=\"" + esc(t.task_id) + "\">" + esc(t.task_id) + "</a></td><td>" + esc(t.status) +
          "</td><td>" + esc(t.worker_id || "") + "</td><td class=\"num\">" + secs(t.execution_time) + "</td></tr>").join("") +
        "</tbody></table></div>";
    }
  } catch (e) {
    out.innerHTML = "<p class=\"error-text\">" + esc(e.message) + "</p>";
  }
});

// ---- one task ----
// `attempts` is either the list of attempts or their number (then the
// list is `attempts_detail`): both shapes are read.
async function showTask(id) {
  const out = $("task-detail");
  if (!id) return;
  let t;
  try {
    t = await api("/tasks/" + encodeURIComponent(id));
  } catch (e) {
    out.innerHTML = "<p class=\"error-text\">" + esc(e.message) + "</p>";
    return;
  }
  const attempts = Array.isArray(t.attempts) ? t.attempts : (t.attempts_detail || []);
  const rows = attempts.map((a) =>
    "<tr><td>" + esc(a.attempt_id) + "</td><td>" + esc(a.worker_id) + "</td><td>" + esc(a.started_at) + "</td><td>" +
    esc(a.ended_at || "") + "</td><td>" + esc(a.outcome || "running") + "</td><td class=\"wrap\">" + esc(a.error || "") + "</td></tr>").join("");
  const fields = ["status", "priority", "algorithm", "kernel", "source", "created_at", "worker_id", "started_at",
    "finished_at", "execution_time", "error", "results_file"]
    .filter((k) => t[k] != null)
    .map((k) => "<tr><th>" + k + "</th><td class=\"wrap\">" + esc(k === "execution_time" ? secs(t[k]) : t[k]) + "</td></tr>").join("");
  out.innerHTML = "<h3>" + esc(t.task_id) + "</h3><table data-task-status=\"" + esc(t.status) + "\">" + fields + "</table>" +
    "<h3>parameters</h3><pre>" + esc(JSON.stringify(t.parameters, null, 2)) + "</pre>" +
    "<h3>attempts</h3>" + (rows ? "<table><thead><tr><th>id</th><th>worker</th><th>started</th><th>ended</th><th>outcome</th><th>error</th></tr></thead><tbody>" + rows + "</tbody></table>" : "<p class=\"note\">none yet</p>") +
    (t.waiting ? "<h3>why it waits</h3><pre>" + esc(JSON.stringify(t.waiting, null, 2)) + "</pre>" : "") +
    (t.result ? "<h3>result</h3><pre>" + esc(JSON.stringify(t.result, null, 2)) + "</pre>" : "");
}

$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  showTask($("search-input").value.trim());
});

takeToken();
connect();
refreshFiles();
refreshStudies();
