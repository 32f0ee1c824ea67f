"""Every cell against PyTorch: training and sampling speed, on this machine's BLAS kernels and
on the ones a user's NumPy picks.

For each hidden size H (T = 64, B = 32, float32, one layer) and each cell (rnn, lstm, gru)
this times, side by side and in turns (see _common.run_interleaved), characters per second of:

  charrnn       ``charrnn.train.Trainer(config, corpus).step()``, the step ``charrnn train``
                runs, with 1 and with 2 BLAS threads, and (``2g``, the default of ``charrnn
                train`` on 2 cores) in 2 groups of streams on 2 threads of one-threaded BLAS
                (the fastest is shown, with its count)
  torch         ``torch.nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` on one-hot inputs, ``nn.Linear``,
                summed cross-entropy / B, autograd, clip_grad_value_ and torch.optim.Adagrad,
                the hidden state carried between windows; with 1 and 2 threads (the faster)
  torch no-oneDNN  (lstm only) the same with ``torch.backends.mkldnn.enabled = False``, so
                that torch runs its own LSTM instead of oneDNN's fused kernel

and, for sampling (H = 256, 1,000 characters after a seed, one thread each):

  charrnn       ``charrnn.sample.generate``
  torch         the module stepped one character at a time (one-hot input of shape (1, 1, V)),
                softmax and torch.multinomial

This machine's environment sets OPENBLAS_CORETYPE=Haswell (and OPENBLAS_L2_SIZE), which makes
NumPy's OpenBLAS use older, slower kernels than a user's machine would. By default the
benchmark runs twice, in child processes: once with the environment as it is, once with both
variables unset (what a user's NumPy does); each table says which kernel ran.

Usage:  python benchmarks/bench_cells.py [--quick] [--sizes 256,512] [--only training|sampling]
                                         [--cells rnn,lstm,gru] [--env both|as-is|unset] [--all]
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys

import numpy as np

from _common import (DEFAULT_CORPUS, Contender, format_rate, format_ratio, import_torch,
                     machine_lines, numpy_threads, print_table, run_interleaved, torch_threads)

from charrnn.config import TrainConfig
from charrnn.data import WindowCursor, make_streams, read_corpus, split_validation
from charrnn.model import CELLS, ModelSpec, Network
from charrnn.sample import generate
from charrnn.train import Trainer

T, B = 64, 32
LEARNING_RATE, CLIP = 0.02, 5.0
SEED_TEXT = "ROMEO:\n"
BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# Issue 18's targets: charrnn / torch at least this, on a user's kernels
TARGETS = {"rnn": 2.0, "lstm": 0.8, "gru": 1.7}
TARGET_NO_ONEDNN = 1.5
SAMPLING_TARGET = 5.0


def blas_kernel() -> str:
    """The CPU kernel family OpenBLAS runs (e.g. Haswell, SkylakeX), from threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    kernels = {info.get("architecture") for info in threadpool_info()
               if info.get("internal_api") == "openblas"}
    return ", ".join(sorted(k for k in kernels if k)) or "unknown"


class TorchModel:
    """One cell of torch.nn on one-hot inputs, nn.Linear, Adagrad; the state carried."""

    def __init__(self, torch, cell: str, V: int, H: int, cursor: WindowCursor, onednn=True):
        self.torch, self.cursor, self.V, self.onednn = torch, cursor, V, onednn
        torch.manual_seed(0)
        module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.rnn = module(V, H)
        self.out = torch.nn.Linear(H, V)
        self.params = list(self.rnn.parameters()) + list(self.out.parameters())
        self.optimizer = torch.optim.Adagrad(self.params, lr=LEARNING_RATE, eps=1e-8)
        zeros = torch.zeros(1, B, H)
        self.state = (zeros, zeros.clone()) if cell == "lstm" else zeros

    def step(self):
        torch = self.torch
        previous = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = self.onednn
        try:
            inputs, targets, restarted = self.cursor.next_window()
            if restarted:
                self.state = tuple(s * 0 for s in self.state) if isinstance(
                    self.state, tuple) else self.state * 0
            x = torch.nn.functional.one_hot(torch.from_numpy(inputs.astype(np.int64)),
                                            self.V).float()
            states, state = self.rnn(x, self.state)
            logits = self.out(states.reshape(-1, states.shape[2]))
            loss = torch.nn.functional.cross_entropy(
                logits, torch.from_numpy(targets.astype(np.int64)).reshape(-1),
                reduction="sum") / B
            self.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_value_(self.params, CLIP)
            self.optimizer.step()
            self.state = (tuple(s.detach() for s in state) if isinstance(state, tuple)
                          else state.detach())
        finally:
            torch.backends.mkldnn.enabled = previous


def torch_sampler(torch, cell: str, V: int, H: int, seed: list[int], length: int):
    torch.manual_seed(0)
    module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](V, H)
    out = torch.nn.Linear(H, V)
    generator = torch.Generator().manual_seed(0)
    eye = torch.eye(V).reshape(V, 1, 1, V)          # eye[c] is the (1, 1, V) one-hot of c

    def call():
        with torch.no_grad():
            state = None
            for c in seed[:-1]:
                _, state = module(eye[c], state)
            c, drawn = seed[-1], []
            for _ in range(length):
                y, state = module(eye[c], state)
                p = torch.softmax(out(y[0, 0]), dim=0)
                c = torch.multinomial(p, 1, generator=generator).item()
                drawn.append(c)
        return drawn
    return call


def train_contenders(corpus, cell: str, H: int, torch, threads: list[int]) -> dict:
    train, _ = split_validation(corpus.indices, TrainConfig().val_fraction)
    V = len(corpus.vocab)
    contenders = {}
    for n in threads:
        config = TrainConfig(cell=cell, hidden_size=H, seq_length=T, batch_size=B,
                             learning_rate=LEARNING_RATE, clip=CLIP)
        contenders[f"charrnn/{n}"] = Contender(f"charrnn/{n}", Trainer(config, corpus).step,
                                               T * B, *numpy_threads(n))
        if n > 1:   # what charrnn train does by default: n groups of streams on n threads
            grouped = Trainer(config, corpus)
            grouped.use_threads(n)
            contenders[f"charrnn/{n}g"] = Contender(f"charrnn/{n}g", grouped.step, T * B,
                                                    *numpy_threads(1))
        if torch is not None:
            variants = [("torch", True)] + ([("no-oneDNN", False)] if cell == "lstm" else [])
            for name, onednn in variants:
                model = TorchModel(torch, cell, V, H, WindowCursor(make_streams(train, B), T),
                                   onednn)
                contenders[f"{name}/{n}"] = Contender(f"{name}/{n}", model.step, T * B,
                                                      *torch_threads(torch, n))
    return contenders


def best(results: dict, prefix: str) -> tuple[float, str]:
    rates = [(c.rate, name.split("/")[-1]) for name, c in results.items()
             if name.startswith(prefix + "/")]
    return max(rates, default=(math.nan, "-"))


def run_child(args) -> int:
    torch = None if args.no_torch else import_torch()
    corpus = read_corpus(args.corpus)
    V = len(corpus.vocab)
    sizes = [int(s) for s in args.sizes.split(",")]
    cells = [c for c in CELLS if c in args.cells.split(",")]
    threads = [1, 2]
    if args.quick:
        timing = dict(chunk_seconds=0.02, rounds=2, warmup_seconds=0.01)
        sizes, threads, length = [32], [1], 50
    else:
        timing = dict(chunk_seconds=0.5, rounds=args.rounds, warmup_seconds=0.3,
                      pause_seconds=0.15)
        length = 1000
    found = ", ".join(f"{name}={os.environ[name]}" for name in BLAS_VARIABLES
                      if name in os.environ) or "neither variable set"
    print(f"\n=== environment {args.env} ({found}); OpenBLAS kernel: {blas_kernel()} ===")
    for line in machine_lines():
        print(line)
    if torch is not None:
        print(f"torch {torch.__version__}")
    print(f"chars/s = median of {timing['rounds']} chunks of ~{timing['chunk_seconds']} s, "
          f"contenders timed in turns; (n) = the thread count of the faster figure\n")

    rows, every = [], []
    for H in (sizes if args.only != "sampling" else []):
        for cell in cells:
            results = train_contenders(corpus, cell, H, torch, threads)
            run_interleaved(list(results.values()), **timing)
            every += [[f"H={H}", cell, name, format_rate(contender.rate)]
                      for name, contender in results.items()]
            ours, our_threads = best(results, "charrnn")
            theirs, their_threads = best(results, "torch")
            plain, plain_threads = best(results, "no-oneDNN")
            rows.append([f"H={H} T={T} B={B}", cell, f"{format_rate(ours)} ({our_threads})",
                         f"{format_rate(theirs)} ({their_threads})", format_ratio(ours, theirs),
                         f"{format_rate(plain)} ({plain_threads})" if cell == "lstm" else "",
                         format_ratio(ours, plain) if cell == "lstm" else "",
                         f">= {TARGETS[cell]}x" + (f", >= {TARGET_NO_ONEDNN}x no-oneDNN"
                                                   if cell == "lstm" else "")])
    if rows:
        print("Training, chars/s (float32, one layer)")
        print_table(["config", "cell", "charrnn", "torch", "x torch", "torch no-oneDNN",
                     "x no-oneDNN", "target (user's kernels)"], rows)
    if every and args.all:
        print("\nEvery contender (charrnn/2g: 2 groups of streams on 2 threads)")
        print_table(["size", "cell", "contender/threads", "chars/s"], every)
    if args.only == "training":
        return 0

    rows = []
    seed = [int(c) for c in corpus.vocab.encode(SEED_TEXT)]
    H = sizes[0] if args.quick else 256
    for cell in cells:
        network = Network(ModelSpec(V, H, cell), np.float32)
        params = network.init_params(np.random.default_rng(0), 0.1)
        rng = np.random.default_rng(0)
        contenders = [Contender("charrnn", lambda: "".join(generate(
            network, params, corpus.vocab, SEED_TEXT, length, rng)), length, *numpy_threads(1))]
        if torch is not None:
            contenders.append(Contender("torch", torch_sampler(torch, cell, V, H, seed, length),
                                        length, *torch_threads(torch, 1)))
        run_interleaved(contenders, **timing)
        theirs = contenders[1].rate if torch is not None else math.nan
        rows.append([f"H={H}", cell, format_rate(contenders[0].rate), format_rate(theirs),
                     format_ratio(contenders[0].rate, theirs), f">= {SAMPLING_TARGET}x"])
    print(f"\nSampling, chars/s ({length} characters after a seed, one thread)")
    print_table(["size", "cell", "charrnn", "torch", "x torch", "target"], rows)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baselines")
    parser.add_argument("--sizes", default="256,512", help="hidden sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=7, help="timed chunks per contender")
    parser.add_argument("--all", action="store_true",
                        help="also print every training contender's figure (each thread count)")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--cells", default=",".join(CELLS),
                        help="the cells to time, comma-separated (default: all)")
    parser.add_argument("--only", choices=["training", "sampling"],
                        help="time only training or only sampling")
    parser.add_argument("--env", choices=["both", "as-is", "unset"], default="both",
                        help="run with this machine's environment, with the OpenBLAS variables "
                             "unset, or both in turn (default)")
    args, rest = parser.parse_known_args(argv)
    unknown = set(args.cells.split(",")) - set(CELLS)
    if unknown:
        parser.error(f"--cells: unknown cell(s) {', '.join(sorted(unknown))}; "
                     f"choose from {', '.join(CELLS)}")
    if args.env != "both":
        return run_child(args)
    argv = list(sys.argv[1:] if argv is None else argv)
    status = 0
    for env_choice in ("as-is", "unset"):
        env = dict(os.environ)
        if env_choice == "unset":
            for name in BLAS_VARIABLES:
                env.pop(name, None)
        status |= subprocess.call([sys.executable, os.path.abspath(__file__), *argv,
                                   "--env", env_choice], env=env)
    return status


if __name__ == "__main__":
    sys.exit(main())
