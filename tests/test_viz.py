"""``charrnn viz`` (issue 11): the page is parsed with html.parser and its embedded data checked
against the model — per-character probabilities against the forward pass, unit values against
the states a character-at-a-time run of the network reaches, the headline against
``charrnn eval`` — for every cell; escaping of hostile text; --max-chars; bad input.
"""
from __future__ import annotations

import json
import math
import os
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.checkpoint import load_checkpoint
from charrnn.cli import cli
from charrnn.config import TrainConfig
from charrnn.data import read_corpus
from charrnn.inspection import correlate, gate_saturation, text_features, top_guesses, UnitValues
from charrnn.runfiles import VIZ_PAGE_SIGNATURE
from charrnn.train import Trainer, run_training
from charrnn.viz import dequantize

HOSTILE = '</script><img src=x onerror=alert(1)>'
LINES = ["The quick brown fox (a red one) jumps over the lazy dog.",
         'She said "to be, or not to be" & left at 10:45.',
         "ROMEO: all that glitters is not gold?",
         "    indented line {with braces} and [brackets]",
         f'He typed "{HOSTILE}" and nothing ran.']
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3",
                "p", "b", "code", "span", "details", "summary", "table", "thead", "tbody", "tr",
                "th", "td", "noscript", "main", "section", "div", "label", "select", "option",
                "input", "button", "ul", "li", "figure", "figcaption", "svg", "rect", "line",
                "text", "circle", "script"}


def make_text(num_lines: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return "\n".join(LINES[i] for i in rng.integers(0, len(LINES), num_lines)) + "\n"


CELLS = {"rnn": dict(cell="rnn", dtype="float64"),
         "lstm": dict(cell="lstm", num_layers=2),          # float32, two layers
         "gru": dict(cell="gru", dtype="float64")}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A briefly trained model of each cell, on a text holding quotes, brackets and HTML."""
    folder = tmp_path_factory.mktemp("viz")
    text = make_text(120, seed=1)
    (folder / "corpus.txt").write_text(text, encoding="utf-8")
    paths = {}
    for name, settings in CELLS.items():
        config = TrainConfig(hidden_size=8, seq_length=10, batch_size=4, learning_rate=0.1,
                             max_iters=40, eval_every=20, checkpoint_every=1000, sample_every=0,
                             val_fraction=0.2, random_seed=5, **settings)
        trainer = Trainer(config, read_corpus(folder / "corpus.txt"))
        path = folder / f"{name}.npz"
        run_training(trainer, str(path), show_progress=False, log=lambda message: None)
        paths[name] = path
    return folder, text, paths


class Page(HTMLParser):
    """The tags of a page, the text of elements by id, and its embedded JSON."""

    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.attributes, self.text_by_id = [], [], {}
        self._open_ids = []   # (id, depth) of elements whose text is being collected
        self._depth = 0
        self._in_data = False
        self.data_source = None
        self.feed(source)
        self.close()
        self.data = json.loads(self.data_source)

    VOID = {"meta", "input", "rect", "line", "circle", "br"}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.attributes.append((tag, attrs))
        if tag == "script" and attrs.get("type") == "application/json":
            assert attrs.get("id") == "viz-data"
            self._in_data = True
        if tag in self.VOID:
            return
        self._depth += 1
        if "id" in attrs:
            self._open_ids.append((attrs["id"], self._depth))
            self.text_by_id[attrs["id"]] = ""

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        self._open_ids = [(i, d) for i, d in self._open_ids if d < self._depth]
        self._depth -= 1
        self._in_data = False

    def handle_data(self, data):
        if self._in_data:
            assert self.data_source is None, "two data blocks"
            self.data_source = data
        for element_id, _ in self._open_ids:
            self.text_by_id[element_id] += data


def run(*args, expect=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
    return result


def write_page(tmp_path, text: str, checkpoint, *options, name="page.html") -> tuple[Page, object]:
    text_file = tmp_path / "shown.txt"
    text_file.write_text(text, encoding="utf-8")
    output = tmp_path / name
    result = run("viz", text_file, checkpoint, "-o", output, *options)
    assert result.stdout == f"{output}\n"   # stdout: the path, and nothing else
    source = output.read_text(encoding="utf-8")
    assert source.encode("utf-8").startswith(VIZ_PAGE_SIGNATURE)
    return Page(source), result


def eval_numbers(text_file, checkpoint, *options) -> dict:
    stdout = run("eval", text_file, checkpoint, "-q", *options).stdout
    match = re.fullmatch(r"([0-9.]+) bits/char  ([0-9.]+) nats/char  perplexity ([0-9.]+)  "
                         r"\(([0-9,]+) characters scored(?:, ([0-9,]+) unknown skipped)?\)\n", stdout)
    assert match, stdout
    return {"nats": match.group(2), "bits": match.group(1), "count": match.group(4),
            "skipped": match.group(5)}


def headline(page: Page) -> dict:
    bits = re.fullmatch(r"([0-9.]+) bits/char", page.text_by_id["headline-bits"])
    nats = re.fullmatch(r"([0-9.]+) nats/char", page.text_by_id["headline-nats"])
    assert bits and nats, page.text_by_id["headline"]
    return {"bits": bits.group(1), "nats": nats.group(1), "count": page.text_by_id["headline-count"]}


def unit_values(page: Page) -> dict[str, np.ndarray]:
    data = page.data
    return {a["name"]: dequantize(a["lo"], a["hi"], a["data"], data["hidden_size"])
            for a in data["arrays"]}


def stepped(checkpoint, indices) -> tuple[np.ndarray, list[list[tuple]]]:
    """The network run a character at a time (the sampling path, not trace's): the
    probabilities of the character after each one, (N-1, V), and the state of every layer
    after each character but the last, [step][layer] = (h,) or (h, c)."""
    stream = checkpoint.network().stream(checkpoint.params)
    probs, states = [], []
    for t, index in enumerate(indices):
        logits = np.asarray(stream.logits_scaled() + stream.by_scaled, dtype=np.float64)
        if t > 0:
            e = np.exp(logits - logits.max())
            probs.append(e / e.sum())
        if t == len(indices) - 1:
            break
        stream.feed(int(index))
        states.append([tuple(np.array(part, dtype=np.float64) for part in layer)
                       for layer in stream.states])
    return np.array(probs), states


@pytest.mark.parametrize("cell", list(CELLS))
def test_page_data_is_the_model(models, tmp_path, cell):
    folder, text, paths = models
    checkpoint = load_checkpoint(paths[cell])
    network = checkpoint.network()
    shown = text[:700]
    page, _ = write_page(tmp_path, shown, paths[cell])
    data = page.data
    indices = checkpoint.vocab.encode(shown)
    assert data["vocab"] == list(checkpoint.vocab.chars)
    assert data["indices"] == indices.tolist()

    # Per-character probabilities: exactly those of the forward pass.
    probs, values = network.trace(checkpoint.params, indices)
    assert data["p"] == probs[np.arange(len(indices) - 1), indices[1:]].tolist()
    # and, to rounding, those of the network run a character at a time
    tolerance = 1e-9 if checkpoint.config.dtype == "float64" else 2e-5
    stepped_probs, steps = stepped(checkpoint, indices)
    assert np.allclose(data["p"], stepped_probs[np.arange(len(indices) - 1), indices[1:]],
                       rtol=tolerance, atol=0)
    K = data["k"]
    assert K == 5
    top = np.array(data["top_indices"]).reshape(-1, K)
    assert np.array_equal(top, np.argsort(-probs, axis=1, kind="stable")[:, :K])
    assert np.allclose(np.array(data["top_probs"]).reshape(-1, K),
                       np.take_along_axis(probs, top, axis=1), rtol=1e-4)
    ranks = np.array(data["rank"])
    for t in range(len(indices) - 1):
        expected = int(np.flatnonzero(top[t] == indices[t + 1])[0]) + 1 if indices[t + 1] in top[t] else 0
        assert ranks[t] == expected

    # Every unit's values, as trace gives them, to within the page's one-byte resolution...
    shown_values = unit_values(page)
    assert set(shown_values) == set(values)
    expected_names = {"rnn": {"l1.h"}, "gru": {"l1.h", "l1.r", "l1.z", "l1.n"},
                      "lstm": {f"l{k}.{n}" for k in (1, 2) for n in "hcifog"}}[cell]
    assert set(values) == expected_names
    for name, array in values.items():
        array = array.astype(np.float64)
        spread = array.max(axis=0) - array.min(axis=0)
        assert np.all(np.abs(shown_values[name] - array) <= spread / 510 + 1e-7), name
        entry = next(a for a in data["arrays"] if a["name"] == name)
        assert np.array_equal(entry["lo"], array.min(axis=0))
        assert np.array_equal(entry["hi"], array.max(axis=0))
    # ...and they are the states the network reaches one character at a time.
    for layer in range(checkpoint.config.num_layers):
        h = np.array([step[layer][0] for step in steps])
        assert np.allclose(values[f"l{layer + 1}.h"], h, atol=tolerance)
        if cell == "lstm":
            c = np.array([step[layer][1] for step in steps])
            assert np.allclose(values[f"l{layer + 1}.c"], c, atol=tolerance)

    # The headline is what `charrnn eval` prints for the same text.
    expected = eval_numbers(tmp_path / "shown.txt", paths[cell])
    assert headline(page) == {k: expected[k] for k in ("bits", "nats", "count")}
    assert "headline-trace" not in page.text_by_id   # one stream: the same figure
    assert "cut-note" not in page.text_by_id

    # Gate saturation: a dot per unit of each [0, 1] gate, none for a vanilla RNN.
    circles = [attrs for tag, attrs in page.attributes if tag == "circle"]
    gates = {"rnn": [], "gru": ["l1.r", "l1.z"],
             "lstm": [f"l{k}.{n}" for k in (1, 2) for n in "ifo"]}[cell]
    assert sorted({c["data-name"] for c in circles}) == sorted(gates)
    assert len(circles) == len(gates) * checkpoint.config.hidden_size
    assert ("saturation" in page.text_by_id) == bool(gates)
    ranges = {a["name"]: a["range"] for a in data["arrays"]}
    for name in gates:
        dots = [c for c in circles if c["data-name"] == name]
        assert [int(c["data-unit"]) for c in dots] == list(range(checkpoint.config.hidden_size))
        assert ranges[name] == "unit"
    assert all(ranges[name] != "unit" for name in values if name not in gates)
    # The ranked units point at real arrays and units.
    picks = [attrs for tag, attrs in page.attributes if tag == "button" and "pick" in attrs.get("class", "")]
    assert picks
    for attrs in picks:
        assert attrs["data-name"] in values and 0 <= int(attrs["data-unit"]) < checkpoint.config.hidden_size
    assert data["selected"] == {"name": picks[0]["data-name"], "unit": int(picks[0]["data-unit"])}


def test_headline_agrees_with_eval_on_a_long_text(models, tmp_path):
    """Past 2,048 characters eval scores several streams side by side; the headline is still
    eval's figure, and the exact one-stream figure is shown beside it when they differ."""
    folder, text, paths = models
    shown = make_text(80, seed=7)
    assert len(shown) > 2100
    page, result = write_page(tmp_path, shown, paths["rnn"], "--max-chars", 5000)
    assert result.stderr == ""
    assert headline(page) == {k: v for k, v in eval_numbers(tmp_path / "shown.txt", paths["rnn"]).items()
                              if k in ("bits", "nats", "count")}
    p = np.array(page.data["p"])
    exact_bits = -np.log(p).mean() / math.log(2)
    if "headline-trace" in page.text_by_id:
        assert f"{exact_bits:.4f} bits/char" in page.text_by_id["headline-trace"]
    else:
        assert headline(page)["bits"] == f"{exact_bits:.4f}"
        assert headline(page)["count"] == f"{len(shown) - 1:,}"


def test_hostile_text_renders_as_text(models, tmp_path):
    folder, text, paths = models
    shown = f'He said "{HOSTILE}" & left <img src=x>.\n'
    assert HOSTILE in shown
    page, _ = write_page(tmp_path, shown, paths["gru"])
    assert set(page.tags) <= ALLOWED_TAGS
    assert "img" not in page.tags
    assert page.tags.count("script") == 2   # the data and the page's own script
    # The data block parsed as JSON (Page did it) and holds the text exactly.
    assert "".join(page.data["vocab"][i] for i in page.data["indices"]) == shown
    source = (tmp_path / "page.html").read_text(encoding="utf-8")
    block = source.split('<script type="application/json" id="viz-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in block and ">" not in block and "&" not in block
    assert HOSTILE not in source and "<img" not in source


def test_hostile_names_and_inline_text_are_escaped(models, tmp_path):
    folder, text, paths = models
    hostile_dir = tmp_path / "<img src=x onerror=alert(2)>"
    hostile_dir.mkdir()
    checkpoint = hostile_dir / "m<script>.npz"
    checkpoint.write_bytes(paths["lstm"].read_bytes())
    output = tmp_path / "inline.html"
    result = run("viz", "--text", f'say "{HOSTILE}"\n', checkpoint, "-o", output)
    assert result.stdout == f"{output}\n"
    page = Page(output.read_text(encoding="utf-8"))
    assert set(page.tags) <= ALLOWED_TAGS and "img" not in page.tags
    assert page.tags.count("script") == 2
    assert str(checkpoint) in page.text_by_id["title"]   # shown, as text
    source = output.read_text(encoding="utf-8")
    assert "<img" not in source and "m<script>" not in source
    assert "".join(page.data["vocab"][i] for i in page.data["indices"]) == f'say "{HOSTILE}"\n'


def test_max_chars_cuts_the_text_with_a_note(models, tmp_path):
    folder, text, paths = models
    page, result = write_page(tmp_path, text, paths["rnn"], "--max-chars", 300)
    assert len(page.data["indices"]) == 300
    assert result.stderr.count("\n") == 1
    assert "first 300" in result.stderr and f"{len(text):,}" in result.stderr
    assert "cut-note" in page.text_by_id
    quiet = run("viz", tmp_path / "shown.txt", paths["rnn"], "-o", tmp_path / "page.html",
                "--max-chars", 300, "-q")
    assert quiet.stderr == ""


def test_default_output_is_beside_the_checkpoint(models, tmp_path):
    folder, text, paths = models
    copy = tmp_path / "m.npz"
    copy.write_bytes(paths["rnn"].read_bytes())
    (tmp_path / "m.best.npz").write_bytes(paths["rnn"].read_bytes())
    (tmp_path / "t.txt").write_text(text[:200], encoding="utf-8")
    assert run("viz", tmp_path / "t.txt", copy).stdout == f"{tmp_path / 'm.t.viz.html'}\n"
    assert (run("viz", tmp_path / "t.txt", copy, "--best").stdout
            == f"{tmp_path / 'm.best.t.viz.html'}\n")
    # A page we wrote may be rewritten.
    assert (run("viz", tmp_path / "t.txt", "--checkpoint", copy).stdout
            == f"{tmp_path / 'm.t.viz.html'}\n")


def test_each_text_gets_a_page_of_its_own_by_default(models, tmp_path):
    """A second text does not replace the first text's page: the default name carries the
    text's name, or an inline text's first words (a hash where it has none)."""
    folder, text, paths = models
    copy = tmp_path / "m.npz"
    copy.write_bytes(paths["rnn"].read_bytes())
    for name in ("first.txt", "second.txt"):
        (tmp_path / name).write_text(text[:200], encoding="utf-8")
    first = run("viz", tmp_path / "first.txt", copy).stdout.strip()
    second = run("viz", tmp_path / "second.txt", copy).stdout.strip()
    assert (first, second) == (str(tmp_path / "m.first.viz.html"),
                               str(tmp_path / "m.second.viz.html"))
    assert os.path.isfile(first) and os.path.isfile(second)
    words = text[:40]
    inline = run("viz", "--text", words, copy).stdout.strip()
    expected = re.sub(r"[^a-z0-9]+", "-", words.lower()).strip("-")[:24].rstrip("-")
    assert inline == str(tmp_path / f"m.{expected}.viz.html")


def test_unknown_characters(models, tmp_path):
    folder, text, paths = models
    (tmp_path / "odd.txt").write_text("the fox \u2603 jumps\n", encoding="utf-8")
    output = tmp_path / "odd.html"
    result = run("viz", tmp_path / "odd.txt", paths["rnn"], "-o", output, expect=1)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "--skip-unknown" in result.stderr
    assert "'\u2603'" in result.stderr
    assert not output.exists()
    result = run("viz", tmp_path / "odd.txt", paths["rnn"], "-o", output, "--skip-unknown")
    page = Page(output.read_text(encoding="utf-8"))
    assert "1 unknown skipped" in page.text_by_id["headline"]
    assert eval_numbers(tmp_path / "odd.txt", paths["rnn"], "--skip-unknown")["skipped"] == "1"
    result = run("viz", "--text", "a \u2603", paths["rnn"], "-o", output, expect=1)
    assert result.stderr.count("\n") == 1 and "--text has 1 character(s)" in result.stderr


@pytest.mark.parametrize("case", ["missing checkpoint", "output is the checkpoint",
                                  "output is an npz", "output is another file", "output is a folder",
                                  "output is the text", "missing text", "no text", "text and file",
                                  "one character", "max chars 1", "max chars too many",
                                  "output folder missing"])
def test_bad_input_is_one_line(models, tmp_path, case):
    folder, text, paths = models
    text_file = tmp_path / "t.txt"
    text_file.write_text(text[:100], encoding="utf-8")
    other = tmp_path / "notes.html"
    other.write_text("<p>my notes</p>", encoding="utf-8")
    model = tmp_path / "m.npz"
    model.write_bytes(paths["rnn"].read_bytes())
    before = model.read_bytes()
    args = {"missing checkpoint": [text_file, tmp_path / "nope.npz"],
            "output is the checkpoint": [text_file, model, "-o", model],
            "output is an npz": [text_file, model, "-o", tmp_path / "x.npz"],
            "output is another file": [text_file, model, "-o", other],
            "output is a folder": [text_file, model, "-o", tmp_path],
            "output is the text": [text_file, model, "-o", text_file],
            "missing text": [tmp_path / "nope.txt", model],
            "no text": ["--checkpoint", model],
            "text and file": [text_file, model, "--text", "hello"],
            "one character": ["--text", "a", model],
            "max chars 1": [text_file, model, "--max-chars", 1],
            "max chars too many": [text_file, model, "--max-chars", 10**9],
            "output folder missing": [text_file, model, "-o", tmp_path / "no" / "p.html"]}[case]
    result = CliRunner().invoke(cli, ["viz", *map(str, args)])
    output = result.stdout + result.stderr
    assert "Traceback" not in output and result.exit_code != 0, output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    # 2 for a usage error, 1 for others: one line either way
    assert result.exit_code in (1, 2) and len(lines) == 1 and lines[0].startswith("Error:"), lines
    assert model.read_bytes() == before
    assert other.read_text(encoding="utf-8") == "<p>my notes</p>"
    assert text_file.read_text(encoding="utf-8") == text[:100]
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".viz.html")]


# --------------------------------------------------------------------------- the maths alone

def test_text_features():
    f = text_features('ab "c(d)"\n  Xy 9')
    assert f["inside quotes"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert f["inside brackets"].tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert f["position in line"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4]
    assert f["newline"].tolist() == [0] * 9 + [1] + [0] * 5
    assert f["start of word"].tolist() == [1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0]
    assert f["upper case"].tolist() == [0] * 12 + [1, 0, 0]
    assert f["indentation"].tolist() == [0] * 10 + [1, 1, 0, 0, 0]
    assert f["position in word"].tolist() == [1, 2, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 2, 0]
    assert len(f["digit"]) == 15 and f["digit"].sum() == 0   # the last character is not read


def test_correlate_finds_the_unit_that_follows_a_feature(rng):
    feature = (rng.random(500) < 0.3).astype(float)
    values = rng.standard_normal((500, 6)) * 0.1
    values[:, 4] += feature          # unit 4 follows it
    values[:, 2] -= 0.5 * feature    # unit 2 falls with it, less cleanly
    values[:, 5] = 0.25              # a unit that never changes
    found = correlate([UnitValues("l1.h", values, "free")], {"f": feature, "flat": np.ones(500)},
                      per_feature=2)
    assert [(c.feature, c.unit) for c in found] == [("f", 4), ("f", 2)]
    assert found[0].r == pytest.approx(np.corrcoef(values[:, 4], feature)[0, 1])
    assert found[1].r < 0


def test_top_guesses_and_saturation():
    probs = np.array([[0.1, 0.5, 0.1, 0.3], [0.25, 0.25, 0.25, 0.25]])
    order, top = top_guesses(probs, 3)
    assert order.tolist() == [[1, 3, 0], [0, 1, 2]]
    assert top.tolist() == [[0.5, 0.3, 0.1], [0.25, 0.25, 0.25]]
    assert top_guesses(probs, 9)[0].shape == (2, 4)
    below, above = gate_saturation(np.array([[0.05, 0.5], [0.95, 0.5], [0.0, 0.99], [0.5, 0.5]]))
    assert below.tolist() == [0.5, 0.0] and above.tolist() == [0.25, 0.25]
