"""Sampling speed: charrnn.sample.generate against a PyTorch and an np.random.choice sampler.

All three generate one character at a time from the same vanilla RNN (hidden size H,
vocabulary of data/tinyshakespeare.txt, float32 weights), feeding each character back in:

  charrnn        ``"".join(charrnn.sample.generate(network, params, vocab, seed, n, rng))``
                 (a one-layer vanilla ``charrnn.model.Network``)
  torch          the loop a PyTorch user writes: under torch.no_grad(), ``h = tanh(Wxh[:, c]
                 + Whh h + bh)``, ``p = softmax(Why h + by)``, ``torch.multinomial(p, 1).item()``
                 (torch's default thread count, and 1 thread; the faster figure is shown)
  random.choice  the same loop in NumPy with min-char-rnn's draw: ``p = exp(y) / sum(exp(y))``
                 and ``np.random.choice(V, p=p)`` (from a RandomState, so it is seeded locally)

chars/s are medians of timed chunks taken in turns (see _common.run_interleaved).

Usage:  python benchmarks/bench_sample.py [--quick] [--no-torch] [--hidden-size 256]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from _common import (DEFAULT_CORPUS, Contender, blas_threads_limited, format_rate, format_ratio,
                     import_torch, machine_lines, print_table, run_interleaved)

from charrnn.data import read_corpus
from charrnn.model import ModelSpec, Network
from charrnn.sample import generate

SEED_TEXT = "ROMEO:\n"


# The vanilla layer's weights under min-char-rnn's names (the baselines below use those).
NAMES = {"Wxh": "l1.Wxh", "Whh": "l1.Whh", "Why": "Why", "bh": "l1.bh", "by": "by"}


def charrnn_sampler(network, params, vocab, length: int):
    rng = np.random.default_rng(0)

    def call():
        return "".join(generate(network, params, vocab, SEED_TEXT, length, rng))
    return call


def choice_sampler(params, vocab, length: int):
    """min-char-rnn's sampling loop (with indexing instead of one-hot products)."""
    Wxh, Whh, Why, bh, by = (params[NAMES[name]] for name in ("Wxh", "Whh", "Why", "bh", "by"))
    V = len(vocab)
    seed = vocab.encode(SEED_TEXT)
    draws = np.random.RandomState(0)

    def call():
        h = np.zeros(Whh.shape[0], Whh.dtype)
        for c in seed[:-1]:
            h = np.tanh(Wxh[:, c] + Whh @ h + bh)
        c, out = seed[-1], []
        for _ in range(length):
            h = np.tanh(Wxh[:, c] + Whh @ h + bh)
            y = Why @ h + by
            p = np.exp(y - y.max())
            c = draws.choice(V, p=p / p.sum())
            out.append(vocab.chars[c])
        return "".join(out)
    return call


def torch_sampler(torch, params, vocab, length: int):
    weights = {name: torch.from_numpy(np.array(params[NAMES[name]])) for name in NAMES}
    Wxh, Whh, Why, bh, by = (weights[name] for name in ("Wxh", "Whh", "Why", "bh", "by"))
    seed = [int(c) for c in vocab.encode(SEED_TEXT)]
    generator = torch.Generator().manual_seed(0)

    def call():
        with torch.no_grad():
            h = torch.zeros(Whh.shape[0], dtype=Whh.dtype)
            for c in seed[:-1]:
                h = torch.tanh(Wxh[:, c] + Whh @ h + bh)
            c, out = seed[-1], []
            for _ in range(length):
                h = torch.tanh(Wxh[:, c] + Whh @ h + bh)
                p = torch.softmax(Why @ h + by, dim=0)
                c = torch.multinomial(p, 1, generator=generator).item()
                out.append(vocab.chars[c])
        return "".join(out)
    return call


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, rough figures")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--length", type=int, default=1000, help="characters per call")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--rounds", type=int, help="timed chunks per contender")
    args = parser.parse_args(argv)
    if args.quick:
        timing = dict(chunk_seconds=0.02, rounds=2, warmup_seconds=0.01)
        args.length = min(args.length, 100)
    else:
        timing = dict(chunk_seconds=0.5, rounds=7, warmup_seconds=0.3, pause_seconds=0.15)
    if args.rounds:
        timing["rounds"] = args.rounds

    torch = None if args.no_torch else import_torch()
    vocab = read_corpus(args.corpus).vocab
    H = args.hidden_size
    # Weights of a typical trained size (speed does not depend on their values).
    network = Network(ModelSpec(len(vocab), H), np.float32)
    params = network.init_params(np.random.default_rng(0), scale=0.1)

    contenders = [Contender("charrnn", charrnn_sampler(network, params, vocab, args.length),
                            args.length),
                  Contender("random.choice", choice_sampler(params, vocab, args.length), args.length)]
    if torch is not None:
        default_threads = torch.get_num_threads()
        for threads in [1] if args.quick else sorted({1, default_threads}):
            previous = torch.get_num_threads()
            contenders.append(Contender(
                f"torch/{threads}", torch_sampler(torch, params, vocab, args.length), args.length,
                setup=lambda n=threads: torch.set_num_threads(n),
                teardown=lambda n=previous: torch.set_num_threads(n)))
    print(f"charrnn sampling benchmark, H={H}, V={len(vocab)}, float32 weights, "
          f"{args.length} chars per call")
    for line in machine_lines():
        print(line)
    print(f"chars/s = median of {timing['rounds']} chunks of ~{timing['chunk_seconds']} s, "
          f"timed in turns after a warm-up; NumPy's BLAS set to 1 thread\n", flush=True)
    with blas_threads_limited(1):   # one matrix-vector product per character: one thread
        run_interleaved(contenders, **timing)

    rates = {c.name: c.rate for c in contenders}
    torch_rates = [(rate, name) for name, rate in rates.items() if name.startswith("torch/")]
    torch_best, torch_name = max(torch_rates, default=(float("nan"), "-"))
    print_table(["sampler", "chars/s", "charrnn x"],
                [[name, format_rate(rate), format_ratio(rates["charrnn"], rate)]
                 for name, rate in rates.items()])
    print(f"\ncharrnn / fastest torch ({torch_name}): {format_ratio(rates['charrnn'], torch_best)}; "
          f"charrnn / random.choice: {format_ratio(rates['charrnn'], rates['random.choice'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
