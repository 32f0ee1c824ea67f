"""Where a sampled character's time goes, for every cell: the whole of charrnn.sample.generate,
then its parts on a Stream (charrnn.model.network): the top layer's product with
``[Why / temperature; Whh]`` (``logits_scaled``), the feed of a character, and the cell's
sampling step alone. The rest of a character (the draw, the loop) is what generate adds.

Float32 weights, H=256, the vocabulary of data/tinyshakespeare.txt, one BLAS thread (the
best of 3 timings of many calls each).

Usage:  python benchmarks/sampling_parts.py [--quick] [--hidden-size 256]
"""
from __future__ import annotations

import argparse
import sys
import timeit

import numpy as np

from _common import DEFAULT_CORPUS, blas_threads_limited, machine_lines, print_table

from charrnn.data import read_corpus
from charrnn.model import CELLS, ModelSpec, Network
from charrnn.sample import generate


def per_call(call, number: int) -> float:
    """Microseconds per call: the best of 3 timings of ``number`` calls."""
    return min(timeit.repeat(call, number=number, repeat=3)) / number * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few calls: checks it runs")
    parser.add_argument("--hidden-size", type=int, default=256)
    args = parser.parse_args(argv)
    calls = 50 if args.quick else 20000
    length = 20 if args.quick else 3000
    vocab = read_corpus(DEFAULT_CORPUS).vocab
    print(f"microseconds per sampled character, H={args.hidden_size}, V={len(vocab)}, float32")
    for line in machine_lines():
        print(line)
    rows = []
    with blas_threads_limited(1):
        for name in CELLS:
            network = Network(ModelSpec(len(vocab), args.hidden_size, name), np.float32)
            params = network.init_params(np.random.default_rng(0), scale=0.1)
            rng = np.random.default_rng(0)
            whole = per_call(lambda: "".join(generate(network, params, vocab, "ROMEO:\n",
                                                      length, rng)), 1) / length
            stream = network.stream(params, 1.0)
            product = per_call(stream.logits_scaled, calls)
            feed = per_call(lambda: stream.feed(3), calls)
            x = stream.input_rows[3]
            step = per_call(lambda: stream.advance[0](x), calls)
            rows.append([name, f"{whole:.2f}", f"{product:.2f}", f"{feed:.2f}", f"{step:.2f}",
                         f"{whole - product - feed:.2f}", f"{1e3 / whole:.1f}k"])
    print()
    print_table(["cell", "generate", "product", "feed", "of it: step", "draw and loop",
                 "chars/s"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
