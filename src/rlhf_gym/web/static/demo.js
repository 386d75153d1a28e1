// Demonstration page: the server runs the environment; each action key plays one step and shows the
// new frame. When the episode ends (or Esc) the server stores it as the answer to the demo query.
"use strict";
let query = null, playing = false, busy = false, keymap = {};

async function next() {
  playing = false; query = null;
  try {
    const out = await api("GET", "/api/queries?kind=demo&limit=1");
    setProgress(out.progress);
    query = out.queries[0] || null;
  } catch (e) { setStatus(e.message, "error"); return; }
  if (!query) { document.body.dataset.state = "empty"; $("task").textContent = "";
                setStatus("No demonstrations are waiting for you right now; this page checks again every few seconds.", "ok");
                setTimeout(next, 4000); return; }
  document.body.dataset.state = "ready"; document.body.dataset.query = query.id;
  $("task").textContent = `${query.env_id} · seed ${query.seed} · at most ${query.max_steps} steps · query ${query.id}`;
  setStatus("Press Enter to start.", "ok");
}

function showKeys(keys) {
  keymap = {};
  const names = { ArrowLeft: "←", ArrowRight: "→", ArrowUp: "↑", ArrowDown: "↓" };
  $("keys").innerHTML = "";
  keys.forEach((k) => {
    keymap[k.key] = k.action;
    const b = document.createElement("button"); b.type = "button"; b.dataset.action = k.action;
    const kb = document.createElement("kbd"); kb.textContent = names[k.key] || k.key;
    b.append(kb, " " + k.label);
    b.addEventListener("click", () => step(k.action));
    $("keys").append(b);
  });
}

async function start() {
  if (!query || playing || busy) return;
  busy = true;
  try {
    const out = await api("POST", `/api/demo/${encodeURIComponent(query.id)}/start`);
    showKeys(out.keys); $("frame").src = out.frame; playing = true;
    $("meta").textContent = "step 0"; document.body.dataset.state = "playing"; setStatus("Playing.", "ok");
  } catch (e) { setStatus(e.message, "error"); }
  finally { busy = false; }
}

async function done(out) {
  playing = false;
  document.body.dataset.state = "saved";
  if (out.progress) setProgress(out.progress);
  setStatus(`Episode saved (${out.step} steps, return ${Number(out.return).toFixed(1)}). Loading the next one…`, "ok");
  setTimeout(next, 1200);
}

async function step(action) {
  if (!playing || busy) return;
  busy = true;
  try {
    const out = await api("POST", `/api/demo/${encodeURIComponent(query.id)}/step`, { action });
    $("frame").src = out.frame; $("meta").textContent = `step ${out.step} · return ${out.return.toFixed(1)}`;
    document.body.dataset.step = out.step;
    if (out.done) await done(out);
  } catch (e) { setStatus(e.message, "error"); }
  finally { busy = false; }
}

async function finish() {
  if (!playing || busy) return;
  busy = true;
  try { await done(await api("POST", `/api/demo/${encodeURIComponent(query.id)}/finish`)); }
  catch (e) { setStatus(e.message, "error"); }
  finally { busy = false; }
}

document.addEventListener("keydown", (ev) => {
  if (typingInField(ev)) return;
  if (ev.key === "Enter") start();
  else if (ev.key === "Escape") finish();
  else if (playing && ev.key in keymap) step(keymap[ev.key]);
  else return;
  ev.preventDefault();
});

$("start").addEventListener("click", start);
$("finish").addEventListener("click", finish);

guard().then(next).catch(() => {});
