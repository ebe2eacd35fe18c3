// A run page's live output (htmx SSE extension): drop a chunk already shown, keep the
// resume point in sse-connect (a reconnect by the extension is a new EventSource, which
// sends no Last-Event-ID), and keep following the end of the output if the reader is there.
(function () {
  "use strict";
  var following = true;
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    var message = event.detail;
    var live = document.getElementById("live");
    var output = document.getElementById("output");
    if (message.type !== "chunk" || !live || !output) return;
    var seq = parseInt(message.lastEventId, 10);
    if (!(seq > parseInt(live.dataset.after, 10))) {
      event.preventDefault();
      return;
    }
    live.dataset.after = String(seq);
    var url = new URL(live.getAttribute("sse-connect"), location.href);
    url.searchParams.set("after", String(seq));
    live.setAttribute("sse-connect", url.pathname + url.search);
    following = output.scrollHeight - output.scrollTop - output.clientHeight < 32;
  });
  document.addEventListener("htmx:sseMessage", function (event) {
    var output = document.getElementById("output");
    if (event.detail.type === "chunk" && output && following) {
      output.scrollTop = output.scrollHeight;
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    var output = document.getElementById("output");
    if (output) output.scrollTop = output.scrollHeight;
  });
})();
