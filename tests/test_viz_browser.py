"""A `charrnn viz` page in a real browser: headless Chromium loads it from disk, its script
runs without errors, builds the text views, shows a unit and the top guesses of a character
(pre-selected through the query string, the same code hovering runs), and runs nothing from
the text. Takes a screenshot too.

Runs only where /usr/bin/chromium exists (``apt-get install chromium``); skipped otherwise,
unless CHARRNN_REQUIRE_BROWSER is set, as CI (`.ci/run`, which installs Chromium) does.
"""
from __future__ import annotations

import os
import subprocess
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.config import TrainConfig
from charrnn.data import read_corpus
from charrnn.train import Trainer, run_training

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
HOSTILE = '</script><img src=x onerror="document.title=\'pwned\'">'

if os.environ.get("CHARRNN_REQUIRE_BROWSER") and not os.path.exists(CHROMIUM):
    raise RuntimeError(f"CHARRNN_REQUIRE_BROWSER is set but there is no {CHROMIUM}")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="no Chromium at /usr/bin/chromium (apt-get install chromium)")


def chromium(url: str, profile, *flags: str) -> subprocess.CompletedProcess:
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *flags, url],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


class Dom(HTMLParser):
    """Elements of the dumped DOM, in order: [tag, attributes, text inside, parent]."""

    VOID = {"meta", "input", "rect", "line", "circle", "br", "img"}

    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self.elements, self._stack = [], []
        self.feed(source)

    def handle_starttag(self, tag, attrs):
        element = [tag, dict(attrs), "", self._stack[-1] if self._stack else None]
        self.elements.append(element)
        if tag not in self.VOID:
            self._stack.append(element)

    def handle_endtag(self, tag):
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        for element in self._stack:
            element[2] += data

    def by_id(self, element_id):
        found = [e for e in self.elements if e[1].get("id") == element_id]
        assert len(found) == 1, element_id
        return found[0]

    def with_class(self, name):
        return [e for e in self.elements if name in (e[1].get("class") or "").split()]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("viz-browser")
    text = ("First Citizen:\nBefore we proceed any further, hear me speak.\n"
            f'All:\nSpeak, speak "{HOSTILE}" (now).\n') * 6
    (folder / "corpus.txt").write_text(text, encoding="utf-8")
    config = TrainConfig(cell="lstm", hidden_size=8, seq_length=10, batch_size=4,
                         learning_rate=0.1, max_iters=20, eval_every=10, checkpoint_every=1000,
                         sample_every=0, val_fraction=0.2)
    trainer = Trainer(config, read_corpus(folder / "corpus.txt"))
    run_training(trainer, str(folder / "m.npz"), show_progress=False, log=lambda message: None)
    result = CliRunner().invoke(cli, ["viz", str(folder / "corpus.txt"), str(folder / "m.npz"), "-q"])
    assert result.exit_code == 0, result.stderr
    return folder / "m.corpus.viz.html", len(text)


def test_page_runs_in_chromium(page, tmp_path):
    path, num_chars = page
    url = path.as_uri() + "?char=57&unit=l1.c:3"
    done = chromium(url, tmp_path / "profile", "--enable-logging=stderr", "--v=0", "--dump-dom")
    assert "Uncaught" not in done.stderr, done.stderr[-2000:]
    dom = Dom(done.stdout)
    html = dom.elements[0]
    assert html[0] == "html"
    assert "data-viz-error" not in html[1], html[1]["data-viz-error"]
    assert html[1].get("data-viz-ready") == "1"
    assert float(html[1]["data-load-ms"]) > 0
    # Nothing from the text ran or became an element.
    assert [e for e in dom.elements if e[0] == "img"] == []
    assert dom.by_id("title")[0] == "h1"
    assert "pwned" not in [e for e in dom.elements if e[0] == "title"][0][2]
    # The text views: a span per character in each, holding the text (markup as text).
    views = {}
    for view in ("surprise-text", "unit-text"):
        container = dom.by_id(view)
        views[view] = [e for e in dom.elements if e[3] is container]
        assert len(views[view]) == num_chars
        assert all(e[0] == "span" and e[1]["data-i"] == str(i) for i, e in enumerate(views[view]))
        shown = "".join(e[2] for e in views[view]).replace("\u21b5", "")
        assert HOSTILE in shown and shown.startswith("First Citizen:\nBefore")
    # Every character but the first is shaded; the unit asked for is shown.
    assert all("background-color" in e[1].get("style", "") for e in views["surprise-text"][1:])
    assert all("background-color" in e[1].get("style", "") for e in views["unit-text"][:-1])
    assert dom.by_id("unit-text")[1]["data-unit"] == "l1.c:3"
    assert dom.by_id("unit-array")[0] == "select"
    assert "unit 3" in dom.by_id("unit-info")[2]
    # The character asked for is pinned, and the tooltip shows its top 5 guesses.
    tip = dom.by_id("tip")
    assert "hidden" not in tip[1] and tip[1]["data-i"] == "57"
    assert len(dom.with_class("guess")) == 5
    assert "character 58 of" in tip[2] and "l1.c unit 3" in tip[2]
    assert len([e for e in dom.with_class("pinned")]) == 2   # in both views
    # Gate plots and the ranked units are there.
    assert len([e for e in dom.elements if e[0] == "circle"]) == 3 * 8
    assert dom.with_class("pick")


def test_screenshot(page, tmp_path):
    path, _ = page
    shot = tmp_path / "shot.png"
    chromium(path.as_uri() + "#char=10", tmp_path / "profile", "--window-size=1200,900",
             f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
