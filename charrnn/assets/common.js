// Shared by the pages charrnn writes (viz.js, page.js): loaded first, in the same <script>.
"use strict";

// Run a page's script: on <html>, data-<name>-ready="1" and data-load-ms (milliseconds since
// navigation began) / data-script-ms (in the script) when it has run; data-<name>-error if
// it (or anything later) failed. Tests and benchmarks read these from the DOM.
function charrnnStart(name, run) {
  var root = document.documentElement;
  window.addEventListener("error", function (event) {
    root.setAttribute("data-" + name + "-error", String(event.message || event.error));
  });
  var started = performance.now();
  try {
    run();
    var done = performance.now();
    root.setAttribute("data-load-ms", done.toFixed(1));
    root.setAttribute("data-script-ms", (done - started).toFixed(1));
    root.setAttribute("data-" + name + "-ready", "1");
  } catch (error) {
    root.setAttribute("data-" + name + "-error", String(error && error.stack || error));
    throw error;
  }
}

// The bytes a base64 string holds, as a Uint8Array.
function charrnnBytes(base64) {
  var text = atob(base64), bytes = new Uint8Array(text.length);
  for (var i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}
