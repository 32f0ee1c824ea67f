"""Line timing of one training step: where the microseconds of Trainer.step go.

Each top-level statement of ``Trainer.step``, ``Network.forward``, ``Network.backward``, the
cell's ``forward`` and ``backward`` (``rnn.forward`` for the vanilla cell: charrnn.model.rnn)
and the update of the cell's default optimiser is timed (a loop counts as one statement),
averaged over many steps, and the statements above a threshold are printed. The functions are recompiled with a
``perf_counter`` call around every statement (about 0.1 us each), so totals run a little
above an uninstrumented step. This is how the per-step costs quoted in the benchmarks'
notes were found; cProfile cannot see inside a function.

Usage:  python benchmarks/profile_step.py [--config 100,25,1] [--cell rnn] [--threads 1]
                                         [--steps 2000] [--nested]
"""
from __future__ import annotations

import argparse
import ast
import inspect
import sys
import textwrap
import time

from _common import DEFAULT_CORPUS

import charrnn.optim as optim
import charrnn.train as train
from charrnn.config import TrainConfig
from charrnn.data import read_corpus
from charrnn.model import CELLS, Network
from charrnn.threads import set_blas_threads, threads_for


def instrumented(function, nested: bool = False):
    """(a copy of ``function`` that times its top-level statements, labels, totals list).

    With ``nested``, the statements inside loops and ``with`` blocks are timed too, each
    labelled with its indentation under the block's own line (which times the whole block).
    """
    source = textwrap.dedent(inspect.getsource(function))
    lines = source.splitlines()
    definition = ast.parse(source).body[0]
    labels = []

    def timed(statements, depth):
        body = []
        for statement in statements:
            if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                continue   # a docstring
            labels.append("  " * depth + lines[statement.lineno - 1].strip()[:88 - 2 * depth])
            k = len(labels) - 1
            if nested and isinstance(statement, (ast.For, ast.While, ast.With, ast.If)):
                statement.body = timed(statement.body, depth + 1)
            start = ast.parse(f"_t0_{depth} = _clock()").body[0]
            stop = ast.parse(f"_totals[{k}] += _clock() - _t0_{depth}").body[0]
            if isinstance(statement, ast.Return) and statement.value is not None:
                body += [start, ast.parse(f"_result = {ast.unparse(statement.value)}").body[0],
                         stop, ast.parse("return _result").body[0]]
            else:
                body += [start, statement, stop]
        return body

    definition.body, definition.decorator_list = timed(definition.body, 0), []
    tree = ast.Module(body=[definition], type_ignores=[])
    ast.fix_missing_locations(tree)
    totals = [0.0] * len(labels)
    namespace = dict(function.__globals__, _clock=time.perf_counter, _totals=totals)
    exec(compile(tree, f"<instrumented {function.__qualname__}>", "exec"), namespace)
    return namespace[definition.name], labels, totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="100,25,1", metavar="H,T,B")
    parser.add_argument("--cell", default="rnn", choices=list(CELLS))
    parser.add_argument("--threads", type=int, help="BLAS threads (default: threads_for)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--min-us", type=float, default=0.5, help="hide cheaper statements")
    parser.add_argument("--nested", action="store_true",
                        help="also time the statements inside the cell's loops and branches")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    args = parser.parse_args(argv)
    H, T, B = (int(x) for x in args.config.split(","))
    threads = args.threads or threads_for(B, H)
    set_blas_threads(threads)

    # Instrument the callees first: the instrumented callers must see the instrumented callees.
    config = TrainConfig.for_new_run(hidden_size=H, seq_length=T, batch_size=B, cell=args.cell)
    optimizer = optim.OPTIMIZERS[config.optimizer]     # the cell's default, as charrnn train
    update, update_labels, update_totals = instrumented(optimizer.update)
    optimizer.update = update
    cell = CELLS[args.cell]   # the Network calls its cell's functions through the module
    cell_forward, cell_forward_labels, cell_forward_totals = instrumented(cell.forward,
                                                                          args.nested)
    cell_backward, cell_backward_labels, cell_backward_totals = instrumented(cell.backward,
                                                                             args.nested)
    cell.forward, cell.backward = cell_forward, cell_backward
    forward, forward_labels, forward_totals = instrumented(Network.forward)
    backward, backward_labels, backward_totals = instrumented(Network.backward)
    Network.forward, Network.backward = forward, backward
    step, step_labels, step_totals = instrumented(train.Trainer.step)

    trainer = train.Trainer(config, read_corpus(args.corpus))
    sections = (("Trainer.step", step_labels, step_totals),
                ("Network.forward", forward_labels, forward_totals),
                (f"{args.cell}.forward", cell_forward_labels, cell_forward_totals),
                ("Network.backward", backward_labels, backward_totals),
                (f"{args.cell}.backward", cell_backward_labels, cell_backward_totals),
                (f"{optimizer.__name__}.update", update_labels, update_totals))
    for _ in range(10):   # warm up, then forget the warm-up's times
        step(trainer)
    for _, _, totals in sections:
        totals[:] = [0.0] * len(totals)
    for _ in range(args.steps):
        step(trainer)

    print(f"{args.cell} H={H} T={T} B={B}, {threads} BLAS thread(s), {args.steps} steps: "
          f"microseconds per step, statements over {args.min_us} us")
    for name, labels, totals in sections:
        print(f"\n{name}: {sum(totals) / args.steps * 1e6:.1f} us")
        for label, total in zip(labels, totals):
            if total / args.steps * 1e6 >= args.min_us:
                print(f"  {total / args.steps * 1e6:9.1f}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
