// charrnn page: after common.js. The model of #page-data, run in the browser, writing text.
//
// The weights are charrnn export's (export.py): PyTorch's names and gate orders, float32,
// little-endian, base64. Per character, with x the one-hot input (layer 0) or the hidden
// state of the layer below, and sigma the logistic sigmoid:
//
//   a = weight_ih x + bias_ih,  b = weight_hh h + bias_hh          (G,)
//   RNN   h = tanh(a + b)                                           G = H
//   LSTM  i, f, g, o = sigma, sigma, tanh, sigma of (a + b)         G = 4H, torch's order
//         c = f * c + i * g;  h = o * tanh(c)
//   GRU   r, z = sigma(a_r + b_r), sigma(a_z + b_z)                 G = 3H, torch's order
//         n = tanh(a_n + r * b_n);  h = (1 - z) * n + z * h
//   logits = out.weight h + out.bias                                (V,)
//
// Weights and states are Float32Arrays (what NumPy holds); sums are in JavaScript's doubles.
// window.charrnnPage is the model's interface, for tests and the console: logitsOf(text),
// generate({prompt, length, temperature, topK, topP, seed}).
(function () {
  "use strict";
  charrnnStart("page", run);

  function run() {
    var D = JSON.parse(document.getElementById("page-data").textContent);
    var model = makeModel(D);
    window.charrnnPage = {
      model: model,
      logitsOf: function (text) { return logitsOf(model, text); },
      generate: function (options) { return generateAll(model, options); }
    };
    setUpControls(D, model);
  }

  // --------------------------------------------------------------------- the model's maths

  function makeModel(D) {
    var floats = new Float32Array(D.weights_count);
    var bytes = charrnnBytes(D.weights_data);
    var view = new DataView(bytes.buffer);
    for (var k = 0; k < floats.length; k++) floats[k] = view.getFloat32(4 * k, true);
    function tensor(name) {
      var entry = D.weights[name];
      var size = entry.shape.reduce(function (a, b) { return a * b; }, 1);
      return floats.subarray(entry.offset, entry.offset + size);
    }
    var cell = D.model.cell, L = D.model.num_layers, H = D.model.hidden_size;
    var V = D.vocab.length, G = { rnn: 1, lstm: 4, gru: 3 }[cell] * H;
    var layers = [];
    for (var l = 0; l < L; l++) {
      var Wih = tensor("weight_ih_l" + l), input = l === 0 ? V : H;
      var layer = { Wih: Wih, Whh: tensor("weight_hh_l" + l), bih: tensor("bias_ih_l" + l),
                    bhh: tensor("bias_hh_l" + l), input: input };
      if (l === 0) {   // column c of weight_ih_l0 is character c's input term: kept as rows
        var columns = new Float32Array(V * G);
        for (var g = 0; g < G; g++) for (var c = 0; c < V; c++) columns[c * G + g] = Wih[g * V + c];
        layer.columns = columns;
      }
      layers.push(layer);
    }
    var index = new Map();
    D.vocab.forEach(function (ch, i) { index.set(ch, i); });
    return { cell: cell, L: L, H: H, V: V, G: G, layers: layers, vocab: D.vocab, index: index,
             Why: tensor("out.weight"), by: tensor("out.bias"),
             a: new Float64Array(G), b: new Float64Array(G), logits: new Float64Array(V) };
  }

  function sigmoid(x) { return 1 / (1 + Math.exp(-x)); }

  function zeroState(m) {
    var state = [];
    for (var l = 0; l < m.L; l++) {
      state.push({ h: new Float32Array(m.H), c: m.cell === "lstm" ? new Float32Array(m.H) : null });
    }
    return state;
  }

  // out[r] = W[r, :] x + bias[r], W (rows, n) row-major.
  function affine(W, x, bias, rows, n, out) {
    for (var r = 0; r < rows; r++) {
      var s = bias[r], off = r * n;
      for (var j = 0; j < n; j++) s += W[off + j] * x[j];
      out[r] = s;
    }
  }

  // Advance every layer of ``state`` by character index ``c``.
  function feed(m, state, c) {
    var H = m.H, G = m.G, a = m.a, b = m.b, x = null;
    for (var l = 0; l < m.L; l++) {
      var p = m.layers[l], s = state[l], h = s.h, k;
      if (l === 0) {
        for (k = 0; k < G; k++) a[k] = p.columns[c * G + k] + p.bih[k];
      } else {
        affine(p.Wih, x, p.bih, G, H, a);
      }
      affine(p.Whh, h, p.bhh, G, H, b);
      if (m.cell === "rnn") {
        for (k = 0; k < H; k++) h[k] = Math.tanh(a[k] + b[k]);
      } else if (m.cell === "lstm") {
        var cs = s.c;
        for (k = 0; k < H; k++) {
          var i = sigmoid(a[k] + b[k]), f = sigmoid(a[H + k] + b[H + k]);
          var g = Math.tanh(a[2 * H + k] + b[2 * H + k]), o = sigmoid(a[3 * H + k] + b[3 * H + k]);
          cs[k] = f * cs[k] + i * g;
          h[k] = o * Math.tanh(cs[k]);
        }
      } else {
        for (k = 0; k < H; k++) {
          var r = sigmoid(a[k] + b[k]), z = sigmoid(a[H + k] + b[H + k]);
          var n = Math.tanh(a[2 * H + k] + r * b[2 * H + k]);
          h[k] = (1 - z) * n + z * h[k];
        }
      }
      x = h;
    }
  }

  // The next character's logits (V,) from the top layer's h; a buffer the next call reuses.
  function logits(m, state) {
    affine(m.Why, state[m.L - 1].h, m.by, m.V, m.H, m.logits);
    return m.logits;
  }

  // Logits after each character of ``text`` but the last, from a zero state: (N-1) arrays.
  function logitsOf(m, text) {
    var indices = encode(m, text).indices, state = zeroState(m), rows = [];
    for (var t = 0; t + 1 < indices.length; t++) {
      feed(m, state, indices[t]);
      rows.push(Array.from(logits(m, state)));
    }
    return rows;
  }

  // Character indices of ``text`` (by code point), and the characters the model does not know.
  function encode(m, text) {
    var indices = [], unknown = [];
    Array.from(text).forEach(function (ch) {
      var i = m.index.get(ch);
      if (i === undefined) { if (unknown.indexOf(ch) < 0) unknown.push(ch); } else indices.push(i);
    });
    return { indices: indices, unknown: unknown };
  }

  // ------------------------------------------------------------------------------ sampling

  // mulberry32: a small seeded generator of uniform numbers in [0, 1); the same seed gives
  // the same sequence in every browser.
  function seededRandom(seed) {
    var s = seed >>> 0;
    return function () {
      s = (s + 0x6D2B79F5) >>> 0;
      var t = s;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  // Draw a character from softmax(y / temperature), among the topK likeliest (0: all) and
  // the smallest set of them whose probabilities add up to topP (1: all).
  function draw(y, temperature, topK, topP, random) {
    var V = y.length, order = [], p = new Float64Array(V), max = -Infinity, k, sum = 0;
    for (k = 0; k < V; k++) max = Math.max(max, y[k] / temperature);
    for (k = 0; k < V; k++) { p[k] = Math.exp(y[k] / temperature - max); sum += p[k]; order.push(k); }
    order.sort(function (i, j) { return p[j] - p[i] || i - j; });
    var keep = topK > 0 ? Math.min(topK, V) : V, mass = 0;
    for (k = 0; k < keep; k++) {
      mass += p[order[k]];
      if (topP < 1 && mass >= topP * sum) { keep = k + 1; break; }
    }
    var u = random() * mass, acc = 0;
    for (k = 0; k < keep; k++) {
      acc += p[order[k]];
      if (u < acc) return order[k];
    }
    return order[keep - 1];
  }

  // A writer: feeds the prompt, then next() gives one new character at a time.
  function writer(m, options) {
    var state = zeroState(m), prompt = encode(m, options.prompt || "");
    var random = seededRandom(options.seed);
    prompt.indices.forEach(function (c) { feed(m, state, c); });
    return {
      unknown: prompt.unknown,
      next: function () {
        var c = draw(logits(m, state), options.temperature, options.topK, options.topP, random);
        feed(m, state, c);
        return m.vocab[c];
      }
    };
  }

  function generateAll(m, options) {
    options = Object.assign({ length: 0, temperature: 1, topK: 0, topP: 1, seed: 0 }, options);
    var w = writer(m, options), out = "";
    for (var i = 0; i < options.length; i++) out += w.next();
    return out;
  }

  // ------------------------------------------------------------------------------ the page

  function setUpControls(D, m) {
    var $ = function (id) { return document.getElementById(id); };
    var prompt = $("prompt"), output = $("output"), status = $("status");
    var go = $("generate"), stop = $("stop");
    var query = new URLSearchParams(location.search.slice(1) || location.hash.slice(1));
    ["prompt", "length", "temperature", "top-k", "top-p", "seed"].forEach(function (name) {
      if (query.has(name)) $(name).value = query.get(name);
    });
    var running = null;

    function number(id, fallback) {
      var value = parseFloat($(id).value);
      return isFinite(value) ? value : fallback;
    }
    function finish(message) {
      running = null;
      go.disabled = false;
      stop.disabled = true;
      status.textContent = message;
      output.setAttribute("data-done", "1");
    }
    go.addEventListener("click", function () {
      var seedText = $("seed").value.trim();
      var seed = /^\d+$/.test(seedText) ? +seedText % 4294967296
        : Math.floor(Math.random() * 4294967296);
      var options = { prompt: prompt.value, length: Math.max(0, Math.floor(number("length", 500))),
                      temperature: Math.max(0.01, number("temperature", 1)),
                      topK: Math.max(0, Math.floor(number("top-k", 0))),
                      topP: Math.min(1, Math.max(0.01, number("top-p", 1))), seed: seed };
      var w = writer(m, options);
      output.textContent = "";
      output.removeAttribute("data-done");
      var shown = document.createElement("span");
      shown.className = "prompt";
      shown.textContent = options.prompt;
      var written = document.createTextNode("");
      output.appendChild(shown);
      output.appendChild(written);
      var note = w.unknown.length ? " (left out of the prompt, unknown to the model: " +
        w.unknown.map(function (ch) { return JSON.stringify(ch); }).join(" ") + ")" : "";
      var count = 0, started = performance.now(), text = "";
      var token = {};
      running = token;
      go.disabled = true;
      stop.disabled = false;
      function chunk() {
        if (running !== token) return;
        var until = performance.now() + 25;   // write for 25 ms, then let the page draw
        while (count < options.length && performance.now() < until) { text += w.next(); count++; }
        written.data = text;
        var seconds = (performance.now() - started) / 1000;
        var rate = seconds > 0 ? Math.round(count / seconds) : 0;
        var line = count + " of " + options.length + " characters, " + rate +
          " characters/s, seed " + seed + note;
        if (count >= options.length) { finish(line); return; }
        status.textContent = line;
        setTimeout(chunk, 0);
      }
      chunk();
    });
    stop.addEventListener("click", function () {
      if (running) finish("stopped: " + status.textContent);
    });
  }
})();
