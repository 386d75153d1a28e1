// Shared helpers of the annotation pages: API calls with clear errors, retrying label posts,
// the progress counter and the consent guard. No external libraries.
"use strict";

function $(id) { return document.getElementById(id); }

async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (_e) { data = null; }
  if (!r.ok) {
    const d = data && data.detail;
    let msg = typeof d === "string" ? d : (d && d.message) || (Array.isArray(d) ? d.map((x) => x.msg).join("; ") : "") || r.statusText;
    const err = new Error(msg); err.status = r.status; err.detail = d; throw err;
  }
  return data;
}

function newKey() {
  const b = new Uint8Array(16); crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function setStatus(msg, cls) {
  const el = $("status"); if (!el) return;
  el.textContent = msg || ""; el.className = "status" + (cls ? " " + cls : "");
}

// The counter shows the server's count as of one request. A count from a request that overlapped a label
// being saved may predate that label (the page once showed "1 labels given" after its second label was
// saved), so such a count is dropped, and once no label is in flight the counter is read afresh.
let labelEpoch = 0, labelsInFlight = 0, progressStale = false;
function progressEpoch() { return labelEpoch; }

function setProgress(p, epoch) {
  if (epoch !== undefined && epoch !== labelEpoch) { progressStale = true; return; }
  const el = $("progress"); if (!el || !p) return;
  el.textContent = `${p.given} labels given / ${p.wanted} wanted`;
  el.dataset.given = p.given; el.dataset.wanted = p.wanted;
}

// Post one label; a network failure is retried with the same client key, so the server stores it once
// (a resend of a stored key answers 409 naming the stored label, which counts as saved).
async function postLabel(body, tries = 4) {
  body.client_key = body.client_key || newKey();
  labelsInFlight++; const epoch = ++labelEpoch;
  try {
    for (let i = 0; ; i++) {
      try {
        const out = await api("POST", "/api/feedback?progress=true", body);
        if (out.progress) setProgress(out.progress, epoch); else progressStale = true;
        window.labelsSaved = (window.labelsSaved || 0) + 1;
        return out;
      } catch (e) {
        if (e.status === 409 && e.detail && e.detail.feedback_id !== undefined) {
          window.labelsSaved = (window.labelsSaved || 0) + 1; progressStale = true;
          return { feedback_id: e.detail.feedback_id, duplicate: true };
        }
        if (e.status !== undefined || i + 1 >= tries) throw e;  // a 4xx will not get better by retrying
        await new Promise((res) => setTimeout(res, 300 * (i + 1)));
      }
    }
  } finally {
    labelsInFlight--; labelEpoch++;
    if (labelsInFlight === 0 && progressStale) refreshProgress();
  }
}

async function refreshProgress() {
  progressStale = false; const epoch = progressEpoch();
  try { const me = await api("GET", "/api/me"); setProgress(me.progress, epoch); } catch (e) { /* the next answer updates it */ }
}

// Load /api/me; send people without consent to the start page; show who is labelling.
async function guard() {
  let me;
  try { me = await api("GET", "/api/me"); } catch (e) {
    setStatus(e.status === 401 ? "Not signed in: open the invite link you were given." : e.message, "error");
    throw e;
  }
  if (me.withdrawn) { setStatus("You have withdrawn; no more labels are taken.", "error"); throw new Error("withdrawn"); }
  if (me.consent.needed) { window.location.href = "/"; throw new Error("consent needed"); }
  const who = $("who"); if (who) who.textContent = "annotator " + me.annotator_id;
  setProgress(me.progress);
  return me;
}

function typingInField(ev) {
  const t = ev.target; return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable);
}

// A page's queue of waiting queries: refill() asks `path` for more whenever fewer than 3 wait (one request
// at a time), keeps the ones not seen before, preloads the first 3 and calls `showIfIdle` after each answer.
function queryRefill(path, queue, seen, preload, showIfIdle) {
  let fetching = false;
  return async function refill() {
    if (fetching || queue.length >= 3) return;
    fetching = true;
    try {
      const epoch = progressEpoch(), out = await api("GET", path);
      setProgress(out.progress, epoch);
      for (const q of out.queries) if (!seen.has(q.id)) { seen.add(q.id); queue.push(q); }
      queue.slice(0, 3).forEach(preload);
    } catch (e) { setStatus(e.message, "error"); }
    finally { fetching = false; }
    showIfIdle();
  };
}
