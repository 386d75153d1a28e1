// Evaluative page: the stored steps play at an adjustable speed; a key marks the step on screen good
// or bad. Each answer carries that step and the time; steps passed without a key are sent as skips
// so the training run stops waiting for them.
"use strict";
let steps = [], idx = 0, fps = 4, paused = false, timer = null, fetching = false, shownAt = 0;
const seen = new Set(), marked = new Set();

async function fetchMore() {
  if (fetching) return; fetching = true;
  try {
    const out = await api("GET", "/api/queries?kind=step&limit=100");
    setProgress(out.progress);
    const fresh = out.queries.filter((q) => !seen.has(q.id));
    fresh.forEach((q) => seen.add(q.id));
    await Promise.all(fresh.map((q) => { q.img = new Image(); q.img.src = q.frame; return q.img.decode().catch(() => {}); }));
    steps = steps.slice(idx).concat(fresh); idx = 0;
  } catch (e) { setStatus(e.message, "error"); }
  finally { fetching = false; }
}

function draw() {
  const q = steps[idx];
  const stage = $("stage");
  stage.classList.remove("good", "bad");
  if (!q) { document.body.dataset.state = "empty"; $("meta").textContent = "";
            setStatus("No steps are waiting for you right now; this page checks again every few seconds.", "ok"); return; }
  $("frame").src = q.img ? q.img.src : q.frame;
  $("meta").textContent = `episode ${q.episode} · step ${q.step} · action ${JSON.stringify(q.action)}`;
  document.body.dataset.state = "showing"; document.body.dataset.step = q.step; document.body.dataset.query = q.id;
  shownAt = Date.now() / 1000;
}

function send(q, value, keyName) {
  marked.add(q.id);
  const body = { query_id: q.id, value, client_key: newKey(), step: q.step, shown_at: shownAt,
                 data: { speed_fps: fps, key: keyName || "none" } };
  postLabel(body).then(() => { if (value !== null) setStatus(`Step ${q.step} marked ${value ? "good" : "bad"}.`, "ok"); })
                 .catch((e) => setStatus(`Not saved: ${e.message}`, "error"));
}

async function tick() {
  timer = null;
  if (paused) return;
  const q = steps[idx];
  if (q) {
    if (!marked.has(q.id)) send(q, null);
    idx++;
  }
  if (idx >= steps.length - 1 || !q) await fetchMore();
  draw();
  schedule(steps[idx] ? 1000 / fps : 3000);
}

function schedule(ms) { if (timer) clearTimeout(timer); timer = setTimeout(tick, ms); }

function mark(value, keyName) {
  const q = steps[idx];
  if (!q || marked.has(q.id)) return;
  $("stage").classList.add(value ? "good" : "bad");
  send(q, value, keyName);
}

function setSpeed(v) { fps = Math.min(20, Math.max(1, v)); $("speed").textContent = fps; }

document.addEventListener("keydown", (ev) => {
  if (typingInField(ev)) return;
  const k = ev.key;
  if (k === "ArrowUp" || k === "g") mark(1, k);
  else if (k === "ArrowDown" || k === "b") mark(0, k);
  else if (k === " ") { paused = !paused; setStatus(paused ? "Paused." : "", "ok"); if (!paused) schedule(1000 / fps); }
  else if (k === "+" || k === "=") setSpeed(fps + 1);
  else if (k === "-") setSpeed(fps - 1);
  else return;
  ev.preventDefault();
});

const urlSpeed = parseInt(new URLSearchParams(window.location.search).get("speed") || "", 10);
if (urlSpeed) setSpeed(urlSpeed);
guard().then(async () => { await fetchMore(); draw(); schedule(steps[idx] ? 1000 / fps : 3000); }).catch(() => {});
