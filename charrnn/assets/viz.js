// charrnn viz: after common.js. Reads the JSON in #viz-data and builds the text views.
(function () {
  "use strict";
  charrnnStart("viz", run);

  function run() {
    var D = JSON.parse(document.getElementById("viz-data").textContent);
    var N = D.indices.length, H = D.hidden_size, K = D.k;
    var chars = D.indices.map(function (i) { return D.vocab[i]; });
    var arrays = {};
    D.arrays.forEach(function (a) {
      a.q = charrnnBytes(a.data);
      arrays[a.name] = a;
    });
    var current = { array: arrays[D.selected.name] || D.arrays[0], unit: D.selected.unit };
    var pinned = -1;

    function visible(c) {
      if (c === "\n") return "\u21b5";
      if (c === " ") return "\u2423";
      if (c === "\t") return "\u21e5";
      var code = c.codePointAt(0);
      if (code < 32) return String.fromCharCode(0x2400 + code);
      if (code === 127) return "\u2421";
      return c;
    }
    function inText(c) {   // how a character is drawn inside the text
      if (c === "\n") return "\u21b5\n";
      if (c === " " || c === "\t") return c;
      var code = c.codePointAt(0);
      if (code < 32 || code === 127) return visible(c);
      return c;
    }
    function mix(a, b, t) {
      return "rgb(" + [0, 1, 2].map(function (k) { return Math.round(a[k] + (b[k] - a[k]) * t); }).join(",") + ")";
    }
    var WHITE = [255, 255, 255], ORANGE = [253, 174, 97], RED = [215, 48, 39], DARK = [127, 0, 0];
    var BLUE = [33, 102, 172], CRIMSON = [178, 24, 43];
    function surpriseColour(bits) {
      var t = Math.min(bits / 8, 1) * 3;
      if (t <= 1) return mix(WHITE, ORANGE, t);
      if (t <= 2) return mix(ORANGE, RED, t - 1);
      return mix(RED, DARK, t - 2);
    }
    function unitColour(x) {   // x in [-1, 1]
      x = Math.max(-1, Math.min(1, x));
      return x < 0 ? mix(WHITE, BLUE, -x) : mix(WHITE, CRIMSON, x);
    }
    function value(a, t, unit) {
      var lo = a.lo[unit], hi = a.hi[unit];
      return lo + a.q[t * H + unit] * (hi - lo) / 255;
    }
    function scaled(a, v) {
      if (a.range === "unit") return 2 * v - 1;
      if (a.range === "free") return Math.tanh(v);
      return v;
    }
    function bits(t) { return -Math.log(D.p[t - 1]) / Math.LN2; }

    function build(container) {
      var fragment = document.createDocumentFragment();
      for (var t = 0; t < N; t++) {
        var span = document.createElement("span");
        var c = chars[t];
        span.textContent = inText(c);
        span.setAttribute("data-i", t);
        if (inText(c) !== c) span.className = "ctl";
        fragment.appendChild(span);
      }
      container.appendChild(fragment);
      return container.children;
    }
    var surpriseText = document.getElementById("surprise-text");
    var unitText = document.getElementById("unit-text");
    var surpriseSpans = build(surpriseText), unitSpans = build(unitText);
    surpriseSpans[0].classList.add("first");
    for (var t = 1; t < N; t++) {
      surpriseSpans[t].style.backgroundColor = surpriseColour(bits(t));
    }

    var select = document.getElementById("unit-array");
    var input = document.getElementById("unit-index");
    var info = document.getElementById("unit-info");
    var notes = { unit: "0 blue, 0.5 white, 1 red", signed: "-1 blue, 0 white, +1 red",
                  free: "coloured by tanh(value)" };
    function showUnit(name, unit) {
      var a = arrays[name] || current.array;
      unit = Math.max(0, Math.min(H - 1, unit | 0));
      current = { array: a, unit: unit };
      select.value = a.name;
      input.value = unit;
      var lo = Infinity, hi = -Infinity, sum = 0, steps = N - 1;
      for (var t = 0; t < N; t++) {
        var span = unitSpans[t];
        if (t < steps) {
          var v = value(a, t, unit);
          lo = Math.min(lo, v); hi = Math.max(hi, v); sum += v;
          span.style.backgroundColor = unitColour(scaled(a, v));
        } else {
          span.style.backgroundColor = "";
        }
      }
      document.getElementById("legend-low").textContent = a.range === "unit" ? "0" : "-1";
      document.getElementById("legend-high").textContent = a.range === "unit" ? "1" : "+1";
      document.getElementById("legend-note").textContent = notes[a.range] || "";
      info.textContent = steps > 0 ? "layer " + a.layer + " " + a.label + ", unit " + unit +
        ": from " + lo.toFixed(3) + " to " + hi.toFixed(3) + ", mean " + (sum / steps).toFixed(3) : "";
      unitText.setAttribute("data-unit", a.name + ":" + unit);
      document.querySelectorAll(".pick").forEach(function (el) {
        var on = el.getAttribute("data-name") === a.name && +el.getAttribute("data-unit") === unit;
        el.classList.toggle("current", on);
      });
      if (pinned >= 0) showTip(pinned, null);
    }
    select.addEventListener("change", function () { showUnit(select.value, +input.value); });
    input.addEventListener("input", function () { showUnit(select.value, +input.value); });
    document.getElementById("unit-prev").addEventListener("click", function () { showUnit(current.array.name, current.unit - 1); });
    document.getElementById("unit-next").addEventListener("click", function () { showUnit(current.array.name, current.unit + 1); });
    document.querySelectorAll(".pick").forEach(function (el) {
      el.addEventListener("click", function () {
        showUnit(el.getAttribute("data-name"), +el.getAttribute("data-unit"));
      });
    });

    var tip = document.getElementById("tip");
    var marked = [];
    function mark(t) {
      marked.forEach(function (span) { span.classList.remove("on"); });
      marked = t >= 0 ? [surpriseSpans[t], unitSpans[t]] : [];
      marked.forEach(function (span) { span.classList.add("on"); });
    }
    function element(tag, cls, text) {
      var el = document.createElement(tag);
      if (cls) el.className = cls;
      if (text !== undefined) el.textContent = text;
      return el;
    }
    function showTip(t, anchor) {
      tip.textContent = "";
      tip.appendChild(element("div", "head", "\u201c" + visible(chars[t]) + "\u201d, character " +
        (t + 1).toLocaleString() + " of " + N.toLocaleString()));
      if (t === 0) {
        tip.appendChild(element("div", "", "context only: nothing before it to predict it from"));
      } else {
        var p = D.p[t - 1];
        tip.appendChild(element("div", "", "p = " + p.toPrecision(3) + " (" + bits(t).toFixed(2) +
          " bits)" + (D.rank[t - 1] ? ", guess " + D.rank[t - 1] : ", not in the top " + K)));
        for (var j = 0; j < K; j++) {
          var index = D.top_indices[(t - 1) * K + j], prob = D.top_probs[(t - 1) * K + j];
          var row = element("div", "guess" + (index === D.indices[t] ? " true" : ""));
          row.appendChild(element("span", "", visible(D.vocab[index])));
          row.appendChild(element("span", "", prob.toFixed(4)));
          var bar = element("span", "pbar");
          bar.style.width = Math.max(1, Math.round(prob * 100)) + "%";
          row.appendChild(bar);
          tip.appendChild(row);
        }
      }
      var a = current.array;
      tip.appendChild(element("div", "value", a.name + " unit " + current.unit + ": " +
        (t < N - 1 ? value(a, t, current.unit).toFixed(3) : "- (after the last character)")));
      tip.hidden = false;
      var span = anchor || (pinned === t ? surpriseSpans[t] : null);
      if (span) {
        var box = span.getBoundingClientRect();
        var left = window.scrollX + box.left, top = window.scrollY + box.bottom + 4;
        var width = tip.offsetWidth;
        if (left + width > window.scrollX + document.documentElement.clientWidth - 8) {
          left = window.scrollX + document.documentElement.clientWidth - width - 8;
        }
        tip.style.left = Math.max(0, left) + "px";
        tip.style.top = top + "px";
      }
      tip.setAttribute("data-i", t);
      mark(t);
    }
    function hideTip() {
      if (pinned >= 0) { showTip(pinned, lastAnchor); return; }
      tip.hidden = true;
      mark(-1);
    }
    var lastAnchor = null;
    function pin(t, span) {
      if (pinned >= 0) { surpriseSpans[pinned].classList.remove("pinned"); unitSpans[pinned].classList.remove("pinned"); }
      pinned = t;
      lastAnchor = span;
      if (t >= 0) {
        surpriseSpans[t].classList.add("pinned"); unitSpans[t].classList.add("pinned");
        showTip(t, span);
      } else {
        hideTip();
      }
    }
    [surpriseText, unitText].forEach(function (container) {
      var spans = container === surpriseText ? surpriseSpans : unitSpans;
      container.addEventListener("mouseover", function (event) {
        var i = event.target.getAttribute && event.target.getAttribute("data-i");
        if (i !== null && i !== undefined) showTip(+i, event.target);
      });
      container.addEventListener("mouseleave", hideTip);
      container.addEventListener("click", function (event) {
        var i = event.target.getAttribute && event.target.getAttribute("data-i");
        if (i === null || i === undefined) return;
        pin(pinned === +i ? -1 : +i, event.target);
      });
      container.addEventListener("keydown", function (event) {
        var step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
        if (event.key === "Escape") { pin(-1, null); return; }
        if (!step) return;
        event.preventDefault();
        var t = Math.max(0, Math.min(N - 1, (pinned < 0 ? 0 : pinned + step)));
        pin(t, spans[t]);
        spans[t].scrollIntoView({ block: "nearest" });
      });
    });
    window.addEventListener("resize", function () { if (pinned >= 0) showTip(pinned, lastAnchor); });

    // ?unit=l1.c:45&char=120 (or after #): show that unit, pin that character.
    var query = new URLSearchParams(location.search.slice(1) || location.hash.slice(1));
    var wanted = (query.get("unit") || "").split(":");
    showUnit(arrays[wanted[0]] ? wanted[0] : current.array.name,
             wanted.length > 1 ? +wanted[1] : current.unit);
    var at = query.get("char");
    if (at !== null && /^\d+$/.test(at) && +at < N) {
      var view = query.get("view") === "unit" ? unitSpans : surpriseSpans;
      pin(+at, view[+at]);
    }
  }
})();
