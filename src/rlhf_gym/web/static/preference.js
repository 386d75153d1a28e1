// Preference page: two looping clips side by side; one key answers and shows the next pair at once
// (its clips were preloaded while the current pair was on screen).
"use strict";
const queue = [];            // pairs waiting, the first is on screen
const seen = new Set();      // ids shown or queued (not fetched twice)
let current = null, shownAt = 0, inflight = 0;

function preload(q) {
  if (q.images) return;
  q.images = ["left", "right"].map((side) => { const im = new Image(); im.src = q.clips[side]; return im; });
}

const refill = queryRefill("/api/queries?kind=pair&limit=6", queue, seen, preload, () => { if (!current) show(); });

function show() {
  current = queue.length ? queue[0] : null;
  $("left-box").classList.remove("chosen"); $("right-box").classList.remove("chosen");
  if (!current) {
    $("pair").classList.add("hidden"); $("buttons").classList.add("hidden");
    $("meta").textContent = "";
    setStatus(inflight ? "Saving…" : "No pairs are waiting for you right now; this page checks again every few seconds.", "ok");
    document.body.dataset.state = "empty";
    return;
  }
  $("pair").classList.remove("hidden"); $("buttons").classList.remove("hidden");
  preload(current);
  $("left").src = current.clips.left; $("right").src = current.clips.right;
  $("meta").textContent = `${current.env_id || ""} · ${current.length} steps at ${current.fps} frames/s · query ${current.id}`;
  shownAt = Date.now() / 1000;
  document.body.dataset.state = "showing"; document.body.dataset.query = current.id;
  if (queue[1]) preload(queue[1]);
  if (queue[2]) preload(queue[2]);
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
