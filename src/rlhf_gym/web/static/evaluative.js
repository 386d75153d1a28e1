// Evaluative page: one stored step at a time, at the person's own pace. By default the page waits:
// a key (or button) marks the step on screen good or bad, or "can't tell", and the next step follows.
// Only when the person chooses to play (space) do steps move on by themselves at the speed they set;
// a step let pass while playing is sent as a skip, so the training run stops waiting for it. Nothing
// is sent for steps the person never saw pass at a playing speed.
"use strict";
let steps = [], idx = 0, fps = 1, playing = false, timer = null, pollTimer = null, fetching = false, shownAt = 0;
let advanceTimer = null;
const seen = new Set(), marked = new Set();
const EMPTY = "No steps are waiting for you right now; this page checks again every few seconds.";

async function fetchMore() {
  if (fetching) return; fetching = true;
  try {
    const epoch = progressEpoch(), out = await api("GET", "/api/queries?kind=step&limit=100");
    setProgress(out.progress, epoch);
    const fresh = out.queries.filter((q) => !seen.has(q.id));
    fresh.forEach((q) => seen.add(q.id));
    await Promise.all(fresh.map((q) => { q.img = new Image(); q.img.src = q.frame; return q.img.decode().catch(() => {}); }));
    steps = steps.slice(idx).concat(fresh); idx = 0;
  } catch (e) { setStatus(e.message, "error"); }
  finally { fetching = false; }
}

function showPace() {
  document.body.dataset.mode = playing ? "play" : "step";
  $("play-label").textContent = playing ? "Pause" : "Play";
  $("play").setAttribute("aria-pressed", String(playing));
  $("pace").textContent = playing ? `playing ${fps} step${fps === 1 ? "" : "s"}/s` : `waiting for you (play speed ${fps}/s)`;
}

function draw() {
  const q = steps[idx];
  const stage = $("stage");
  stage.classList.remove("good", "bad");
  ["good", "bad", "skip"].forEach((id) => { $(id).disabled = !q; });
  if (!q) {
    document.body.dataset.state = "empty"; $("meta").textContent = ""; $("action").textContent = "";
    setStatus(EMPTY, "ok");
    if (!pollTimer) pollTimer = setTimeout(poll, 3000);
    return;
  }
  if ($("status").textContent === EMPTY) setStatus("");  // steps arrived: the old notice is not true any more
  $("frame").src = q.img ? q.img.src : q.frame;
  $("action").textContent = `Action: ${q.action_meaning || "action " + JSON.stringify(q.action)}`;
  $("meta").textContent = `${q.env_id ? q.env_id + " · " : ""}episode ${q.episode} · step ${q.step}`;
  document.body.dataset.state = "showing"; document.body.dataset.step = q.step; document.body.dataset.query = q.id;
  shownAt = Date.now() / 1000;
}

async function poll() {
  pollTimer = null;
  if (steps[idx]) return;
  await fetchMore();
  draw();
  if (playing && steps[idx]) schedule();
}

function send(q, value, how) {
  marked.add(q.id);
  const body = { query_id: q.id, value, client_key: newKey(), step: q.step, shown_at: shownAt,
                 data: { mode: playing ? "play" : "step", speed_fps: playing ? fps : null, key: how } };
  postLabel(body).then(() => {
    if (value !== null) setStatus(`Step ${q.step} marked ${value ? "good" : "bad"}.`, "ok");
    else if (how !== "passed") setStatus(`Step ${q.step}: no answer (can't tell).`, "ok");
  }).catch((e) => setStatus(`Not saved: ${e.message}`, "error"));
}

async function advance() {
  advanceTimer = null;
  idx++;
  if (idx >= steps.length - 1) await fetchMore();
  draw();
}

// Playing: the step on screen moves on after 1/fps s; if it was not marked it is sent as a skip.
async function tick() {
  timer = null;
  if (!playing) return;
  const q = steps[idx];
  if (q && !marked.has(q.id)) send(q, null, "passed");
  await advance();
  if (playing) schedule();
}

function schedule() { if (timer) clearTimeout(timer); timer = steps[idx] ? setTimeout(tick, 1000 / fps) : null; }

function answer(value, how) {
  const q = steps[idx];
  if (!q || marked.has(q.id)) return;
  if (value !== null) $("stage").classList.add(value ? "good" : "bad");
  send(q, value, how);
  if (!playing && !advanceTimer) advanceTimer = setTimeout(advance, 250);  // show the colour, then the next step
}

function setPlaying(on) {
  playing = on;
  if (timer) { clearTimeout(timer); timer = null; }
  showPace();
  if (playing) schedule();
  setStatus(playing ? `Playing at ${fps} steps/s: steps you let pass count as "no answer".` : "Paused: the page waits for you.", "ok");
}

function setSpeed(v) { fps = Math.min(10, Math.max(1, v)); showPace(); if (playing) schedule(); }

document.addEventListener("keydown", (ev) => {
  if (typingInField(ev) || ev.repeat) return;
  const k = ev.key;
  if (k === "ArrowUp" || k === "g") answer(1, k);
  else if (k === "ArrowDown" || k === "b") answer(0, k);
  else if (k === "ArrowRight" || k === "s") answer(null, k);
  else if (k === " ") setPlaying(!playing);
  else if (k === "+" || k === "=") setSpeed(fps + 1);
  else if (k === "-") setSpeed(fps - 1);
  else return;
  ev.preventDefault();
});
$("good").addEventListener("click", () => answer(1, "tap good"));
$("bad").addEventListener("click", () => answer(0, "tap bad"));
$("skip").addEventListener("click", () => answer(null, "tap skip"));
$("play").addEventListener("click", () => setPlaying(!playing));
$("slower").addEventListener("click", () => setSpeed(fps - 1));
$("faster").addEventListener("click", () => setSpeed(fps + 1));

// ?speed=N starts playing at N steps/s (a link the person chose); without it the page waits.
const urlSpeed = parseInt(new URLSearchParams(window.location.search).get("speed") || "", 10);
if (urlSpeed) fps = Math.min(10, Math.max(1, urlSpeed));
showPace();
guard().then(async () => { await fetchMore(); draw(); if (urlSpeed) setPlaying(true); }).catch(() => {});
