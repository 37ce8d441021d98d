// Sluice web UI: a single page drawn from the JSON API under /api/v1/.
// No framework, no network access beyond this server.
"use strict";

const API = "api/v1";
const CHART_BATCHES = 300; // batches drawn on the timelines
const PAGE = 50;           // rows of the batches table
let timer = null;
let route = "";

function el(tag, attrs, ...kids) {
  const svg = ["svg", "polyline", "circle", "line", "text", "rect", "g"].includes(tag);
  const e = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined) continue;
    e.appendChild(typeof k === "object" ? k : document.createTextNode(String(k)));
  }
  return e;
}

async function get(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || (r.status + " " + r.statusText));
  return body;
}

function ms(v) {
  if (v === undefined || v === null) return "–";
  if (v >= 10000) return (v / 1000).toFixed(1) + " s";
  if (v >= 100) return Math.round(v) + " ms";
  return v.toFixed(1) + " ms";
}
function dur(msv) {
  let s = Math.floor(msv / 1000);
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s";
}
function age(msv) { return msv >= 60000 ? dur(msv) : ms(msv); }
function num(n) { return Number(n).toLocaleString("en-US"); }
function clock(t) { return new Date(t).toISOString().slice(11, 23); }
function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function jobHref(id) { return "#/jobs/" + encodeURIComponent(id); }
function batchHref(id, b) { return jobHref(id) + "/batches/" + b; }
function execsHref(id) { return jobHref(id) + "/executors"; }

// inputsTable shows what each input stream put into a batch: records, the
// figures of its log line (a Kafka source's lag and backpressure rate) and
// a Kafka source's offset ranges and lag per partition.
function inputsTable(inputs) {
  if (!inputs || !inputs.length) return null;
  const rows = [];
  for (const inp of inputs) {
    const a = inp.attrs || {};
    rows.push(el("tr", { class: "input" },
      el("td", { class: "l" }, inp.stream), el("td", {}, num(inp.records)),
      el("td", {}, a.lag !== undefined ? num(a.lag) : "–"),
      el("td", {}, a.rate !== undefined ? num(a.rate) + " /s" : "–"),
      el("td", { class: "l" }, Object.entries(a).filter(([k]) => !["lag", "rate", "offsets"].includes(k)).map(([k, v]) => k + "=" + v).join(" "))));
    const parts = inp.partitions ||
      (Array.isArray(inp.metadata) ? inp.metadata.filter(r => r && r.Topic !== undefined && r.From !== undefined)
        .map(r => ({ topic: r.Topic, partition: r.Partition, fromOffset: r.From, untilOffset: r.Until })) : []);
    for (const r of parts) {
      rows.push(el("tr", { class: "range" },
        el("td", { class: "l" }, "  " + r.topic + "/" + r.partition), el("td", {}, num(r.untilOffset - r.fromOffset)),
        el("td", { class: "lag" }, r.lag !== undefined ? num(r.lag) : ""), el("td", {}, ""),
        el("td", { class: "l" }, "offsets " + r.fromOffset + " – " + r.untilOffset)));
    }
  }
  return el("table", { id: "inputs" },
    el("tr", {}, el("th", { class: "l" }, "Input stream / partition"), el("th", {}, "Records"), el("th", {}, "Lag"),
      el("th", {}, "Backpressure rate"), el("th", { class: "l" }, "Details")),
    rows);
}

function showError(err) {
  const box = document.getElementById("error");
  if (!err) { box.hidden = true; box.textContent = ""; return; }
  box.hidden = false;
  box.textContent = "Cannot reach the job: " + err.message;
}

function setMain(...kids) {
  const m = document.getElementById("main");
  m.replaceChildren(...kids);
}

function crumbs(...parts) {
  const c = document.getElementById("crumbs");
  c.replaceChildren(...parts.flatMap((p, i) => i ? [" / ", p] : [p]));
}

// ---- jobs list ----
async function jobsPage() {
  const jobs = await get(API + "/jobs");
  const crumbParts = ["Jobs"];
  const rows = jobs.map(j => el("tr", {},
    el("td", { class: "l" }, el("a", { href: jobHref(j.id), class: "job" }, j.name), j.id !== j.name ? el("span", { class: "id" }, " " + j.id) : null),
    el("td", { class: "l" }, j.state),
    el("td", {}, dur(j.uptimeMs)),
    el("td", {}, num(j.batchesDone)),
    el("td", {}, num(j.batchesFailed)),
    el("td", {}, num(j.pendingBatches)),
    el("td", {}, num(j.inputRecords)),
    el("td", {}, j.lastBatch ? ms(j.lastBatch.schedulingDelayMs) : "–"),
    el("td", {}, j.lastBatch ? ms(j.lastBatch.totalDelayMs) : "–"),
    el("td", { class: "l err" }, j.error || "")));
  return [crumbParts, [el("h1", {}, "Jobs"),
    el("table", { id: "jobs" },
      el("tr", {}, el("th", { class: "l" }, "Job"), el("th", { class: "l" }, "State"), el("th", {}, "Uptime"),
        el("th", {}, "Batches done"), el("th", {}, "Failed"), el("th", {}, "Pending"), el("th", {}, "Records in"),
        el("th", {}, "Scheduling delay"), el("th", {}, "Total delay"), el("th", { class: "l" }, "Error")),
      rows)]];
}

// ---- charts ----
// chart draws values (oldest first) as an SVG timeline with a point per
// batch, and a histogram of the values beside it.
function chart(title, unit, batches, value, fmt) {
  const W = 420, H = 150, L = 44, R = 8, T = 8, B = 18;
  const vals = batches.map(value);
  const maxV = Math.max(1e-9, ...vals);
  const t0 = batches.length ? batches[0].id : 0;
  const t1 = batches.length ? batches[batches.length - 1].id : 1;
  const x = id => L + (t1 === t0 ? (W - L - R) / 2 : (id - t0) / (t1 - t0) * (W - L - R));
  const y = v => T + (1 - v / maxV) * (H - T - B);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "timeline", "data-points": vals.length, role: "img", "aria-label": title });
  svg.appendChild(el("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  svg.appendChild(el("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  svg.appendChild(el("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, fmt(maxV)));
  svg.appendChild(el("text", { x: L - 4, y: H - B, "text-anchor": "end" }, "0"));
  if (batches.length) {
    svg.appendChild(el("text", { x: L, y: H - 4 }, clock(batches[0].time)));
    svg.appendChild(el("text", { x: W - R, y: H - 4, "text-anchor": "end" }, clock(batches[batches.length - 1].time)));
    svg.appendChild(el("polyline", { class: "line", points: batches.map((b, i) => x(b.id).toFixed(1) + "," + y(vals[i]).toFixed(1)).join(" ") }));
    const g = el("g", {});
    batches.forEach((b, i) => {
      const c = el("circle", { class: "pt" + (b.status === "failed" ? " failed" : ""), cx: x(b.id).toFixed(1), cy: y(vals[i]).toFixed(1), r: 2.2, "data-batch": b.id });
      c.appendChild(el("title", {}, clock(b.time) + ": " + fmt(vals[i])));
      g.appendChild(c);
    });
    svg.appendChild(g);
  }
  // Histogram: 10 bins over [0, max].
  const HW = 150;
  const hist = el("svg", { viewBox: `0 0 ${HW} ${H}`, class: "histogram" });
  const bins = new Array(10).fill(0);
  for (const v of vals) bins[Math.min(9, Math.floor(v / maxV * 10))]++;
  const maxBin = Math.max(1, ...bins);
  bins.forEach((n, i) => {
    const bh = (n / maxBin) * (H - T - B);
    hist.appendChild(el("rect", { class: "bar", x: 4 + i * (HW - 8) / 10, y: H - B - bh, width: (HW - 8) / 10 - 2, height: bh }, el("title", {}, n + " batches")));
  });
  hist.appendChild(el("text", { x: 4, y: H - 4 }, "0"));
  hist.appendChild(el("text", { x: HW - 4, y: H - 4, "text-anchor": "end" }, fmt(maxV)));
  const avg = vals.length ? vals.reduce((a, b) => a + b, 0) / vals.length : 0;
  return el("div", { class: "chart", "data-chart": title },
    el("div", {}, el("span", { class: "t" }, title), " ", unit, vals.length ? " — avg " + fmt(avg) : ""),
    el("div", { class: "pair" }, svg, hist));
}

// checkpointCards show the job's newest checkpoint: the last batch it
// records, its age and sizes, and the newest state snapshot.
function checkpointCards(c) {
  if (!c) return null;
  const card = (id, label, v, title) => el("div", { class: "card", id: id, title: title }, label, el("b", {}, v));
  const s = c.snapshot;
  return [el("h2", {}, "Checkpoint"),
    el("div", { class: "cards", id: "checkpoint" },
      card("ckpt-batch", "Last batch checkpointed", c.lastBatchTime ? clock(c.lastBatchTime) : "none yet", "metadata generation " + c.generation),
      card("ckpt-age", "Checkpoint age", age(c.ageMs), "written " + c.writtenAt),
      card("ckpt-generation", "Generation", num(c.generation)),
      card("ckpt-meta", "Metadata size", bytes(c.metadataBytes)),
      card("ckpt-snapshot", "Last state snapshot", s ? clock(s.batchTime) + ", " + age(s.ageMs) + " ago" : "none", s ? "written " + s.writtenAt : undefined),
      card("ckpt-snapshot-size", "Snapshot size", s ? bytes(s.bytes) : "–"))];
}

// ---- streaming page ----
async function jobPage(id, offset) {
  const [job, recent, page] = await Promise.all([
    get(`${API}/jobs/${encodeURIComponent(id)}`),
    get(`${API}/jobs/${encodeURIComponent(id)}/batches?limit=${CHART_BATCHES}`),
    get(`${API}/jobs/${encodeURIComponent(id)}/batches?offset=${offset}&limit=${PAGE}`),
  ]);
  const crumbParts = [el("a", { href: "#/" }, "Jobs"), job.name];
  const bs = recent.batches.slice().reverse(); // oldest first
  const sec = job.batchIntervalMs / 1000;
  const last = job.lastBatch;
  const card = (label, v) => el("div", { class: "card" }, label, el("b", {}, v));
  const rows = page.batches.map(b => el("tr", { class: b.status === "failed" ? "failed" : "" },
    el("td", { class: "l" }, el("a", { href: batchHref(job.id, b.id), class: "batch" }, clock(b.time))),
    el("td", {}, num(b.inputRecords)),
    el("td", {}, ms(b.schedulingDelayMs)),
    el("td", {}, ms(b.processingTimeMs)),
    el("td", {}, ms(b.totalDelayMs)),
    el("td", {}, b.jobs),
    el("td", { class: "l" }, b.status)));
  const pager = el("div", { class: "pager" },
    offset > 0 ? el("a", { href: jobHref(job.id) + "?offset=" + Math.max(0, offset - PAGE) }, "« newer") : null,
    offset + PAGE < page.total ? el("a", { href: jobHref(job.id) + "?offset=" + (offset + PAGE) }, "older »") : null,
    `batches ${page.total ? offset + 1 : 0}–${Math.min(page.total, offset + PAGE)} of ${num(page.total)} kept (last ${num(job.historyCapacity)})`);
  return [crumbParts, [
    el("h1", {}, "Streaming: " + job.name),
    el("p", {}, el("a", { href: execsHref(job.id), id: "executors-link" }, "Executors »")),
    el("div", { class: "cards" },
      card("State", job.state), card("Uptime", dur(job.uptimeMs)), card("Batch interval", ms(job.batchIntervalMs)),
      card("Batches done", num(job.batchesDone)), card("Batches failed", num(job.batchesFailed)),
      card("Records in", num(job.inputRecords)), card("Task failures", num(job.taskFailures)),
      card("Pending batches", num(job.pendingBatches)),
      card("Scheduling delay", last ? ms(last.schedulingDelayMs) : "–"),
      card("Total delay", last ? ms(last.totalDelayMs) : "–"),
      card("Operator state", num(job.stateKeys) + " keys, " + bytes(job.stateBytes))),
    checkpointCards(job.checkpoint),
    job.lastInputs && job.lastInputs.length ? el("h2", {}, "Input of the last batch") : null,
    inputsTable(job.lastInputs),
    el("h2", {}, `Last ${bs.length} batches`),
    el("div", { class: "charts" },
      chart("Input rate", "records/s", bs, b => b.inputRecords / sec, v => num(Math.round(v))),
      chart("Scheduling delay", "", bs, b => b.schedulingDelayMs, ms),
      chart("Processing time", "", bs, b => b.processingTimeMs, ms),
      chart("Total delay", "", bs, b => b.totalDelayMs, ms)),
    el("h2", {}, "Completed batches"),
    pager,
    el("table", { id: "batches" },
      el("tr", {}, el("th", { class: "l" }, "Batch time"), el("th", {}, "Records in"), el("th", {}, "Scheduling delay"),
        el("th", {}, "Processing time"), el("th", {}, "Total delay"), el("th", {}, "Jobs"), el("th", { class: "l" }, "Status")),
      rows)]];
}

// ---- batch page ----
async function batchPage(id, t) {
  const [job, b] = await Promise.all([
    get(`${API}/jobs/${encodeURIComponent(id)}`),
    get(`${API}/jobs/${encodeURIComponent(id)}/batches/${encodeURIComponent(t)}`),
  ]);
  const crumbParts = [el("a", { href: "#/" }, "Jobs"), el("a", { href: jobHref(job.id) }, job.name), "batch " + clock(b.time)];
  const rows = [];
  for (const j of b.outputJobs) {
    for (const s of j.stages) {
      rows.push(el("tr", { class: "stage" },
        el("td", {}, j.index), el("td", {}, s.id), el("td", { class: "l" }, s.name),
        el("td", {}, num(s.tasks)), el("td", {}, num(s.failed)), el("td", {}, num(s.resubmits)),
        el("td", {}, ms(s.taskTimeMs)), el("td", {}, ms(s.maxTaskTimeMs)), el("td", {}, num(s.recordsRead))));
    }
  }
  const tasks = (b.tasks || []).map(k => el("tr", { class: "task" + (k.status === "failed" ? " failed" : "") },
    el("td", {}, k.id), el("td", {}, k.job), el("td", {}, k.stage), el("td", {}, k.partition), el("td", {}, k.attempt),
    el("td", { class: "l" }, k.executor), el("td", {}, ms(k.durationMs)), el("td", {}, num(k.recordsRead)),
    el("td", { class: "l" }, k.status), el("td", { class: "l err" }, k.error || "")));
  return [crumbParts, [
    el("h1", { id: "batch-title" }, "Batch " + new Date(b.time).toISOString()),
    el("div", { class: "cards" },
      el("div", { class: "card" }, "Status", el("b", {}, b.status)),
      el("div", { class: "card" }, "Records in", el("b", {}, num(b.inputRecords))),
      el("div", { class: "card" }, "Scheduling delay", el("b", {}, ms(b.schedulingDelayMs))),
      el("div", { class: "card" }, "Processing time", el("b", {}, ms(b.processingTimeMs))),
      el("div", { class: "card" }, "Total delay", el("b", {}, ms(b.totalDelayMs))),
      el("div", { class: "card" }, "Task failures", el("b", {}, num(b.taskFailures)))),
    b.error ? el("p", { class: "err" }, b.error) : null,
    el("h2", {}, "Jobs and stages"),
    el("table", { id: "stages" },
      el("tr", {}, el("th", {}, "Job"), el("th", {}, "Stage"), el("th", { class: "l" }, "Name"), el("th", {}, "Tasks"),
        el("th", {}, "Failed attempts"), el("th", {}, "Resubmits"), el("th", {}, "Task time"),
        el("th", {}, "Longest task"), el("th", {}, "Records read")),
      rows),
    b.inputs && b.inputs.length ? el("h2", {}, "Input") : null,
    inputsTable(b.inputs),
    el("h2", {}, "Tasks" + (b.tasksDropped ? ` (first ${num(tasks.length)}; ${num(b.tasksDropped)} more not kept)` : "") +
      (b.tasksForgotten ? " (kept for the newest 100 batches only)" : "")),
    el("table", { id: "tasks" },
      el("tr", {}, el("th", {}, "Task"), el("th", {}, "Job"), el("th", {}, "Stage"), el("th", {}, "Partition"), el("th", {}, "Attempt"),
        el("th", { class: "l" }, "Executor"), el("th", {}, "Duration"), el("th", {}, "Records read"), el("th", { class: "l" }, "Status"),
        el("th", { class: "l" }, "Error")),
      tasks)]];
}

// ---- executors page ----
async function executorsPage(id) {
  const [job, execs] = await Promise.all([
    get(`${API}/jobs/${encodeURIComponent(id)}`),
    get(`${API}/jobs/${encodeURIComponent(id)}/executors`),
  ]);
  const crumbParts = [el("a", { href: "#/" }, "Jobs"), el("a", { href: jobHref(job.id) }, job.name), "executors"];
  const ago = t => t ? ((Date.now() - new Date(t).getTime()) / 1000).toFixed(1) + " s ago" : "–";
  const rows = execs.map(e => el("tr", { class: "executor " + e.state },
    el("td", { class: "l" }, e.id), el("td", {}, e.epoch || "–"), el("td", {}, e.incarnation || "–"), el("td", { class: "l" }, e.address || "–"),
    el("td", {}, e.slots), el("td", {}, e.runningTasks), el("td", {}, num(e.tasksSucceeded)), el("td", {}, num(e.tasksFailed)),
    el("td", { class: "l" }, e.statePartitions.length ? e.statePartitions.length + ": " + e.statePartitions.join(" ") : "–"),
    el("td", {}, e.cachedBlocks === undefined ? "–" : num(e.cachedBlocks)),
    el("td", {}, e.shuffleBytesServed === undefined ? "–" : bytes(e.shuffleBytesServed)),
    el("td", {}, ago(e.lastHeartbeat)),
    el("td", { class: "l" }, e.state)));
  return [crumbParts, [
    el("h1", {}, "Executors of " + job.name),
    el("table", { id: "executors" },
      el("tr", {}, el("th", { class: "l" }, "Executor"), el("th", {}, "Epoch"), el("th", {}, "Incarnation"), el("th", { class: "l" }, "Address"),
        el("th", {}, "Slots"), el("th", {}, "Running tasks"), el("th", {}, "Tasks done"), el("th", {}, "Tasks failed"),
        el("th", { class: "l" }, "State partitions"), el("th", {}, "Cached blocks"), el("th", {}, "Shuffle served"),
        el("th", {}, "Last heartbeat"), el("th", { class: "l" }, "State")),
      rows)]];
}

// ---- routing ----
// render draws the page of the current route, unless the route changed
// while its data was on the way.
async function render() {
  const at = route;
  const h = location.hash || "#/";
  const [path, query] = h.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    let view;
    if (parts.length === 0) view = await jobsPage();
    else if (parts[0] === "jobs" && parts.length === 2) view = await jobPage(parts[1], Math.max(0, parseInt(params.get("offset") || "0", 10) || 0));
    else if (parts[0] === "jobs" && parts.length === 4 && parts[2] === "batches") view = await batchPage(parts[1], parts[3]);
    else if (parts[0] === "jobs" && parts.length === 3 && parts[2] === "executors") view = await executorsPage(parts[1]);
    else view = [["Not found"], [el("p", {}, "No such page: ", h)]];
    if (at !== route) return;
    crumbs(...view[0]);
    setMain(...view[1].flat().filter(k => k !== null));
    showError(null);
    document.getElementById("status").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.rendered = h;
  } catch (e) {
    if (at === route) showError(e);
  }
}

function navigate() {
  route = location.hash;
  clearTimeout(timer);
  const tick = async () => {
    const at = route;
    await render();
    if (at === route) timer = setTimeout(tick, 1000);
  };
  tick();
}

window.addEventListener("hashchange", navigate);
navigate();
