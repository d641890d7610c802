// Keeps the page's main block current: fetches it again every few seconds (same URL with
// fragment=1) and swaps it in, without reloading the page. Pauses while the tab is hidden.
"use strict";
(function () {
  const main = document.getElementById("main");
  if (!main || !main.dataset.refresh) return;
  const every = Number(main.dataset.refresh) || 2000;
  async function refresh() {
    if (document.hidden || main.contains(document.activeElement) && document.activeElement.matches("input, select")) return;
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    try {
      const answer = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (answer.status === 401) { window.location.reload(); return; }
      if (!answer.ok) return;
      const open = new Set([...main.querySelectorAll("details[open]")].map((d) => d.parentElement && d.parentElement.textContent.slice(0, 80)));
      main.innerHTML = await answer.text();
      main.querySelectorAll("details").forEach((d) => { if (open.has(d.parentElement.textContent.slice(0, 80))) d.open = true; });
      main.dataset.refreshedAt = String(Date.now());
    } catch (error) {
      // the server is restarting: try again at the next tick
    }
  }
  window.setInterval(refresh, every);
})();
