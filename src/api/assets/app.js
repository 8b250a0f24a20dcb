// Ballast dashboard: talks to the API with the token the operator signs in with.
"use strict";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("ballast-token") || "";
let me = null;

async function api(path, opts = {}) {
  const r = await fetch(path, {
    ...opts,
    headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json", ...(opts.headers || {}) },
  });
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error((body && body.detail) || r.statusText);
  return body;
}

const pct = (x) => (x * 100).toFixed(2) + "%";
const time = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "onclick") e.onclick = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
};

async function signIn(t) {
  token = t;
  try {
    me = await api("/v1/me");
  } catch (e) {
    $("login-error").textContent = "Sign-in failed: " + e.message;
    return;
  }
  sessionStorage.setItem("ballast-token", token);
  $("who").textContent = `${me.name} · ${me.tenant} · ${me.roles.join(", ")}`;
  $("f-tenant").value = me.tenant;
  $("login").hidden = true;
  $("app").hidden = false;
  refresh();
  setInterval(refresh, 3000);
}

async function refresh() {
  await Promise.allSettled([loadSlo(), loadSeries(), loadQueue(), loadTurns()]);
}

async function loadSlo() {
  const t = await api("/v1/slo");
  $("slo-meta").textContent = `${t.turns} turns · tool error rate ${pct(t.tool_error_rate)} · cost per turn ${t.cost_per_turn_micros.toFixed(0)} µ¤`;
  const tiles = $("slo-tiles");
  tiles.replaceChildren(...t.slis.map((s) => {
    const ok = s.value >= s.target;
    return el("div", { class: "tile " + (ok ? "ok" : "bad"), "data-testid": "slo-tile", "data-sli": s.name },
      el("div", { class: "name" }, s.name),
      el("div", { class: "value", "data-testid": "slo-value" }, pct(s.value)),
      el("div", {}, `target ${pct(s.target)} · ${s.good}/${s.total} good`),
      el("div", { "data-testid": "slo-budget" }, `error budget left ${pct(s.budget_left)}`),
      el("div", { class: "burn" }, "burn " + s.burn.map(([w, b]) => `${w} ${b.toFixed(2)}`).join(" · ")));
  }));
}

const COLORS = { task_success: "#2f6fde", hallucination_with_action: "#d23c3c", latency: "#2e9d5b", escalation_success: "#a35bd6" };
async function loadSeries() {
  const pts = await api("/v1/slo/series?bucket_ms=60000&window_ms=3600000");
  const c = $("sli-chart"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  g.strokeStyle = "#ddd";
  for (const y of [0, 0.5, 1]) { const py = 10 + (1 - y) * (c.height - 20); g.beginPath(); g.moveTo(30, py); g.lineTo(c.width, py); g.stroke(); g.fillText(pct(y), 0, py + 3); }
  const x = (i) => 30 + (i / Math.max(1, pts.length - 1)) * (c.width - 40);
  for (const [name, color] of Object.entries(COLORS)) {
    g.strokeStyle = color; g.beginPath(); let started = false;
    pts.forEach((p, i) => {
      const v = p.values[name]; if (v === undefined) return;
      const py = 10 + (1 - v) * (c.height - 20);
      if (started) g.lineTo(x(i), py); else { g.moveTo(x(i), py); started = true; }
    });
    g.stroke();
    // Dots too: a bucket with no neighbours still shows.
    g.fillStyle = color;
    pts.forEach((p, i) => {
      const v = p.values[name]; if (v === undefined) return;
      g.fillRect(x(i) - 2.5, 10 + (1 - v) * (c.height - 20) - 2.5, 5, 5);
    });
  }
  $("sli-legend").replaceChildren(...Object.entries(COLORS).map(([n, col]) => el("span", { style: "color:" + col }, "■ " + n)));
}

async function act(path, body) {
  try { await api(path, { method: "POST", body: JSON.stringify(body || {}) }); }
  catch (e) { alert(e.message); }
  setTimeout(refresh, 300);
}

async function loadQueue() {
  if (!me.roles.includes("operator") && !me.roles.includes("admin")) { $("queue-empty").textContent = "Operators see the queue here."; return; }
  const q = await api("/v1/queue");
  $("queue-empty").hidden = q.length > 0;
  $("queue-rows").replaceChildren(...q.map((w) => {
    const buttons = w.kind === "approval"
      ? [el("button", { "data-testid": "approve", onclick: () => act(`/v1/turns/${w.turn_id}/approve`, { reason: "approved on the dashboard" }) }, "Approve"),
         el("button", { "data-testid": "deny", onclick: () => act(`/v1/turns/${w.turn_id}/deny`, { reason: "denied on the dashboard" }) }, "Deny")]
      : [el("button", { onclick: () => act(`/v1/handoffs/${w.turn_id}/accept`) }, "Accept"),
         el("button", { "data-testid": "resolve", onclick: () => { const r = prompt("What was done?"); if (r) act(`/v1/handoffs/${w.turn_id}/resolve`, { resolution: r }); } }, "Resolve")];
    // Values show as [REDACTED:kind]; the approver may reveal the real arguments (recorded).
    const args = el("td", { "data-testid": "queue-args" }, w.tool ? `${w.tool} ${w.args_json}` : "");
    // Where each value came from: "recipient: … from read_inbox output (untrusted), not from the user".
    if (w.provenance) args.append(el("div", { "data-testid": "queue-provenance", class: "provenance" }, w.provenance));
    if (w.kind === "approval") buttons.unshift(el("button", { "data-testid": "reveal", onclick: () => revealArgs(w.turn_id, w.tool, args) }, "Reveal"));
    return el("tr", { "data-testid": "queue-row", "data-turn": w.turn_id },
      el("td", {}, el("code", {}, w.turn_id.slice(-12))), el("td", {}, w.kind), el("td", {}, w.reason),
      args, el("td", {}, w.deadline_ms ? time(w.deadline_ms) : ""),
      el("td", {}, ...buttons));
  }));
}

async function loadTurns() {
  const p = new URLSearchParams({ limit: "50" });
  if ($("f-outcome").value) p.set("outcome", $("f-outcome").value);
  if ($("f-status").value) p.set("status", $("f-status").value);
  if ($("f-since").value) p.set("since_ms", String(Date.now() - Number($("f-since").value)));
  const turns = await api("/v1/turns?" + p);
  $("turn-rows").replaceChildren(...turns.map((t) =>
    el("tr", { class: "clickable", "data-testid": "turn-row", "data-turn": t.turn_id, "data-status": t.status, "data-outcome": t.outcome || "", onclick: () => showTrace(t.turn_id) },
      el("td", {}, el("code", {}, t.turn_id)), el("td", {}, t.user_id), el("td", {}, t.status),
      el("td", {}, t.outcome || "—"), el("td", {}, t.latency_ms == null ? "" : t.latency_ms + " ms"), el("td", {}, time(t.requested_at_ms)))));
}

function revealQuery() {
  const reason = prompt("Why do you need the real values? (the reveal is recorded)");
  return reason ? "?" + new URLSearchParams({ reveal: "true", reason }) : null;
}

async function revealArgs(id, tool, cell) {
  const q = revealQuery(); if (!q) return;
  try {
    const events = await api(`/v1/turns/${id}/trace${q}`);
    const asked = events.filter((e) => e.event === "ApprovalRequested").pop();
    if (asked) cell.textContent = `${tool} ${asked.args_json}`;
  } catch (e) { alert(e.message); }
}

let current = null;      // the turn shown: { id, events, done }
let following = null;    // the live stream's AbortController

async function showTrace(id, reveal) {
  const q = reveal ? revealQuery() : "";
  if (q === null) return;
  let events;
  try { events = await api(`/v1/turns/${id}/trace${q}`); } catch (e) { alert(e.message); return; }
  $("trace-reveal").onclick = () => showTrace(id, true);
  $("trace-id").textContent = id;
  const done = events.some((e) => e.event === "TurnCompleted");
  current = { id, events, done };
  renderTrace();
  $("trace").hidden = false;
  $("trace").scrollIntoView();
  if (following) following.abort();
  // A running turn is followed live (masked: a revealed trace stays as it was read).
  if (!done && !reveal) follow(id, events.length ? events[events.length - 1].seq : -1);
}

// Server-Sent Events over fetch: EventSource cannot send the bearer token.
async function follow(id, after) {
  const ctl = new AbortController();
  following = ctl;
  $("trace-live").hidden = false;
  try {
    const r = await fetch(`/v1/turns/${id}/events`, { signal: ctl.signal,
      headers: { "Authorization": "Bearer " + token, "Accept": "text/event-stream", "Last-Event-ID": String(after) } });
    if (!r.ok) throw new Error(r.statusText);
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i); buf = buf.slice(i + 2);
        let kind = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) kind = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (!data || !current || current.id !== id) continue;
        if (kind === "outcome") { current.done = true; loadTurns(); }
        else if (kind !== "error") current.events.push(JSON.parse(data));
        renderTrace();
      }
    }
  } catch (e) { if (e.name !== "AbortError") console.warn("live trace:", e.message); }
  if (following === ctl) { following = null; $("trace-live").hidden = true; }
}

function renderTrace() {
  const events = current.events;
  const t0 = events.length ? events[0].at_ms : 0;
  $("trace-events").replaceChildren(...events.map((e) =>
    el("li", { "data-testid": "trace-event" }, `+${e.at_ms - t0} ms `, el("span", { class: "kind" }, e.event), e.description || "")));
  $("trace-status").textContent = current.done ? "finished" : "running — following live";
  renderWaterfall(events);
}

// One turn on a time axis: model steps and tool calls as bars; decisions, guard trips,
// approvals and escalations as marks on their own rows, with provenance inline.
function renderWaterfall(events) {
  const wf = $("waterfall");
  if (!events.length) { wf.replaceChildren(); return; }
  const t0 = events[0].at_ms;
  const end = Math.max(...events.map((e) => e.at_ms), t0 + 1);
  const span = Math.max(end - t0, 1);
  const x = (ms) => (100 * (ms - t0) / span).toFixed(2) + "%";
  const w = (a, b) => Math.max(100 * (b - a) / span, 0.6).toFixed(2) + "%";
  const rows = [];
  const bar = (label, from, to, cls, title) => rows.push(el("div", { class: "wf-row", "data-testid": "wf-row", "data-kind": cls },
    el("div", { class: "wf-label" }, label),
    el("div", { class: "wf-track" }, el("div", { class: "wf-bar " + cls, style: `left:${x(from)};width:${w(from, to)}`, title }))));
  const mark = (label, at, cls, title) => rows.push(el("div", { class: "wf-row", "data-testid": "wf-row", "data-kind": cls },
    el("div", { class: "wf-label" }, label),
    el("div", { class: "wf-track" }, el("div", { class: "wf-mark " + cls, style: `left:${x(at)}`, title }))));
  const calls = new Map();
  for (const e of events) {
    switch (e.event) {
      case "PlanProposed": {
        const from = e.at_ms - (e.latency_ms || 0);
        bar(`model step ${e.step ?? 0}`, from, e.at_ms, "model", e.description || "");
        break;
      }
      case "ToolCallStarted": calls.set(e.call_id + "/" + e.attempt, e); break;
      case "ToolCallCompleted": case "ToolCallFailed": {
        const s = calls.get(e.call_id + "/" + e.attempt);
        if (s) { calls.delete(e.call_id + "/" + e.attempt);
          bar(`${s.tool} #${e.attempt}`, s.at_ms, e.at_ms, e.event === "ToolCallFailed" ? "tool failed" : "tool", e.description || ""); }
        break;
      }
      case "PolicyEvaluated": {
        const prov = e.provenance_json ? " · provenance " + e.provenance_json : "";
        mark(`${e.checkpoint || "policy"}: ${e.decision || ""}`, e.at_ms, "decision", (e.description || "") + prov);
        break;
      }
      case "GuardrailTripped": mark(`guard ${e.rule}`, e.at_ms, "guard", e.detail || ""); break;
      case "ApprovalRequested": case "ApprovalGranted": case "ApprovalDenied": case "ApprovalExpired":
        mark(e.event.replace("Approval", "approval ").toLowerCase(), e.at_ms, "approval", e.description || ""); break;
      case "EscalationRaised": case "CallRefused": mark(e.event, e.at_ms, "escalation", e.description || ""); break;
    }
  }
  for (const s of calls.values()) bar(`${s.tool} #${s.attempt} (running)`, s.at_ms, end, "tool running", s.description || "");
  wf.replaceChildren(el("div", { class: "wf-axis" }, `0 ms`, el("span", {}, `${span} ms`)), ...rows);
}

$("login-form").onsubmit = (e) => { e.preventDefault(); signIn($("token").value.trim()); };
$("filters").onsubmit = (e) => { e.preventDefault(); loadTurns(); };
$("trace-close").onclick = () => { $("trace").hidden = true; if (following) following.abort(); };
if (token) signIn(token);
