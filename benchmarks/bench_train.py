"""Training speed: charrnn's real training step against PyTorch, a classic loop and the ceiling.

For each configuration (hidden size H, window T, streams B) this times, side by side and in
turns (see _common.run_interleaved), characters trained per second of:

  charrnn      ``charrnn.train.Trainer(config, corpus).step()``: the step ``charrnn train`` runs
               (window, forward, backward, clipping, Adagrad, the divergence check), with the
               BLAS thread count ``charrnn.threads.threads_for`` picks; both thread counts are
               shown in the second table.
  torch loop   the same model in PyTorch: ``h = tanh(x W_xh^T + h W_hh^T + b_h)`` step by step
               (torch.addmm), output layer, summed cross-entropy / B, autograd,
               clip_grad_value_ and torch.optim.Adagrad, with torch's default thread count.
  torch RNN    the same with torch.nn.RNN (its time loop is in C++) on one-hot inputs and
               nn.Linear (nn.RNN has two hidden biases; otherwise the same model).
  classic      (B = 1 only) the per-character loop of Karpathy's min-char-rnn: one-hot column
               vectors, one product per matrix, dicts of per-step arrays, per-parameter
               clipping and Adagrad: charrnn.model.reference's loss_fun and adagrad_update,
               in float64 (as min-char-rnn), whatever --dtype says.
  ceiling      only the step's matrix products (forward recurrence, output projection,
               dWhy, dL/dh, backward recurrence, dWhh, one-hot dWxh) into preallocated
               buffers, with the same thread count as the charrnn figure: what the step
               would cost if nothing else did.

Usage:  python benchmarks/bench_train.py [--quick] [--no-torch] [--dtype float64]
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from _common import (DEFAULT_CORPUS, Contender, format_rate, format_ratio, import_torch,
                     machine_lines, numpy_threads, print_table, run_interleaved, torch_threads)

from charrnn.config import TrainConfig
from charrnn.data import WindowCursor, make_streams, read_corpus, split_validation
from charrnn.model import reference
from charrnn.threads import blas_threads, threads_for
from charrnn.train import Trainer

CONFIGS = [(256, 64, 32), (100, 25, 1), (512, 100, 64)]   # (H, T, B)
LEARNING_RATE, CLIP = 0.02, 5.0



def window_source(corpus, B: int, T: int):
    """The same windows the Trainer walks: the training part cut into B streams."""
    train, _ = split_validation(corpus.indices, TrainConfig().val_fraction)
    return WindowCursor(make_streams(train, B), T)


# --- the ceiling -----------------------------------------------------------------------------

class MatmulCeiling:
    """Only the matrix products of one training step, into preallocated buffers."""

    def __init__(self, V: int, H: int, T: int, B: int, dtype, rng: np.random.Generator):
        def rand(*shape):
            return (rng.standard_normal(shape) * 0.1).astype(dtype)
        self.T = T
        self.Whh, self.Why = rand(H, H), rand(V, H)
        self.hs = np.tanh(rand(T + 1, B, H))
        self.da = rand(T, B, H)
        self.dy = rand(T * B, V)
        self.logits = np.empty((T * B, V), dtype)
        self.dh = np.empty((T * B, H), dtype)
        self.carry = np.empty((B, H), dtype)
        self.one_hot = np.zeros((T * B, V), dtype)
        self.one_hot[np.arange(T * B), rng.integers(0, V, T * B)] = 1
        self.dWhh, self.dWhy, self.dWxh = (np.empty((H, H), dtype), np.empty((V, H), dtype),
                                           np.empty((H, V), dtype))

    def step(self):
        T, hs, da, Whh = self.T, self.hs, self.da, self.Whh
        Whh_T = Whh.T
        for t in range(T):
            np.dot(hs[t], Whh_T, out=hs[t + 1])                       # recurrence
        h_flat = hs[1:].reshape(-1, hs.shape[2])
        np.dot(h_flat, self.Why.T, out=self.logits)                   # output projection
        np.dot(self.dy.T, h_flat, out=self.dWhy)                      # dWhy
        np.dot(self.dy, self.Why, out=self.dh)                        # dL/dh from the output
        for t in range(T - 1, 0, -1):
            np.dot(da[t], Whh, out=self.carry)                        # backward recurrence
        da_flat = da.reshape(-1, da.shape[2])
        np.dot(da_flat.T, hs[:-1].reshape(-1, hs.shape[2]), out=self.dWhh)   # dWhh
        np.dot(da_flat.T, self.one_hot, out=self.dWxh)                # dWxh


# --- the classic per-character loop (min-char-rnn style) -------------------------------------

class ClassicLoop:
    """One stream, one character at a time: min-char-rnn's own code (B = 1 only), from
    charrnn.model.reference, in float64 as min-char-rnn runs it."""

    def __init__(self, V: int, H: int, cursor: WindowCursor, rng: np.random.Generator):
        self.H, self.cursor = H, cursor
        self.params = {"Wxh": rng.standard_normal((H, V)) * 0.01,
                       "Whh": rng.standard_normal((H, H)) * 0.01,
                       "Why": rng.standard_normal((V, H)) * 0.01,
                       "bh": np.zeros((H, 1)), "by": np.zeros((V, 1))}
        self.memories = {name: np.zeros_like(p) for name, p in self.params.items()}
        self.hprev = np.zeros((H, 1))

    def step(self):
        inputs, targets, restarted = self.cursor.next_window()
        if restarted:
            self.hprev = np.zeros((self.H, 1))
        loss, grads, self.hprev = reference.loss_fun(inputs[:, 0].tolist(), targets[:, 0].tolist(),
                                                     self.hprev, self.params)
        reference.adagrad_update(self.params, grads, self.memories, LEARNING_RATE, CLIP)
        return loss


# --- PyTorch ---------------------------------------------------------------------------------

def next_torch_window(torch, cursor: WindowCursor, h):
    """The next window as int64 tensors (inputs, targets), zeroing ``h`` when the streams wrap."""
    inputs, targets, restarted = cursor.next_window()
    if restarted:
        h.zero_()
    return torch.from_numpy(inputs.astype(np.int64)), torch.from_numpy(targets.astype(np.int64))


def torch_update(torch, loss, params, optimizer, h):
    """Backpropagate ``loss``, clip elementwise, take an Adagrad step; returns h detached."""
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_value_(params, CLIP)
    optimizer.step()
    return h.detach()


class TorchLoop:
    """The same model in PyTorch, with an explicit time loop (one addmm per step)."""

    def __init__(self, torch, V: int, H: int, B: int, cursor: WindowCursor, dtype):
        self.torch, self.cursor, self.B = torch, cursor, B
        self.dtype = getattr(torch, dtype)
        generator = torch.Generator().manual_seed(0)

        def weight(*shape):
            return (torch.randn(*shape, generator=generator, dtype=self.dtype) * 0.01).requires_grad_()
        self.Wxh, self.Whh, self.Why = weight(H, V), weight(H, H), weight(V, H)
        self.bh = torch.zeros(H, dtype=self.dtype, requires_grad=True)
        self.by = torch.zeros(V, dtype=self.dtype, requires_grad=True)
        self.params = [self.Wxh, self.Whh, self.Why, self.bh, self.by]
        self.optimizer = torch.optim.Adagrad(self.params, lr=LEARNING_RATE, eps=1e-8)
        self.h = torch.zeros(B, H, dtype=self.dtype)

    def step(self):
        torch = self.torch
        inputs, targets = next_torch_window(torch, self.cursor, self.h)
        x = torch.nn.functional.embedding(inputs, self.Wxh.t()) + self.bh   # (T, B, H)
        h, Whh_T, states = self.h, self.Whh.t(), []
        for t in range(x.shape[0]):
            h = torch.tanh(torch.addmm(x[t], h, Whh_T))
            states.append(h)
        logits = torch.addmm(self.by, torch.cat(states), self.Why.t())
        loss = torch.nn.functional.cross_entropy(logits, targets.reshape(-1), reduction="sum") / self.B
        self.h = torch_update(torch, loss, self.params, self.optimizer, h)


class TorchRNN:
    """The same model built from torch.nn.RNN (C++ time loop) and nn.Linear, one-hot inputs."""

    def __init__(self, torch, V: int, H: int, B: int, cursor: WindowCursor, dtype):
        self.torch, self.cursor, self.B, self.V = torch, cursor, B, V
        self.dtype = getattr(torch, dtype)
        torch.manual_seed(0)
        self.rnn = torch.nn.RNN(V, H, nonlinearity="tanh").to(self.dtype)
        self.out = torch.nn.Linear(H, V).to(self.dtype)
        self.params = list(self.rnn.parameters()) + list(self.out.parameters())
        self.optimizer = torch.optim.Adagrad(self.params, lr=LEARNING_RATE, eps=1e-8)
        self.h = torch.zeros(1, B, H, dtype=self.dtype)

    def step(self):
        torch = self.torch
        inputs, targets = next_torch_window(torch, self.cursor, self.h)
        x = torch.nn.functional.one_hot(inputs, self.V).to(self.dtype)      # (T, B, V)
        states, h = self.rnn(x, self.h)
        logits = self.out(states.reshape(-1, states.shape[2]))
        loss = torch.nn.functional.cross_entropy(logits, targets.reshape(-1), reduction="sum") / self.B
        self.h = torch_update(torch, loss, self.params, self.optimizer, h)


# --- the benchmark ---------------------------------------------------------------------------

def bench_config(corpus, H: int, T: int, B: int, dtype: str, torch, timing: dict,
                 all_threads: list[int], torch_counts: list[int]):
    """Time every contender for one configuration; returns ({name: Contender}, threads chosen)."""
    V = len(corpus.vocab)
    rng = np.random.default_rng(0)
    contenders = {}
    chosen = threads_for(B, H) or all_threads[-1]
    if chosen not in all_threads:
        chosen = all_threads[0]
    for threads in all_threads:
        setup, teardown = numpy_threads(threads)
        config = TrainConfig(hidden_size=H, seq_length=T, batch_size=B, dtype=dtype,
                             learning_rate=LEARNING_RATE, clip=CLIP)
        trainer = Trainer(config, corpus)
        contenders[f"charrnn/{threads}"] = Contender(
            f"charrnn/{threads}", trainer.step, T * B, setup, teardown)
        contenders[f"ceiling/{threads}"] = Contender(
            f"ceiling/{threads}", MatmulCeiling(V, H, T, B, dtype, rng).step, T * B, setup, teardown)
    if B == 1:
        setup, teardown = numpy_threads(1)   # the classic loop's products are all tiny
        contenders["classic"] = Contender("classic", ClassicLoop(
            V, H, window_source(corpus, B, T), rng).step, T, setup, teardown)
    if torch is not None:
        for threads in torch_counts:
            setup, teardown = torch_threads(torch, threads)
            for name, model in (("torch loop", TorchLoop), ("torch RNN", TorchRNN)):
                contenders[f"{name}/{threads}"] = Contender(f"{name}/{threads}", model(
                    torch, V, H, B, window_source(corpus, B, T), dtype).step, T * B, setup, teardown)
    run_interleaved(list(contenders.values()), **timing)
    return contenders, chosen


def best(results: dict, prefix: str) -> tuple[float, str]:
    """The highest rate among contenders named ``prefix/<threads>``, and its thread count."""
    rates = [(c.rate, name.split("/")[-1]) for name, c in results.items()
             if name.startswith(prefix + "/")]
    return max(rates, default=(math.nan, "-"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small models, one thread, a few seconds: checks that it runs")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baselines")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--config", action="append", metavar="H,T,B",
                        help="a configuration to time (repeatable); default: the issue's three")
    parser.add_argument("--threads", type=int, action="append",
                        help="thread count(s) to time, for NumPy's BLAS and for torch alike "
                             "(repeatable); default: 1 and the default count")
    parser.add_argument("--rounds", type=int, help="timed chunks per contender")
    parser.add_argument("--chunk-seconds", type=float, help="length of each timed chunk")
    args = parser.parse_args(argv)

    configs = [tuple(int(x) for x in c.split(",")) for c in args.config] if args.config else CONFIGS
    torch = None if args.no_torch else import_torch()
    default_threads = blas_threads()
    all_threads = sorted({1, default_threads}) if default_threads else [None]
    torch_counts = sorted({1, torch.get_num_threads()}) if torch is not None else []
    if args.quick:
        timing = dict(chunk_seconds=0.02, rounds=2, warmup_seconds=0.01)
        if not args.config:
            configs = [(64, 16, 8), (32, 16, 1)]
        all_threads, torch_counts = all_threads[:1], torch_counts[:1]
    else:
        timing = dict(chunk_seconds=0.4, rounds=7, warmup_seconds=0.3, pause_seconds=0.15)
    if args.threads:
        all_threads = torch_counts = sorted(set(args.threads))
        if torch is None:
            torch_counts = []
    if args.rounds:
        timing["rounds"] = args.rounds
    if args.chunk_seconds:
        timing["chunk_seconds"] = args.chunk_seconds
    corpus = read_corpus(args.corpus)

    print(f"charrnn training benchmark, {args.dtype}, corpus {args.corpus} "
          f"({len(corpus.indices):,} chars, V={len(corpus.vocab)})")
    for line in machine_lines():
        print(line)
    if torch is not None:
        print(f"torch {torch.__version__}, timed with {' and '.join(map(str, torch_counts))} "
              f"thread(s) (default {torch.get_num_threads()}); its faster figure is shown")
    print(f"chars/s = median of {timing['rounds']} chunks of ~{timing['chunk_seconds']} s, "
          f"contenders timed in turns after a warm-up; ratios are charrnn / baseline\n")

    main_rows, thread_rows = [], []
    for H, T, B in configs:
        results, chosen = bench_config(corpus, H, T, B, args.dtype, torch, timing,
                                       all_threads, torch_counts)
        get = lambda name: results[name].rate if name in results else math.nan
        ours, ceiling = get(f"charrnn/{chosen}"), get(f"ceiling/{chosen}")
        torch_loop, loop_threads = best(results, "torch loop")
        torch_rnn, rnn_threads = best(results, "torch RNN")
        torch_best = max(torch_loop, torch_rnn) if torch is not None else math.nan
        classic = get("classic")
        main_rows.append([
            f"H={H} T={T} B={B}", str(chosen), format_rate(ours),
            f"{format_rate(torch_loop)} ({loop_threads})", f"{format_rate(torch_rnn)} ({rnn_threads})",
            format_ratio(ours, torch_best), format_rate(classic), format_ratio(ours, classic),
            format_rate(ceiling), format_ratio(100 * ours, ceiling, "%")])
        for threads in all_threads:
            thread_rows.append([f"H={H} T={T} B={B}", str(threads),
                                format_rate(get(f"charrnn/{threads}")),
                                format_rate(get(f"ceiling/{threads}")),
                                format_ratio(100 * get(f"charrnn/{threads}"),
                                             get(f"ceiling/{threads}"), "%"),
                                "<- chosen" if threads == chosen else ""])

    print("Training speed, chars/s; (n) = threads; x torch: against the faster PyTorch figure")
    print_table(["config", "threads", "charrnn", "torch loop", "torch RNN", "x torch",
                 "classic", "x classic", "ceiling", "% ceiling"], main_rows)
    print("\nBLAS threads (charrnn.threads.threads_for picks the charrnn figure above)")
    print_table(["config", "threads", "charrnn", "ceiling", "% ceiling", ""], thread_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
