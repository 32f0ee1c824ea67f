"""Validation loss of one training setting: how the defaults were chosen.

Trains a model on the corpus with TrainConfig's defaults changed by ``name=value``
arguments, for a number of iterations (or seconds), and prints the validation loss at up to
eight points along the way and once more at the end (nats/char, on the held-out end of the
text, --val-fraction of it). Nothing is saved. Compare settings by running two at once, each with one BLAS thread (the default here),
so that both see the same machine:

    python benchmarks/tune.py learning_rate=0.07 &
    python benchmarks/tune.py learning_rate=0.03 warmup_fraction=0 decay_fraction=0 &

Usage:  python benchmarks/tune.py [--iters N | --seconds S] [--threads N] [name=value ...]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time

from _common import DEFAULT_CORPUS

from charrnn.config import TrainConfig
from charrnn.data import read_corpus
from charrnn.threads import set_blas_threads
from charrnn.train import Trainer

REPORTS = 8   # validation losses printed along the way


def parse_setting(text: str) -> tuple[str, object]:
    """``hidden_size=128`` -> ("hidden_size", 128), typed like the TrainConfig field."""
    name, _, value = text.partition("=")
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    if name not in fields or not value:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected name=value with a name from {', '.join(sorted(fields))}")
    kind = type(getattr(TrainConfig(), name))
    try:
        return name, kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {name} takes a {kind.__name__}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--iters", type=int, help="iterations to train [default: max_iters]")
    budget.add_argument("--seconds", type=float,
                        help="train for this long instead (the cool-down still ends at max_iters)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads [default: 1]")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--quick", action="store_true", help="a tiny model for a few seconds")
    parser.add_argument("settings", nargs="*", type=parse_setting, metavar="name=value")
    args = parser.parse_args(argv)

    settings = dict(args.settings)
    if args.quick:
        settings = {"hidden_size": 16, "max_iters": 200, **settings}
    if args.iters is not None:
        # The schedule's phases are fractions of max_iters: train exactly that many.
        settings["max_iters"] = args.iters
    try:
        config = TrainConfig.for_new_run(**settings)
    except ValueError as error:
        parser.error(str(error))
    set_blas_threads(args.threads)
    trainer = Trainer(config, read_corpus(args.corpus, config.encoding))
    trainer.blas_threads = args.threads

    start = time.perf_counter()

    def progress() -> float:
        """The fraction of the budget used: of the seconds if given, else of the iterations."""
        if args.seconds is not None:
            return (time.perf_counter() - start) / args.seconds
        return trainer.iteration / config.max_iters

    reports, val = 0, math.nan
    while progress() < 1 and trainer.iteration < config.max_iters:
        trainer.step()
        if progress() >= (reports + 1) / REPORTS:
            while progress() >= (reports + 1) / REPORTS:   # (a long step can pass several)
                reports += 1
            val = trainer.validation_loss()
            print(f"iteration {trainer.iteration:>6}  {time.perf_counter() - start:6.0f} s  "
                  f"lr {trainer.next_learning_rate():.4f}  train {trainer.smooth_loss:.4f}  "
                  f"val {val:.4f}", flush=True)
    seconds = time.perf_counter() - start
    if reports < REPORTS:   # stopped by max_iters before the time was up: score the end
        val = trainer.validation_loss()
    print(json.dumps({**settings, "max_iters": config.max_iters, "iterations": trainer.iteration,
                      "seconds": round(seconds),
                      "val_nats_per_char": None if math.isnan(val) else round(val, 4)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
