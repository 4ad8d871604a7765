// The console's only script: it refreshes the page's figures in place. Everything else
// (navigation, login, retry, discard) is plain links and forms, so the console works
// without JavaScript, only without the refresh.
(function () {
  "use strict";
  var every = Number(document.body.getAttribute("data-refresh-ms")) || 0;
  var state = document.getElementById("refresh-state");
  if (every <= 0) {
    if (state) state.textContent = "";
    return;
  }
  if (state) state.textContent = "Refreshing every " + every / 1000 + " s.";
  function refresh() {
    if (document.hidden) return schedule();
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        // A session that ended sends the browser to the login page: go there too.
        if (response.redirected || !response.ok) {
          window.location.reload();
          return null;
        }
        return response.text();
      })
      .then(function (text) {
        if (text === null) return;
        var next = new DOMParser().parseFromString(text, "text/html").querySelector("main");
        var main = document.querySelector("main");
        if (next && main) main.innerHTML = next.innerHTML;
        if (state) state.textContent = "Refreshed " + new Date().toLocaleTimeString() + "; every " + every / 1000 + " s.";
        schedule();
      })
      .catch(function () {
        if (state) state.textContent = "The shop did not answer; trying again.";
        schedule();
      });
  }
  function schedule() { window.setTimeout(refresh, every); }
  schedule();
})();
