// Trade-off page: two outcomes side by side, each a clip (when the run's environment renders) above a
// table of its per-objective returns. One key or tap answers and shows the next pair; nothing is sent
// that the person did not choose.
"use strict";
const queue = [];            // outcome pairs waiting, the first is on screen
const seen = new Set();      // ids shown or queued (not fetched twice)
let current = null, shownAt = 0, inflight = 0;

function preload(q) {
  if (q.images || !q.clips) return;
  q.images = ["left", "right"].map((side) => { const im = new Image(); im.src = q.clips[side]; return im; });
}

function fmt(x) { return Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(2); }

// One outcome's table: objective, its return; the better side of each objective in bold.
function fillTable(el, names, mine, theirs) {
  el.textContent = "";
  const head = el.insertRow();
  for (const h of ["objective", "return"]) { const th = document.createElement("th"); th.textContent = h; head.appendChild(th); }
  names.forEach((n, i) => {
    const tr = el.insertRow();
    tr.insertCell().textContent = n;
    const td = tr.insertCell(); td.textContent = fmt(mine[i]);
    if (mine[i] > theirs[i]) td.className = "higher";
  });
}

const refill = queryRefill("/api/outcomes?limit=6", queue, seen, preload, () => { if (!current) show(); });

function showClip(side) {
  const im = $(side);
  if (!current.clips) { im.classList.add("hidden"); im.removeAttribute("src"); return; }
  im.classList.remove("hidden");
  im.onerror = () => im.classList.add("hidden");  // no frames on this server: the table alone
  im.src = current.clips[side];
}

function show() {
  current = queue.length ? queue[0] : null;
  $("left-box").classList.remove("chosen"); $("right-box").classList.remove("chosen");
  if (!current) {
    $("pair").classList.add("hidden"); $("buttons").classList.add("hidden");
    $("meta").textContent = "";
    setStatus(inflight ? "Saving…" : "No outcomes are waiting for you right now; this page checks again every few seconds.", "ok");
    document.body.dataset.state = "empty";
    return;
  }
  $("pair").classList.remove("hidden"); $("buttons").classList.remove("hidden");
  if (!inflight) setStatus("", "");
  preload(current);
  showClip("left"); showClip("right");
  fillTable($("left-table"), current.objectives, current.left, current.right);
  fillTable($("right-table"), current.objectives, current.right, current.left);
  const steps = current.steps ? ` · ${current.steps.left} and ${current.steps.right} steps` : "";
  $("meta").textContent = `${current.env_id || ""}${steps} · query ${current.id}`;
  shownAt = Date.now() / 1000;
  document.body.dataset.state = "showing"; document.body.dataset.query = current.id;
  document.body.dataset.clips = current.clips ? "yes" : "no";
  if (queue[1]) preload(queue[1]);
}

async function answer(value) {
  if (!current) return;
  const q = current; queue.shift(); current = null;
  if (value === 1) $("left-box").classList.add("chosen");
  if (value === 0) $("right-box").classList.add("chosen");
  inflight++;
  const body = { query_id: q.id, value, client_key: newKey(), shown_at: shownAt };
  show();
  refill();
  try {
    await postLabel(body);
    setStatus(value === null ? "Skipped." : "Saved.", "ok");
  } catch (e) { setStatus(`Not saved: ${e.message}`, "error"); }
  finally { inflight--; if (!current) show(); }
}

document.addEventListener("keydown", (ev) => {
  if (typingInField(ev) || ev.repeat) return;
  const k = ev.key;
  if (k === "ArrowLeft") answer(1);
  else if (k === "ArrowRight") answer(0);
  else if (k === "ArrowUp" || k === "=") answer(0.5);
  else if (k === "s" || k === "S") answer(null);
  else return;
  ev.preventDefault();
});

$("btn-left").addEventListener("click", () => answer(1));
$("btn-right").addEventListener("click", () => answer(0));
$("btn-equal").addEventListener("click", () => answer(0.5));
$("btn-skip").addEventListener("click", () => answer(null));

guard().then(() => { refill(); setInterval(() => { if (!current) refill(); }, 4000); }).catch(() => {});
