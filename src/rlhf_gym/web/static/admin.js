// The admin page: asks for the admin token, fetches the report with it as a header.
document.getElementById("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const token = document.getElementById("token").value.trim();
  const status = document.getElementById("status");
  status.textContent = "loading...";
  const r = await fetch("/api/admin/report.html", {headers: {Authorization: "Bearer " + token}});
  if (!r.ok) {
    let msg = r.status + "";
    try { msg += ": " + (await r.json()).detail; } catch (e) { /* not JSON */ }
    status.textContent = "refused (" + msg + ")";
    return;
  }
  status.textContent = "";
  document.getElementById("report").srcdoc = await r.text();
});
