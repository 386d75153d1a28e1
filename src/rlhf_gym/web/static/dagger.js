// DAgger page: a state the learner visited, drawn by the server (replayed from the episode's seed and
// actions), the task, and one button per action with its meaning and key. One key or tap answers and
// shows the next state; nothing is sent that the person did not choose. "Can't tell" sends a skip.
"use strict";
const queue = [];            // action queries waiting, the first is on screen
const seen = new Set();      // ids shown or queued (not fetched twice)
const KEYNAMES = { ArrowLeft: "←", ArrowRight: "→", ArrowUp: "↑", ArrowDown: "↓" };
let current = null, shownAt = 0, inflight = 0, keymap = {};

function preload(q) { if (!q.image) { q.image = new Image(); q.image.src = q.frame; } }

const refill = queryRefill("/api/queries?kind=action&limit=6", queue, seen, preload, () => { if (!current) show(); });

function showButtons(q) {
  keymap = {};
  const box = $("actions"); box.textContent = "";
  const legend = [];
  for (const a of q.actions || []) {
    const b = document.createElement("button"); b.type = "button"; b.className = "primary";
    b.id = `btn-action-${a.action}`; b.dataset.action = a.action;
    if (a.key) {
      keymap[a.key] = a.action;
      const kb = document.createElement("kbd"); kb.textContent = KEYNAMES[a.key] || a.key;
      b.append(kb, " ");
      legend.push(`${KEYNAMES[a.key] || a.key} ${a.label}`);
    }
    b.append(a.label);
    b.addEventListener("click", () => answer(a.action));
    box.append(b);
  }
  $("legend").textContent = legend.concat(["s can't tell (skip)"]).join(" · ");
}

function show() {
  current = queue.length ? queue[0] : null;
  if (!current) {
    $("stage").classList.add("hidden"); $("actions").textContent = ""; $("refused").classList.add("hidden");
    $("task").textContent = ""; $("meta").textContent = ""; keymap = {};
    setStatus(inflight ? "Saving…" : "No states are waiting for you right now; this page checks again every few seconds.", "ok");
    document.body.dataset.state = "empty";
    return;
  }
  if (!inflight) setStatus("", "");
  $("stage").classList.remove("hidden");
  preload(current);
  $("frame").src = current.frame;
  $("task").textContent = `${current.env_id || ""}: ${current.task}`;
  const at = current.episode_step === null ? "" : ` · step ${current.episode_step} of episode ${current.episode + 1}`;
  $("meta").textContent = `query ${current.id}${at}`;
  const refused = $("refused");
  if (current.refused) { refused.textContent = `This state cannot be labelled here: ${current.refused}. Skip it (s).`; refused.classList.remove("hidden"); }
  else refused.classList.add("hidden");
  showButtons(current);
  shownAt = Date.now() / 1000;
  document.body.dataset.state = "showing"; document.body.dataset.query = current.id;
  if (queue[1]) preload(queue[1]);
}

async function answer(action) {
  if (!current) return;
  const q = current; queue.shift(); current = null;
  inflight++;
  const body = { query_id: q.id, value: null, client_key: newKey(), shown_at: shownAt };
  if (action !== null) body.data = { action };
  show();
  refill();
  try {
    await postLabel(body);
    const a = (q.actions || []).find((x) => x.action === action);
    setStatus(action === null ? "Skipped." : `Saved: ${a ? a.label : "action " + action}.`, "ok");
  } catch (e) { setStatus(`Not saved: ${e.message}`, "error"); }
  finally { inflight--; if (!current) show(); }
}

document.addEventListener("keydown", (ev) => {
  if (typingInField(ev) || ev.repeat || !current) return;
  if (ev.key in keymap) answer(keymap[ev.key]);
  else if (ev.key === "s" || ev.key === "S") answer(null);
  else return;
  ev.preventDefault();
});

$("btn-skip").addEventListener("click", () => answer(null));

guard().then(() => { refill(); setInterval(() => { if (!current) refill(); }, 4000); }).catch(() => {});
