"""How big and how fast a `charrnn page` is in headless Chromium: the page's size, how long it
takes to open (its script has run: the weights decoded, the model built), and how many
characters per second its JavaScript writes; and a screenshot of the page after it wrote.

    python benchmarks/page_speed.py CHECKPOINT.npz [CHECKPOINT.npz ...] [--chars 2000]
                                    [--runs 3] [--screenshot shot.png --prompt 'ROMEO:']
    python benchmarks/page_speed.py --quick      # a tiny random model, a few hundred chars

Writing speed is ``charrnnPage.generate`` (the loop the page's Generate button runs, without
drawing) timed with performance.now() inside the page: the median of --runs runs of --chars
characters after the prompt, each in a fresh page. Needs Chromium (``apt-get install
chromium``); drives it over the DevTools protocol with tests/chromium.py.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from chromium import CHROMIUM, Browser  # noqa: E402


def write_page(checkpoint: str, output: str, prompt: str) -> None:
    subprocess.run([sys.executable, "-m", "charrnn", "page", checkpoint, "-o", output, "-q",
                    "--prompt", prompt], check=True, stdout=subprocess.DEVNULL)


def tiny_checkpoint(folder: str) -> str:
    """A small random 2-layer GRU, saved as a checkpoint (for --quick)."""
    from charrnn.checkpoint import Checkpoint, save_checkpoint
    from charrnn.config import TrainConfig
    from charrnn.data import Vocabulary
    config = TrainConfig(cell="gru", num_layers=2, hidden_size=32, batch_size=2)
    vocab = Vocabulary.from_text("ROMEO: the quick brown fox jumps over the lazy dog.\n")
    from charrnn.model import Network
    from charrnn.optim import OPTIMIZERS
    network = Network(config.model_spec(len(vocab)))
    params = network.init_params(np.random.default_rng(0), 0.3)
    path = os.path.join(folder, "tiny.npz")
    slots = {slot: params.zeros_like() for slot in OPTIMIZERS[config.optimizer].SLOTS}
    save_checkpoint(path, Checkpoint(config, vocab, params, slots, network.zero_state(2),
                                     {"iteration": 0, "position": 0, "chars_seen": 0,
                                      "smooth_loss": 1.0, "elapsed_seconds": 0.0}))
    return path


def measure(page: str, chars: int, prompt: str, runs: int) -> dict:
    loads, rates = [], []
    for _ in range(runs):
        with Browser() as browser:
            browser.open("file://" + os.path.abspath(page))
            loads.append(float(browser.evaluate(
                "document.documentElement.getAttribute('data-load-ms')")))
            rates.append(browser.evaluate(
                "(function () { var t = performance.now(); charrnnPage.generate({prompt: "
                f"{json.dumps(prompt)}, length: {chars}, seed: 1}}); "
                f"return {chars} / ((performance.now() - t) / 1000); }})()"))
    return {"size": os.path.getsize(page), "load_ms": statistics.median(loads),
            "chars_per_s": statistics.median(rates)}


def screenshot(page: str, output: str, chars: int) -> None:
    with Browser(window_size="1100,800") as browser:
        browser.open("file://" + os.path.abspath(page))
        browser.evaluate(f"document.getElementById('length').value = '{chars}';"
                         "document.getElementById('seed').value = '1';"
                         "document.getElementById('generate').click()")
        browser.wait_for("document.getElementById('output').getAttribute('data-done') === '1'")
        browser.screenshot(output)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="*", help="checkpoints to put in pages")
    parser.add_argument("--chars", type=int, default=2000, help="characters per timed run")
    parser.add_argument("--runs", type=int, default=3, help="fresh pages per checkpoint")
    parser.add_argument("--prompt", default="ROMEO:", help="the prompt (in the model's vocabulary)")
    parser.add_argument("--screenshot", help="save a screenshot of the first checkpoint's page")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny random model, 300 characters, one run (a smoke test)")
    args = parser.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        print(f"no Chromium at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="charrnn-page-speed-") as folder:
        checkpoints = args.checkpoints
        if args.quick:
            checkpoints, args.chars, args.runs = [tiny_checkpoint(folder)], 300, 1
        if not checkpoints:
            parser.error("give a checkpoint, or --quick")
        print(f"{'checkpoint':<28} {'page MB':>8} {'open ms':>8} {'chars/s':>9}")
        print("-" * 56)
        for i, checkpoint in enumerate(checkpoints):
            page = os.path.join(folder, f"{i}.page.html")
            write_page(checkpoint, page, args.prompt)
            result = measure(page, args.chars, args.prompt, args.runs)
            print(f"{os.path.basename(checkpoint):<28} {result['size'] / 1e6:>8.2f} "
                  f"{result['load_ms']:>8.0f} {result['chars_per_s']:>9,.0f}")
            if i == 0 and args.screenshot:
                screenshot(page, args.screenshot, 400)
                print(f"screenshot: {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
