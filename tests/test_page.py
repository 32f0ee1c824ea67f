"""``charrnn page`` without a browser (issue 20): the page holds the export's weights exactly
(as float32), its size is what page.py estimates, too large a model is refused, outputs are
checked as viz's are, everything from the checkpoint is escaped; and the assets the pages are
made of are package files that a built wheel contains.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner

import charrnn.page
from charrnn.cli import cli
from charrnn.model import ModelSpec, Network
from charrnn.model.torch_names import to_torch_state_dict
from charrnn.page import page_bytes_estimate, weight_count
from charrnn.resources import asset_text

from test_export import error_line, make_checkpoint, snapshot

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = ("common.css", "common.js", "page.css", "page.js", "viz.css", "viz.js")
HOSTILE = '</script><img src=x onerror=alert(1)>'
pytestmark = pytest.mark.usefixtures("in_tmp_path")


def run(*args, expect=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def page_json(path) -> dict:
    html = Path(path).read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html,
                      re.DOTALL)
    return json.loads(found.group(1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_page_holds_the_exports_weights(dtype):
    checkpoint = make_checkpoint("m.npz", "gru", 2, dtype)
    result = run("page", "m.npz")
    assert result.stdout == "m.page.html\n"
    assert "wrote m.page.html" in result.stderr
    data = page_json("m.page.html")
    assert data["vocab"] == list(checkpoint.vocab.chars)
    assert data["model"]["cell"] == "gru" and data["model"]["num_layers"] == 2
    floats = np.frombuffer(base64.b64decode(data["weights_data"]), "<f4")
    assert len(floats) == data["weights_count"] == weight_count(checkpoint.network())
    expected = to_torch_state_dict(checkpoint.network(), checkpoint.params)
    assert list(data["weights"]) == list(expected)
    for name, value in expected.items():
        entry = data["weights"][name]
        assert entry["shape"] == list(value.shape)
        got = floats[entry["offset"]:entry["offset"] + value.size].reshape(value.shape)
        assert got.tobytes() == value.astype(np.float32).tobytes(), name


def test_size_estimate_and_the_default_models_size():
    make_checkpoint("m.npz", "lstm", 2, hidden=24)
    run("page", "m.npz", "-q")
    size = os.path.getsize("m.page.html")
    estimate = page_bytes_estimate(load_network("m.npz"))
    assert abs(size - estimate) < 5_000
    default = Network(ModelSpec(65, 256))   # README's figure for the default model
    assert weight_count(default) == default.zeros().flat.size + 256 == 99_393   # + bias_hh
    assert round(page_bytes_estimate(default) / 1e6, 2) == 0.55


def load_network(path):
    from charrnn.checkpoint import load_checkpoint
    return load_checkpoint(path).network()


def test_too_large_a_model_is_refused_before_writing(monkeypatch):
    make_checkpoint("m.npz", "rnn", 1)
    monkeypatch.setattr(charrnn.page, "MAX_PAGE_BYTES", 1000)
    before = snapshot(".")
    line = error_line(run("page", "m.npz", expect=1))
    assert re.search(r"the page would be 0 MB \(\d+ weights\), more than the 0 MB", line)
    assert snapshot(".") == before


@pytest.mark.parametrize("args,pattern", [
    (["-o", "m.npz"], "would overwrite a checkpoint"),
    (["-o", "notes.html"], "is not a page charrnn wrote"),
    (["-o", "folder"], "is a directory"),
    (["--top-k", "999"], "larger than the vocabulary"),
    (["--prompt", "\u2603"], "--prompt has 1 character"),
    (["--top-p", "0"], r"not a number in \(0, 1\]"),
    (["--top-p", "nan"], r"not a number in \(0, 1\]"),     # as sample's --top-p: NaN too
    (["--temperature", "nan"], "not a finite number greater than 0"),
    (["--temperature", "0"], "not a finite number greater than 0"),
])
def test_bad_input_is_one_line_and_touches_nothing(args, pattern):
    make_checkpoint("m.npz", "rnn", 1)
    Path("notes.html").write_text("<p>mine</p>")
    os.mkdir("folder")
    before = snapshot(".")
    result = CliRunner().invoke(cli, ["page", "m.npz", *args])
    assert result.exit_code in (1, 2) and "Traceback" not in result.stderr
    assert re.search(pattern, error_line(result)), result.stderr
    assert snapshot(".") == before


def test_a_page_charrnn_wrote_is_replaced():
    make_checkpoint("m.npz", "rnn", 1)
    run("page", "m.npz", "-o", "p.html", "--prompt", "ab", "-q")
    first = Path("p.html").read_text()
    run("page", "m.npz", "-o", "p.html", "--prompt", "ba", "-q")
    assert Path("p.html").read_text() != first


class Elements(HTMLParser):
    def __init__(self, source):
        super().__init__()
        self.tags, self.textarea = [], None
        self._in_textarea = False
        self.feed(source)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_textarea = tag == "textarea"

    def handle_endtag(self, tag):
        self._in_textarea = False

    def handle_data(self, data):
        if self._in_textarea:
            self.textarea = (self.textarea or "") + data


def test_everything_from_the_checkpoint_is_escaped():
    make_checkpoint("m.npz", "lstm", 1)
    prompt = "\n" + HOSTILE
    name = f"a{HOSTILE}.npz".replace("/", "")
    os.rename("m.npz", name)
    vocab_prompt = "".join(c for c in prompt if c in load_vocab(name))
    run("page", name, "-o", "p.html", "--prompt", vocab_prompt, "-q")
    html = Path("p.html").read_text(encoding="utf-8")
    assert html.count("</script>") == 2 and "<img" not in html
    parsed = Elements(html)
    assert "img" not in parsed.tags
    assert parsed.textarea == "\n" + vocab_prompt   # the first newline is the markup's
    data_text = re.search(r'id="page-data">(.*?)</script>', html, re.DOTALL).group(1)
    assert "<" not in data_text and ">" not in data_text and "&" not in data_text


def load_vocab(path):
    from charrnn.checkpoint import load_checkpoint
    return set(load_checkpoint(path).vocab.chars)


def test_assets_are_package_files_without_closing_tags():
    for name in ASSETS:
        text = asset_text(name)
        assert len(text) > 200 and "</" not in text, name
    from charrnn import viz
    assert asset_text("viz.js") in viz.SCRIPT and asset_text("common.js") in viz.SCRIPT
    assert asset_text("viz.css") in viz.CSS and asset_text("common.css") in viz.CSS


def test_a_built_wheel_contains_the_assets(tmp_path):
    """Build a wheel from a copy of the sources (so the checkout gets no build/ folder)."""
    source = tmp_path / "src"
    shutil.copytree(os.path.join(REPO, "charrnn"), source / "charrnn",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), source / name)
    # Built as pip builds for a user: in an isolated environment with pyproject.toml's
    # build requirements (a fresh venv's setuptools may lack bdist_wheel).
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                           str(tmp_path / "dist"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel, = (tmp_path / "dist").glob("charrnn-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in ASSETS:
            assert f"charrnn/assets/{name}" in names, name
            assert archive.read(f"charrnn/assets/{name}").decode() == asset_text(name)
