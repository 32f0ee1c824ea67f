"""How far ``charrnn eval``'s batched figure is from the exact one-stream cross-entropy.

``charrnn eval`` (and training's validation loss) scores every character but the first of a
text, each predicted from the text before it, with up to 32 streams side by side: stream 0
reads from the start of the text (exact), every other stream starts ``W`` characters before
the segment it scores (charrnn.data.EVAL_WARMUP) so that its state has read the text just
before it. The exact figure is the same text read by one stream from its first character to
its last (``score_text(..., num_streams=1)``), which is what the batched figure approximates.

For each model, on the held-out Shakespeare (the last 10% of data/tinyshakespeare.txt, as
training holds it out) and on short texts (its first ``--short-chars`` characters), this prints
the exact and the batched figure, their difference, and the time each took; then the
difference for other warm-ups on the held-out text, the evidence for the chosen W.

Usage:
    python benchmarks/eval_exactness.py --checkpoint /tmp/ev/m.npz --checkpoint /tmp/ev/gru.npz
    python benchmarks/eval_exactness.py            # trains both models first (~10 minutes)
    python benchmarks/eval_exactness.py --quick    # a tiny model, seconds (a smoke test)

Models as in README: ``charrnn train data/tinyshakespeare.txt --checkpoint /tmp/ev/m.npz
--max-iters 1500 --threads 1 -q`` (add ``--cell gru`` for a gated cell).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from _common import DEFAULT_CORPUS, machine_lines, print_table

from charrnn.checkpoint import load_checkpoint
from charrnn.data import EVAL_WARMUP, eval_segments, read_corpus, split_validation
from charrnn.evaluate import score_text
from charrnn.threads import set_blas_threads


def train_model(folder: str, cell: str, iters: int, extra: list[str]) -> str:
    path = os.path.join(folder, f"{cell}.npz")
    command = [sys.executable, "-m", "charrnn", "train", DEFAULT_CORPUS, "--checkpoint", path,
               "--cell", cell, "--max-iters", str(iters), "--threads", "1", "-q", *extra]
    print(f"training: {' '.join(command[2:])}", file=sys.stderr, flush=True)
    subprocess.run(command, check=True)
    return path


def timed_score(network, params, indices, **layout):
    start = time.perf_counter()
    score = score_text(network, params, indices, **layout)
    return score, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", default=[],
                        help="a model trained on data/tinyshakespeare.txt (repeat for more); "
                             "default: train a vanilla and a GRU model for 1,500 iterations")
    parser.add_argument("--short-chars", default="4096,16384",
                        help="lengths of the short texts, the held-out part's first characters "
                             "(comma-separated)")
    parser.add_argument("--warmups", default="0,16,64,128,256,512",
                        help="warm-ups to compare on the held-out text (comma-separated)")
    parser.add_argument("--quick", action="store_true",
                        help="train a tiny model for 100 iterations, short texts: a smoke test")
    args = parser.parse_args()
    set_blas_threads(1)   # the same products, whatever the machine: a fair timing

    with tempfile.TemporaryDirectory() as folder:
        checkpoints = list(args.checkpoint)
        if args.quick:
            checkpoints = [train_model(folder, "rnn", 100, ["--hidden-size", "32"])]
            args.short_chars = "5000"
        elif not checkpoints:
            # Adagrad for both, as README's figures were measured (the GRU's default is Adam)
            checkpoints = [train_model(folder, cell, 1500, ["--optimizer", "adagrad"])
                           for cell in ("rnn", "gru")]
        for line in machine_lines():
            print(line)
        rows, sweep_rows = [], []
        warmups = [int(w) for w in args.warmups.split(",") if w.strip()]
        for path in checkpoints:
            checkpoint = load_checkpoint(path)
            network, params = checkpoint.network(), checkpoint.params
            indices = read_corpus(DEFAULT_CORPUS, checkpoint.config.encoding,
                                  vocab=checkpoint.vocab).indices
            held_out = split_validation(indices, 0.1)[1]
            if args.quick:
                held_out = held_out[:20_000]
            texts = [("held-out 10%", held_out)] + [
                (f"first {int(n):,}", held_out[:int(n)]) for n in args.short_chars.split(",")]
            model = f"{checkpoint.config.cell} H={checkpoint.config.hidden_size}"
            for name, text in texts:
                exact, exact_s = timed_score(network, params, text, num_streams=1)
                batched, batched_s = timed_score(network, params, text)
                layout = eval_segments(len(text))
                diff = batched.nats_per_char - exact.nats_per_char
                rows.append([model, name, f"{len(text):,}", f"{batched.count:,}",
                             f"{layout.num_streams}", f"{exact.nats_per_char:.6f}",
                             f"{batched.nats_per_char:.6f}", f"{diff:+.1e}",
                             f"{exact_s:.2f}", f"{batched_s:.2f}"])
                if name.startswith("held-out"):
                    for warmup in warmups:
                        score = score_text(network, params, text, warmup=warmup)
                        sweep_rows.append([model, f"{warmup}",
                                           f"{score.nats_per_char - exact.nats_per_char:+.1e}"])
        print(f"\nexact (one stream) and batched (charrnn eval, W = {EVAL_WARMUP}) figures, "
              f"nats/char; seconds with one BLAS thread")
        print_table(["model", "text", "chars", "scored", "streams", "exact", "batched",
                     "batched - exact", "exact s", "batched s"], rows)
        print("\nbatched - exact on the held-out text, by warm-up W (nats/char)")
        print_table(["model", "W", "batched - exact"], sweep_rows)


if __name__ == "__main__":
    main()
