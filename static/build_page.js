// Refreshes the build list while a build is queued or running.
(function () {
  const rows = document.getElementById("build-rows");
  if (!rows) return;
  function busy() { return rows.querySelector('tr[data-status="queued"], tr[data-status="running"]'); }
  async function refresh() {
    if (busy()) {
      try {
        const response = await fetch(rows.dataset.refresh, { credentials: "same-origin" });
        if (response.ok) rows.innerHTML = await response.text();
      } catch (e) { /* try again on the next tick */ }
    }
    setTimeout(refresh, 2000);
  }
  setTimeout(refresh, 2000);
})();
