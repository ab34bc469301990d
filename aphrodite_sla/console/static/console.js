// aphrodite-sla console: live fragments and local times. No inline script (the CSP forbids it).
"use strict";
(function () {
  function localTimes(root) {
    root.querySelectorAll("time.ts").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        el.textContent = d.toLocaleString();
        el.title = el.getAttribute("datetime").replace("T", " ").replace("Z", " UTC");
      }
    });
    root.querySelectorAll("tspan.ts-svg").forEach(function (el) {
      var d = new Date(el.getAttribute("data-at"));
      if (!isNaN(d.getTime())) { el.textContent = d.toLocaleTimeString(); }
    });
  }
  function start() {
    localTimes(document);
    var body = document.body;
    var url = body.getAttribute("data-live-url");
    var every = parseFloat(body.getAttribute("data-refresh") || "30") * 1000;
    var live = document.getElementById("live");
    var state = document.getElementById("live-state");
    if (!url || !live || !(every > 0)) { return; }
    function refresh() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } }).then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      }).then(function (html) {
        if (html !== live.getAttribute("data-last")) {
          live.innerHTML = html;  // server-rendered and escaped; scripts in it never run (CSP, innerHTML)
          live.setAttribute("data-last", html);
          localTimes(live);
        }
        if (state) { state.textContent = "Last update " + new Date().toLocaleTimeString() + "."; }
        body.setAttribute("data-refreshed", String(Date.now()));
      }).catch(function (err) {
        if (state) { state.textContent = "Live update failed (" + err.message + "); retrying."; }
      });
    }
    window.setInterval(refresh, every);
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
