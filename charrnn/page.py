"""The page ``charrnn page`` writes: one self-contained HTML file (inline CSS and JavaScript,
no network) holding a model's weights and vocabulary, which writes text with it in the
browser: a prompt, temperature, top-k and top-p, generate and stop, the text as it comes.

The weights are those of ``charrnn export`` (export.export_contents: PyTorch's names and gate
orders), as float32 whatever the model's dtype, little-endian, concatenated and base64-encoded
in the page's JSON data: ``weights`` maps each name to its shape and offset (in floats) in
``weights_data``. charrnn/assets/page.js runs the cells on them (its header gives the
equations). Everything from the checkpoint is escaped as viz.py escapes it: HTML-escaped
where it is written as HTML, and JSON with ``<``, ``>`` and ``&`` written as ``\\u003c``...
inside ``<script type="application/json" id="page-data">``; the script puts text on the page
as text, never as HTML. When the script has run, ``<html data-page-ready="1">``.

Size: 4/3 x 4 bytes per number (base64 of float32) plus about 20 kB: 0.55 MB for the default
model (a vanilla RNN of 256 over 65 characters, 99,393 numbers). A model whose page would
pass MAX_PAGE_BYTES is refused before anything is written.
"""
from __future__ import annotations

import base64
import math
import os
from dataclasses import dataclass

import numpy as np

from . import __version__
from .checkpoint import Checkpoint
from .config import describe_model
from .export import export_contents
from .model import Network
from .model.torch_names import torch_shapes
from .resources import page_css, page_script
from .runfiles import WRITER_PAGE_SIGNATURE
from .viz import esc, json_for_script, loss_text, model_details, shown_name

DATA_ELEMENT_ID = "page-data"
FLOAT_BYTES = 4
PAGE_OVERHEAD_BYTES = 20_000     # markup, script, styles and the model table, about
MAX_PAGE_BYTES = 100_000_000     # larger pages take browsers tens of seconds to open, if at all
WARN_PAGE_BYTES = 20_000_000


class PageError(Exception):
    """The page cannot be made; the message says why in one line."""


@dataclass
class PageSettings:
    """What the page's controls hold when it opens."""
    prompt: str = ""
    length: int = 500
    temperature: float = 1.0
    top_k: int = 0            # 0: every character
    top_p: float = 1.0        # 1: every character


def weight_count(network: Network) -> int:
    """How many numbers the page holds: every entry of the export (torch_shapes)."""
    return sum(math.prod(shape) for shape in torch_shapes(network).values())


def page_bytes_estimate(network: Network) -> int:
    """About the page's size in bytes: base64 of the float32 weights, and the rest."""
    return 4 * math.ceil(weight_count(network) * FLOAT_BYTES / 3) + PAGE_OVERHEAD_BYTES


def check_page_size(network: Network, limit: int | None = None) -> int:
    """The estimated size; PageError if it passes ``limit`` (default MAX_PAGE_BYTES)."""
    limit = MAX_PAGE_BYTES if limit is None else limit
    size = page_bytes_estimate(network)
    if size > limit:
        raise PageError(f"the page would be {size / 1e6:,.0f} MB ({weight_count(network):,} "
                        f"weights), more than the {limit / 1e6:,.0f} MB a browser opens "
                        f"comfortably; use a smaller model (--hidden-size, --num-layers)")
    return size


def page_data(network: Network, params, vocab_chars) -> dict:
    """The JSON the page's script reads: vocabulary, the model's description and the weights
    (see the module docstring)."""
    fields, weights = export_contents(network, params, vocab_chars)
    entries, chunks, offset = {}, [], 0
    for name, value in weights.items():
        entries[name] = {"shape": list(value.shape), "offset": offset}
        chunks.append(np.ascontiguousarray(value, dtype="<f4").tobytes())
        offset += value.size
    return {"vocab": fields["vocab"], "model": fields["model"],
            "charrnn_version": fields["charrnn_version"], "weights": entries,
            "weights_count": offset,
            "weights_data": base64.b64encode(b"".join(chunks)).decode("ascii")}


def model_table(checkpoint: Checkpoint) -> str:
    """The model's description, as the page's "Model" details."""
    config, state = checkpoint.config, checkpoint.state
    return model_details(checkpoint, f"{describe_model(config)}, {len(checkpoint.vocab)} "
                                     f"characters, iteration {state.get('iteration', 0):,}, "
                                     f"validation loss {loss_text(state.get('last_val_loss'))}")


def render_writer_page(checkpoint: Checkpoint, checkpoint_name: str,
                       settings: PageSettings | None = None) -> str:
    """The page, as a string, for ``checkpoint`` (shown as ``checkpoint_name``)."""
    settings = settings or PageSettings()
    network = checkpoint.network()
    data = page_data(network, checkpoint.params, checkpoint.vocab.chars)
    name = shown_name(checkpoint_name)
    head = WRITER_PAGE_SIGNATURE.decode("ascii")
    top_k = settings.top_k
    return f"""{head}<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="charrnn page">
<title>charrnn: {esc(os.path.basename(name))} writes</title>
<style>{page_css("page.css")}</style>
</head>
<body>
<header>
<h1 id="title"><code>{esc(name)}</code> writes</h1>
{model_table(checkpoint)}
</header>
<noscript><p class="note">This page writes with JavaScript; turn it on to use it.</p></noscript>
<main>
<label for="prompt" class="note">Prompt: the text the model reads first (it may be empty)</label>
<textarea id="prompt" rows="3" spellcheck="false">
{esc(settings.prompt)}</textarea>
<div class="controls">
<label>characters <input id="length" type="number" min="0" step="1" value="{settings.length}"></label>
<label>temperature <input id="temperature" type="number" min="0.01" step="0.05" value="{settings.temperature:g}"></label>
<label>top-k (0: all) <input id="top-k" type="number" min="0" max="{len(checkpoint.vocab)}" step="1" value="{top_k}"></label>
<label>top-p <input id="top-p" type="number" min="0.01" max="1" step="0.05" value="{settings.top_p:g}"></label>
<label>seed (empty: random) <input id="seed" type="text" inputmode="numeric" value=""></label>
<button type="button" id="generate">Generate</button>
<button type="button" id="stop" disabled>Stop</button>
</div>
<p id="status" aria-live="polite"></p>
<div id="output" aria-label="the text the model writes"></div>
<p class="explain">Each character is drawn from <code>softmax(logits / temperature)</code>:
below 1 safer and more repetitive, above 1 wilder; top-k keeps the k likeliest characters,
top-p the fewest whose probabilities add up to p. The same seed and settings give the same
text. Characters the model does not know are left out of the prompt.</p>
</main>
<footer>Written by charrnn {esc(__version__)}. The model runs in this page: nothing is fetched
or sent anywhere.</footer>
<script type="application/json" id="{DATA_ELEMENT_ID}">{json_for_script(data)}</script>
<script>{page_script("page.js")}</script>
</body>
</html>
"""
