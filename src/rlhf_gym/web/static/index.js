// The start page: consent, tasks and withdrawal.
"use strict";
let me = null;
async function load() {
  try { me = await api("GET", "/api/me"); } catch (e) {
    setStatus(e.status === 401 ? "Not signed in: open the invite link you were given." : e.message, "error"); return;
  }
  $("who").textContent = "annotator " + me.annotator_id;
  if (me.withdrawn) { setStatus("You have withdrawn from this project. Thank you for your help.", "ok"); $("home").classList.add("hidden"); $("consent").classList.add("hidden"); return; }
  const c = me.consent;
  $("purpose").textContent = c.purpose; $("consent-text").textContent = c.text; $("consent-version").textContent = c.version;
  $("purpose2").textContent = c.purpose; $("consent2").textContent = c.text;
  if (c.needed) { $("consent").classList.remove("hidden"); $("home").classList.add("hidden"); $("agree").focus(); return; }
  $("consent").classList.add("hidden"); $("home").classList.remove("hidden");
  setProgress(me.progress);
  const o = me.progress.open_by_kind;
  $("n-pair").textContent = `(${o.pair} waiting)`; $("n-step").textContent = `(${o.step} waiting)`; $("n-demo").textContent = `(${o.demo} waiting)`;
  $("n-outcome").textContent = `(${o.outcome || 0} waiting)`;
  $("n-action").textContent = `(${o.action || 0} waiting)`;
}
async function decide(agree) {
  try {
    await api("POST", "/api/consent", { agree, version: me.consent.version });
    if (!agree) { setStatus("You did not agree, so no labels will be asked of you or stored. You can agree later on this page.", "ok"); return; }
    setStatus("Thank you. Choose a task below.", "ok"); await load();
  } catch (e) { setStatus(e.message, "error"); }
}
$("agree").onclick = () => decide(true);
$("decline").onclick = () => decide(false);
$("withdraw").onclick = () => { $("withdraw-confirm").classList.remove("hidden"); $("withdraw-confirm").focus(); };
$("withdraw-confirm").onclick = async () => {
  try { const out = await api("POST", "/api/withdraw", { confirm: true });
    setStatus(`Withdrawn: ${out.labels_withdrawn} labels will not be used. Thank you.`, "ok"); $("home").classList.add("hidden");
  } catch (e) { setStatus(e.message, "error"); }
};
document.addEventListener("keydown", (ev) => {
  if (typingInField(ev) || !me) return;
  const consentShown = !$("consent").classList.contains("hidden");
  if (consentShown && ev.key === "a") decide(true);
  else if (consentShown && ev.key === "d") decide(false);
  else if (!consentShown && ev.key === "1") window.location.href = "/preference";
  else if (!consentShown && ev.key === "2") window.location.href = "/evaluative";
  else if (!consentShown && ev.key === "3") window.location.href = "/demo";
  else if (!consentShown && ev.key === "4") window.location.href = "/tradeoff";
  else if (!consentShown && ev.key === "5") window.location.href = "/dagger";
});
load();
