"""The page ``charrnn viz`` writes: one self-contained HTML file (inline CSS and JavaScript,
no network) of what a model predicts and what its units track on a text.

The numbers come from inspection.py; this module only lays them out. Everything that comes
from the text or the checkpoint is HTML-escaped where it is written as HTML, and the page's
data is JSON inside ``<script type="application/json" id="viz-data">`` with ``<``, ``>`` and
``&`` written as ``\\u003c``, ``\\u003e`` and ``\\u0026``, so no text can close the element.
The script reads the data, builds the text views with ``textContent`` (never as HTML), and
marks ``<html data-viz-ready="1" data-load-ms="..." data-script-ms="...">`` when it has run
(milliseconds since navigation began, and in the script; ``data-viz-error`` if it failed).
The CSS and JavaScript are package files, charrnn/assets/common.* then viz.* (resources.py).

Unit values are stored as one byte each, per unit linearly between that unit's smallest and
largest value on the text (``lo + q * (hi - lo) / 255``), base64-encoded, time-major.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
from dataclasses import dataclass

import numpy as np

from .checkpoint import Checkpoint
from .config import describe_model
from .evaluate import perplexity_text
from .inspection import FEATURES, Inspection, inspect_text, same_figure
from .resources import page_css, page_script
from .runfiles import VIZ_PAGE_SIGNATURE, atomic_file

DATA_ELEMENT_ID = "viz-data"
# Names of trace's values, for people; any other name is shown as it is.
VALUE_LABELS = {"h": "hidden state h", "c": "cell state c", "i": "input gate i",
                "f": "forget gate f", "o": "output gate o", "g": "cell input g",
                "r": "reset gate r", "z": "update gate z", "n": "new gate n"}
LAYER_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


@dataclass
class PageSource:
    """What the page describes: the checkpoint, the text, and how much of it is shown."""
    checkpoint: Checkpoint
    checkpoint_name: str        # the checkpoint's path, as the user gave it
    text_name: str              # the text file's path, or a description of --text
    indices: np.ndarray         # the characters shown (already cut to --max-chars)
    total_chars: int            # known characters in the whole text
    skipped: int = 0            # unknown characters left out (--skip-unknown)


def shown_name(name: str) -> str:
    """A file name as text that UTF-8 can hold (undecodable bytes in a name become U+FFFD)."""
    return os.fsencode(name).decode("utf-8", "replace") if isinstance(name, str) else str(name)


def json_for_script(data) -> str:
    """``data`` as JSON that is safe inside a <script> element: ASCII only, and no ``<``,
    ``>`` or ``&`` (they appear only inside strings, where ``\\u003c`` means the same)."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def quantize(values: np.ndarray) -> tuple[list, list, str]:
    """(lo, hi, base64 bytes) of ``values`` (M, H): per unit, ``round((v - lo) / (hi - lo) * 255)``
    as one byte, time-major; a unit that never changes is all zeros."""
    values = np.asarray(values, dtype=np.float64)
    lo, hi = values.min(axis=0), values.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    q = np.rint((values - lo) / span * 255).clip(0, 255).astype(np.uint8)
    return ([float(x) for x in lo], [float(x) for x in hi],
            base64.b64encode(q.tobytes()).decode("ascii"))


def dequantize(lo, hi, data: str, hidden_size: int) -> np.ndarray:
    """The (M, H) values a page holds (the inverse of quantize, to within (hi - lo) / 510)."""
    q = np.frombuffer(base64.b64decode(data), dtype=np.uint8).reshape(-1, hidden_size)
    lo, hi = np.asarray(lo), np.asarray(hi)
    return lo + q * (hi - lo) / 255


def value_label(kind: str) -> str:
    return VALUE_LABELS.get(kind, kind)


def page_data(inspection: Inspection, vocab_chars, hidden_size: int) -> dict:
    """The JSON the page's script reads."""
    arrays = []
    for unit_values in inspection.units:
        lo, hi, data = quantize(unit_values.values)
        arrays.append({"name": unit_values.name, "layer": unit_values.layer,
                       "kind": unit_values.kind, "label": value_label(unit_values.kind),
                       "range": unit_values.range, "lo": lo, "hi": hi, "data": data})
    ranks = inspection_ranks(inspection)
    first = inspection.correlations[0] if inspection.correlations else None
    return {
        "vocab": list(vocab_chars),
        "indices": [int(i) for i in inspection.indices],
        "p": [float(p) for p in inspection.p_true],
        "rank": [int(r) for r in ranks],
        "k": int(inspection.top_indices.shape[1]) if inspection.top_indices.ndim == 2 else 0,
        "top_indices": [int(i) for i in inspection.top_indices.reshape(-1)],
        "top_probs": [float(f"{p:.5g}") for p in inspection.top_probs.reshape(-1)],
        "hidden_size": hidden_size,
        "arrays": arrays,
        "selected": {"name": first.name, "unit": first.unit} if first else
                    {"name": arrays[0]["name"] if arrays else "", "unit": 0},
    }


def inspection_ranks(inspection: Inspection) -> np.ndarray:
    """(N-1,) the true character's rank among the guesses (1: the likeliest), if in the top k,
    else 0 (not among them)."""
    hits = inspection.top_indices == inspection.indices[1:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)


# --------------------------------------------------------------------------- the HTML parts

def esc(value) -> str:
    return html.escape(str(value), quote=True)


def loss_text(nats) -> str:
    if nats is None or not math.isfinite(nats):
        return "-"
    return f"{nats / math.log(2):.4f} bits/char ({nats:.4f} nats)"


def headline_html(inspection: Inspection, source: PageSource) -> str:
    score = inspection.score
    shown = len(source.indices)
    whole = shown == source.total_chars
    skipped = f", {source.skipped:,} unknown skipped" if source.skipped else ""
    parts = [f'<p class="headline" id="headline"><b id="headline-bits">'
             f'{score.bits_per_char:.4f} bits/char</b> over '
             f'<span id="headline-count">{score.count:,}</span> characters scored{skipped} '
             f'(<span id="headline-nats">{score.nats_per_char:.4f} nats/char</span>, perplexity '
             f'{esc(perplexity_text(score.nats_per_char))}): the score <code>charrnn eval</code> gives '
             f'{"this text" if whole else "the text shown"}.</p>']
    if not whole:
        parts.append(f'<p class="note" id="cut-note">Only the first {shown:,} of the text\'s '
                     f'{source.total_chars:,} characters are shown (<code>--max-chars</code>); '
                     f'the figures are for them.</p>')
    trace = inspection.trace_score
    if not same_figure(score, trace):
        parts.append(
            f'<p class="note" id="headline-trace">Every character after the first, each '
            f'predicted from all before it (as shaded below): <b>{trace.bits_per_char:.4f} '
            f'bits/char</b> over {trace.count:,} characters ({trace.nats_per_char:.4f} '
            f'nats/char). For speed, <code>charrnn eval</code> scores a long text in several '
            f'streams side by side, so its figure differs a little from this one.</p>')
    return "\n".join(parts)


def model_html(source: PageSource) -> str:
    checkpoint = source.checkpoint
    state = checkpoint.state
    return model_details(checkpoint, f"{describe_model(checkpoint.config)}, iteration "
                                     f"{state.get('iteration', 0):,}, validation loss "
                                     f"{loss_text(state.get('last_val_loss'))}")


def model_details(checkpoint: Checkpoint, summary: str) -> str:
    """A page's "Model" details (both pages have one): ``summary`` shown, and a table of the
    model, its progress, its layers and every setting, escaped."""
    config, state, network = checkpoint.config, checkpoint.state, checkpoint.network()
    rows = [("model", describe_model(config)),
            ("vocabulary", f"{len(checkpoint.vocab)} characters"),
            ("parameters", f"{checkpoint.params.flat.size:,}"),
            ("iteration", f"{state.get('iteration', 0):,} of {config.max_iters:,}"),
            ("characters seen", f"{state.get('chars_seen', 0):,}"),
            ("validation loss", loss_text(state.get("last_val_loss"))),
            ("best val. loss", loss_text(state.get("best_val_loss")))]
    rows += [(name, description + f", {count:,} parameters")
             for name, description, count in network.layer_summary()]
    rows += list(config.to_dict().items())
    body = "".join(f"<tr><th>{esc(name)}</th><td>{esc(value)}</td></tr>" for name, value in rows)
    return (f'<details id="model"><summary>Model: {esc(summary)}</summary>'
            f'<table class="settings">{body}</table></details>')


def correlations_html(inspection: Inspection) -> str:
    if not inspection.correlations:
        return ('<p class="note" id="correlations">No feature varies over this text (or no unit '
                'does): there is nothing to correlate.</p>')
    rows = []
    for rank, c in enumerate(inspection.correlations, 1):
        kind = c.name.split(".", 1)[-1]
        rows.append(
            f'<tr><td>{rank}</td><td>{esc(c.feature)}</td>'
            f'<td><button type="button" class="pick" data-name="{esc(c.name)}" '
            f'data-unit="{c.unit}" title="{esc(value_label(kind))}">{esc(c.name)} '
            f'{c.unit}</button></td>'
            f'<td class="r {"pos" if c.r >= 0 else "neg"}">{c.r:+.3f}</td></tr>')
    varying = {c.feature for c in inspection.correlations}
    features = "".join(f"<li><b>{esc(name)}</b>: {esc(meaning)}</li>"
                       for name, meaning in FEATURES.items() if name in varying)
    absent = [name for name in FEATURES if name not in varying]
    absent_note = (f'<p class="note">Constant on this text, so not correlated: '
                   f'{esc(", ".join(absent))}.</p>' if absent else "")
    return (f'<table id="correlations"><thead><tr><th>#</th><th>feature</th><th>unit</th>'
            f'<th>r</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
            f'<details><summary>The features</summary><ul>{features}</ul>{absent_note}'
            f'</details>')


def saturation_html(inspection: Inspection) -> str:
    """One inline SVG scatter per gate kind: a dot per unit at (fraction below 0.1, fraction
    above 0.9), coloured by layer."""
    if not inspection.saturation:
        return ""
    kinds: dict[str, list[str]] = {}
    for name in inspection.saturation:
        kinds.setdefault(name.split(".", 1)[1], []).append(name)
    size, margin = 130, 28
    top, left, bottom, right = 8, margin, 8 + size, margin + size
    plots = []
    for kind, names in kinds.items():
        dots = []
        for name in names:
            layer = int(name.split(".", 1)[0][1:])
            colour = LAYER_COLOURS[(layer - 1) % len(LAYER_COLOURS)]
            below, above = inspection.saturation[name]
            for unit, (x, y) in enumerate(zip(below, above)):
                px, py = left + x * size, top + (1 - y) * size
                dots.append(
                    f'<circle class="pick sat" cx="{px:.1f}" cy="{py:.1f}" r="2.6" '
                    f'fill="{colour}" data-name="{esc(name)}" data-unit="{unit}">'
                    f'<title>{esc(name)} unit {unit}: below 0.1 {x:.0%} of the time, '
                    f'above 0.9 {y:.0%}</title></circle>')
        axes = (f'<rect x="{left}" y="{top}" width="{size}" height="{size}" class="frame"/>'
                f'<line x1="{left}" y1="{top}" x2="{right}" y2="{bottom}" class="diag"/>'
                f'<text x="{left + size / 2}" y="{bottom + 26}" class="axis">fraction &lt; 0.1'
                f'</text><text x="{left - 16}" y="{top + size / 2}" class="axis" '
                f'transform="rotate(-90 {left - 16} {top + size / 2})">fraction &gt; 0.9</text>'
                f'<text x="{left}" y="{bottom + 12}" class="tick">0</text>'
                f'<text x="{right}" y="{bottom + 12}" class="tick">1</text>'
                f'<text x="{left - 4}" y="{top + 4}" class="tick" text-anchor="end">1</text>')
        width, height = right + 8, bottom + 34
        plots.append(
            f'<figure class="sat-plot"><svg xmlns="http://www.w3.org/2000/svg" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{esc(value_label(kind))}">{axes}{"".join(dots)}</svg>'
            f'<figcaption>{esc(value_label(kind))}</figcaption></figure>')
    layers = sorted({int(name.split(".", 1)[0][1:]) for name in inspection.saturation})
    legend = " ".join(f'<span class="swatch" style="background:'
                      f'{LAYER_COLOURS[(layer - 1) % len(LAYER_COLOURS)]}"></span>layer {layer}'
                      for layer in layers)
    return (f'<section id="saturation"><h2>Gate saturation</h2><p class="explain">A dot per '
            f'unit of each gate: the fraction of characters at which it is nearly closed '
            f'(below 0.1, across) against nearly open (above 0.9, up). Top left: open all the '
            f'time; bottom right: closed; on the diagonal: a switch; bottom left: in its middle '
            f'range. Click a dot to show the unit.{" " + legend if len(layers) > 1 else ""}</p>'
            f'<div class="sat-plots">{"".join(plots)}</div></section>')


def render_page(source: PageSource) -> str:
    """The page, as a string, for the text and checkpoint of ``source``."""
    checkpoint = source.checkpoint
    network = checkpoint.network()
    vocab = checkpoint.vocab
    inspection = inspect_text(network, checkpoint.params, source.indices,
                              vocab.decode(source.indices))
    data = page_data(inspection, vocab.chars, network.hidden_size)
    checkpoint_name = shown_name(source.checkpoint_name)
    text_name = shown_name(source.text_name)
    options = "".join(
        f'<option value="{esc(a["name"])}">layer {a["layer"]}: {esc(a["label"])} '
        f'({esc(a["name"])})</option>' for a in data["arrays"])
    head = VIZ_PAGE_SIGNATURE.decode("ascii")
    return f"""{head}<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="charrnn viz">
<title>charrnn viz: {esc(os.path.basename(checkpoint_name))} on {esc(os.path.basename(text_name))}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1 id="title">Inside <code>{esc(checkpoint_name)}</code> reading <code>{esc(text_name)}</code></h1>
{headline_html(inspection, source)}
{model_html(source)}
</header>
<noscript><p class="note">This page draws its text views with JavaScript; turn it on to see them.</p></noscript>
<main>
<section id="surprise">
<h2>Surprise</h2>
<p class="explain">Each character shaded by how surprised the model was to see it,
<code>-log2 p(character | everything before it)</code>: white when it was sure, red when it
was not. Hover over a character (or click it, then use the arrow keys) for the model's top
guesses. The first character is context only.</p>
<div class="legend"><span>0 bits</span><span class="bar surprise-bar"></span><span>8+ bits</span></div>
<div class="text" id="surprise-text" tabindex="0" aria-label="the text, shaded by surprise"></div>
</section>
<section id="units">
<h2>Units</h2>
<p class="explain">The text coloured by one unit's value after each character. Pick a layer's
values and a unit, or click a unit in the table or the gate plots.</p>
<div class="controls">
<label>values <select id="unit-array">{options}</select></label>
<label>unit <input id="unit-index" type="number" min="0" max="{network.hidden_size - 1}" value="0"></label>
<button type="button" id="unit-prev" aria-label="previous unit">&larr;</button>
<button type="button" id="unit-next" aria-label="next unit">&rarr;</button>
<span id="unit-info"></span>
</div>
<div class="legend"><span id="legend-low">-1</span><span class="bar unit-bar"></span><span id="legend-high">+1</span> <span id="legend-note"></span></div>
<div class="text" id="unit-text" tabindex="0" aria-label="the text, coloured by a unit"></div>
</section>
<section id="features">
<h2>Units that follow features of the text</h2>
<p class="explain">For each feature, the units whose values correlate best with it over this
text (Pearson's r; red: the unit rises with the feature, blue: it falls). Click one to show it.</p>
{correlations_html(inspection)}
</section>
{saturation_html(inspection)}
</main>
<div id="tip" role="tooltip" hidden></div>
<script type="application/json" id="{DATA_ELEMENT_ID}">{json_for_script(data)}</script>
<script>{SCRIPT}</script>
</body>
</html>
"""


def write_page(output: str, page: str) -> int:
    """Write ``page`` to ``output`` atomically (OSError if it cannot be written); returns its
    size in bytes."""
    data = page.encode("utf-8")
    with atomic_file(output, "wb") as f:
        f.write(data)
    return len(data)


# The page's stylesheet and script, from the package's asset files (charrnn/assets/).
CSS = page_css("viz.css")
SCRIPT = page_script("viz.js")
