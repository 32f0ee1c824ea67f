"""A training step over groups of streams, side by side on threads (data parallelism).

The B streams of a batch are independent of each other until their gradients are added up.
So the batch is cut into G groups of contiguous streams, fixed for the whole run, and each
group runs the network's forward and backward on a thread of its own:

    loss  = sum_g loss_g              each loss_g averaged over all B streams, not B_g
    grads = sum_g grads_g             added in the order of the groups

Why threads of our own rather than the BLAS library's: NumPy lets go of the interpreter lock
inside its matrix products and elementwise loops, so the groups' work runs at once on
different cores, and each thread computes whole products by itself (BLAS limited to one
thread). When another program takes a core, the threads share what is left. A BLAS library's
own threads split every product and wait for each other at its end: one of them on a busy
core stalls them all, and training slowed five-fold on a laptop-sized machine.

The results do not depend on how many threads run the groups, nor on the machine's load:
each group computes the same products in the same way, and the groups' figures are added
in one order. (They do depend on G, which is why a run keeps its G: it is saved.)
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from .network import Network
from .params import ParamSet

MIN_GROUP_STREAMS = 8   # below this a group's products are too small to be worth a thread


def group_count(num_streams: int, cores: int) -> int:
    """How many groups to cut ``num_streams`` streams into on a machine with ``cores``
    usable cores: one per core, each of at least MIN_GROUP_STREAMS streams."""
    return max(1, min(cores, num_streams // MIN_GROUP_STREAMS))


def group_slices(num_streams: int, groups: int) -> list[slice]:
    """``groups`` contiguous slices of ``range(num_streams)``, sizes differing by at most 1."""
    bounds = [num_streams * g // groups for g in range(groups + 1)]
    return [slice(start, stop) for start, stop in zip(bounds, bounds[1:])]


class GroupedStep:
    """Forward and backward of one window of B streams, as G groups on up to G threads.

    network: the model (a Network per group is made from its spec, each with buffers of its
    own). threads: how many of the groups may run at once (1: one after another, the same
    numbers): the calling thread and threads - 1 of a pool, each taking the next group not
    yet taken.
    """

    def __init__(self, network: Network, num_streams: int, groups: int, threads: int):
        if not 1 <= groups <= num_streams:
            raise ValueError(f"cannot cut {num_streams} streams into {groups} groups")
        self.network = network
        self.num_streams = num_streams
        self.slices = group_slices(num_streams, groups)
        self.networks = [network] + [Network(network.spec, network.dtype)
                                     for _ in self.slices[1:]]
        self.group_grads = [None] + [network.zeros() for _ in self.slices[1:]]
        self.threads = max(1, min(threads, groups))
        # The calling thread computes groups too: one thread fewer to wake at every window
        # (the default run at H=256, B=32 on 2 cores: 280k -> 302k chars/s with OpenBLAS's
        # Haswell kernels, 403k -> 437k with SkylakeX, benchmarks/bench_busy.py)
        self._pool = (ThreadPoolExecutor(self.threads - 1, thread_name_prefix="charrnn-group")
                      if self.threads > 1 else None)

    @property
    def groups(self) -> int:
        return len(self.slices)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __call__(self, params: ParamSet, inputs: np.ndarray, targets: np.ndarray,
                 state: dict, masks: list | None, grads: ParamSet) -> float:
        """One window: the loss (sum over T, mean over B), every gradient into ``grads``, and
        ``state`` (each (B, H)) carried to the window's end, in place.

        inputs, targets: (T, B) int; masks: None or L arrays (T, B, H), as Network.forward.
        """
        def run(g: int) -> float:
            group, network = self.slices[g], self.networks[g]
            group_state = {name: array[group] for name, array in state.items()}   # views
            group_masks = None if masks is None else [mask[:, group] for mask in masks]
            loss, cache = network.forward(params, inputs[:, group], targets[:, group],
                                          group_state, group_masks, streams=self.num_streams)
            network.backward(params, cache, grads if g == 0 else self.group_grads[g])
            network.carry_state(group_state, cache)   # writes through the views
            return loss

        if self._pool is None:
            losses = [run(g) for g in range(self.groups)]
        else:
            losses = [0.0] * self.groups
            next_group, lock, failed = iter(range(self.groups)), threading.Lock(), []
            settings = np.geterr()     # NumPy's error settings are per thread: the caller's

            def work() -> None:        # take the next group not yet taken, until none is left
                with np.errstate(**settings):
                    while True:
                        with lock:
                            g = None if failed else next(next_group, None)
                        if g is None:
                            return
                        try:
                            losses[g] = run(g)
                        except BaseException:
                            failed.append(True)       # no thread takes another group
                            raise
            helpers = [self._pool.submit(work) for _ in range(self.threads - 1)]
            try:
                work()
            finally:                   # nothing may still write into the state afterwards
                wait(helpers)
            for helper in helpers:
                helper.result()        # raises what a helper raised
        for g in range(1, self.groups):                   # in a fixed order: the same bits
            grads.flat += self.group_grads[g].flat
        return sum(losses)
