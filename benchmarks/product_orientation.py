"""The recurrent products both ways round: ``h Whh^T`` with states as rows, (B, H) x (H, G),
against ``Whh h^T`` with states as columns, (G, H) x (H, B), and the backward's ``dz Whh``
against ``Whh^T dz^T``; every operand contiguous, float32, one BLAS thread. G = GATES * H
for the vanilla cell (1), the GRU (3) and the LSTM (4); B = 16 and 32 streams (one of 2
groups, and the whole default batch). Microseconds per product, best of 3.

The vanilla cell keeps states as rows (with a contiguous copy of Whh^T); the gated cells
hold them as columns inside their recurrences.

Usage:  python benchmarks/product_orientation.py [--quick] [--hidden-size 256]
"""
from __future__ import annotations

import argparse
import sys
import timeit

import numpy as np

from _common import blas_threads_limited, machine_lines, print_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few products: checks it runs")
    parser.add_argument("--hidden-size", type=int, default=256)
    args = parser.parse_args(argv)
    H, number = args.hidden_size, 20 if args.quick else 3000
    rng = np.random.default_rng(0)
    print(f"recurrent products at H={H}, float32, one BLAS thread: microseconds per product")
    for line in machine_lines():
        print(line)
    rows = []
    with blas_threads_limited(1):
        for gates, cell in ((1, "rnn"), (3, "gru"), (4, "lstm")):
            G = gates * H
            Whh = rng.random((G, H), dtype=np.float32)
            Whh_T = np.ascontiguousarray(Whh.T)
            for B in (16, 32):
                h, dz = rng.random((B, H), dtype=np.float32), rng.random((B, G), dtype=np.float32)
                h_T, dz_T = np.ascontiguousarray(h.T), np.ascontiguousarray(dz.T)
                out, out_T = np.empty((B, G), np.float32), np.empty((G, B), np.float32)
                carry, carry_T = np.empty((B, H), np.float32), np.empty((H, B), np.float32)

                def time(call):
                    return min(timeit.repeat(call, number=number, repeat=3)) / number * 1e6
                rows.append([cell, str(B),
                             f"{time(lambda: np.dot(h, Whh_T, out)):.1f}",
                             f"{time(lambda: np.dot(Whh, h_T, out_T)):.1f}",
                             f"{time(lambda: np.dot(dz, Whh, carry)):.1f}",
                             f"{time(lambda: np.dot(Whh_T, dz_T, carry_T)):.1f}"])
    print()
    print_table(["cell", "B", "h Whh^T", "Whh h^T", "dz Whh", "Whh^T dz^T"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
