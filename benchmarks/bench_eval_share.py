"""The share of a training run that evaluation takes on a large corpus, before (0.4.0: all of
the held-out text at every evaluation) and after (a fixed sample of at most 131,072 held-out
characters at every evaluation, and all of it once at the end when it has at most
train.FULL_EVAL_MAX_CHARS characters).

A corpus of ``--megabytes`` MB (default 200) is made as bench_corpus.py makes it, read, and
split as training splits it (the last 10% of the text held out). Then, at the default model
and settings: the median time of an iteration, the time of one evaluation of all the held-out
text (before) and of the sample (after), and from them the share of a run's time that goes
to evaluation at --eval-every 500:

    share = evaluation / (evaluation + 500 * iteration)

with, after, the end of a run's one evaluation of all the held-out text spread over a
5-minute run. The figures of a whole run are not timed (an hour, before): the parts are.

Usage:  python benchmarks/bench_eval_share.py [--quick] [--megabytes 200] [-- TRAIN OPTIONS]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from _common import machine_lines, print_table

from bench_corpus import make_text
from charrnn.config import DEFAULT_TIME_BUDGET, TrainConfig
from charrnn.data import read_corpus
from charrnn.threads import set_blas_threads, threads_for
from charrnn.train import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 2 MB corpus, a small model")
    parser.add_argument("--megabytes", type=float, default=200.0)
    parser.add_argument("--cell", default="rnn")
    parser.add_argument("--num-layers", type=int, default=1)
    parser.add_argument("--hidden-size", type=int, default=256)
    args = parser.parse_args()
    megabytes = 2.0 if args.quick else args.megabytes
    hidden = 32 if args.quick else args.hidden_size
    for line in machine_lines():
        print(line)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "big.txt")
        make_text(path, megabytes)
        start = time.perf_counter()
        corpus = read_corpus(path)
        read_seconds = time.perf_counter() - start
    config = TrainConfig.for_new_run(cell=args.cell, num_layers=args.num_layers,
                                     hidden_size=hidden)
    trainer = Trainer(config, corpus)
    set_blas_threads(threads_for(config.batch_size, hidden))
    for _ in range(3):
        trainer.step()
    steps = []
    for _ in range(10 if args.quick else 30):
        clock = time.perf_counter()
        trainer.step()
        steps.append(time.perf_counter() - clock)
    step = statistics.median(steps)
    set_blas_threads(threads_for(32, hidden))
    clock = time.perf_counter()
    trainer.validation_loss(everything=True)
    whole = time.perf_counter() - clock
    clock = time.perf_counter()
    trainer.validation_loss()
    sample = time.perf_counter() - clock
    every = config.eval_every
    before = whole / (whole + every * step)
    run_iterations = DEFAULT_TIME_BUDGET / (step + sample / every)
    final = whole if trainer.scores_all_at_end else 0.0   # too large: the sample stands
    after = (sample * run_iterations / every + final) / DEFAULT_TIME_BUDGET
    print(f"corpus: {megabytes:g} MB, {len(corpus.indices):,} characters (read in "
          f"{read_seconds:.1f} s); held out: {len(trainer.val_indices):,}; evaluation sample: "
          f"{len(trainer.val_sample):,}; model: {args.cell}, {args.num_layers} layer(s), "
          f"H={hidden}; an iteration: {step * 1000:.1f} ms")
    print_table(["evaluations", "characters scored", "seconds each", "share of a run"], [
        ["before: all held out", f"{len(trainer.val_indices):,}", f"{whole:.2f}",
         f"{before * 100:.1f}%"],
        ["after: a fixed sample", f"{len(trainer.val_sample):,}", f"{sample:.2f}",
         f"{after * 100:.1f}% (in a {DEFAULT_TIME_BUDGET:.0f} s run, "
         f"{'with' if final else 'without'} a final one of all held out)"]])
    sys.stdout.flush()


if __name__ == "__main__":
    main()
