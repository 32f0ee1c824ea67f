"""What a plain ``charrnn train TEXT`` gives on texts of very different sizes: 30 KB, 1 MB
and 100 MB (the validation loss, the iterations and passes over the text the defaults chose,
and the wall-clock time of the whole command).

The 30 KB text is the start of data/tinyshakespeare.txt, the 1 MB text all of it, the 100 MB
text made as bench_corpus.py makes it (the same text with accents, Chinese and emoji mixed
in). Each is one ``charrnn train`` process with no length option, so the defaults decide:
a time budget of 5 minutes and at most 40 passes over the training text. Options after ``--``
are passed on (``-- --cell gru --num-layers 2`` for the gated cell's table).

Usage:  python benchmarks/bench_defaults.py [--quick] [--sizes 30k,1m,100m] [-- TRAIN OPTIONS]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile

from _common import DEFAULT_CORPUS, machine_lines, print_table, timed_train

from bench_corpus import make_text
from charrnn.checkpoint import load_checkpoint

SIZES = {"k": 1e3, "m": 1e6}


def size_bytes(text: str) -> int:
    return int(float(text[:-1]) * SIZES[text[-1].lower()])


def make_corpus(folder: str, size: int) -> str:
    """A text of about ``size`` bytes: the start of the sample corpus, all of it, or more."""
    path = os.path.join(folder, f"text-{size}.txt")
    with open(DEFAULT_CORPUS, "rb") as f:
        sample = f.read()
    if size <= len(sample):
        with open(path, "wb") as f:
            f.write(sample[:size].decode("utf-8", errors="ignore").encode("utf-8"))
    else:
        make_text(path, size / 1e6)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 30 KB, 100 KB and 300 KB, 4 s each, a tiny model")
    parser.add_argument("--sizes", default="30k,1m,100m")
    parser.add_argument("train_options", nargs="*", help="more options for charrnn train")
    args = parser.parse_args()
    sizes = args.sizes.split(",")
    options = list(args.train_options)
    if args.quick:
        sizes = ["30k", "100k", "300k"]
        options += ["--time", "4s", "--hidden-size", "32"]
    for line in machine_lines():
        print(line)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            text = make_corpus(folder, size_bytes(size))
            checkpoint = os.path.join(folder, f"m-{size}.npz")
            command = [sys.executable, "-m", "charrnn", "train", text, checkpoint, *options]
            wall, _ = timed_train(command)
            saved = load_checkpoint(checkpoint)
            state = saved.state
            val = state.full_val_loss if state.full_val_loss is not None else state.last_val_loss
            best = state.best_val_loss
            rows.append([size, f"{len(saved.vocab)}", f"{state.iteration:,}",
                         f"{state.chars_seen / state.train_chars:.1f}",
                         f"{val / math.log(2):.3f}" if val is not None else "-",
                         f"{best / math.log(2):.3f}" if best is not None else "-",
                         f"{wall:.0f}"])
    print(f"charrnn train TEXT {' '.join(options)}")
    print_table(["text", "V", "iterations", "passes", "val bits/char", "best val bits/char",
                 "wall clock s"], rows)


if __name__ == "__main__":
    main()
