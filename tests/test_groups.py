"""Training steps over groups of streams on threads (charrnn.model.groups, issue 18).

A grouped step must compute the batch's loss, gradients and carried state (in float64, equal
to one ungrouped step to rounding), and the same bits however many threads run the groups:
that is what lets the thread count follow the machine without changing a run's results.
"""
import dataclasses
import time

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import threads
from charrnn.cli import cli
from charrnn.checkpoint import load_checkpoint
from charrnn.config import TrainConfig
from charrnn.data import read_corpus
from charrnn.model import CELLS, ModelSpec, Network
from charrnn.model.groups import GroupedStep, group_count, group_slices
from charrnn.train import Trainer, run_training


def setup(cell, dtype, B=12, T=5, V=11, H=7, layers=2, dropout=0.0, seed=0):
    rng = np.random.default_rng(seed)
    net = Network(ModelSpec(V, H, cell, layers, dropout), dtype)
    params = net.zeros()
    for name, shape in net.param_shapes.items():
        params[name] = rng.standard_normal(shape) * 0.5
    state = {name: (rng.standard_normal(shape) * 0.5).astype(dtype)
             for name, shape in net.state_shapes(B).items()}
    inputs = rng.integers(0, V, (T, B)).astype(np.uint8)
    targets = rng.integers(0, V, (T, B)).astype(np.uint8)
    masks = net.draw_dropout_masks(rng, T, B)
    return net, params, state, inputs, targets, masks


def plain_step(net, params, state, inputs, targets, masks):
    grads = net.zeros()
    state = {name: value.copy() for name, value in state.items()}
    loss, cache = net.forward(params, inputs, targets, state, masks)
    net.backward(params, cache, grads)
    net.carry_state(state, cache)
    return loss, grads, state


def grouped_step(net, params, state, inputs, targets, masks, groups, threads):
    grads = net.zeros()
    grads.flat[:] = np.nan                 # every gradient must be written, none kept
    state = {name: value.copy() for name, value in state.items()}
    step = GroupedStep(net, inputs.shape[1], groups, threads)
    try:
        loss = step(params, inputs, targets, state, masks, grads)
    finally:
        step.close()
    return loss, grads, state


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("groups", [2, 3, 5])
@pytest.mark.parametrize("cell", list(CELLS))
def test_a_grouped_step_is_the_batch_step(cell, groups, dropout):
    net, params, state, inputs, targets, masks = setup(cell, np.float64, dropout=dropout)
    loss, grads, carried = plain_step(net, params, state, inputs, targets, masks)
    g_loss, g_grads, g_carried = grouped_step(net, params, state, inputs, targets, masks,
                                              groups, threads=2)
    assert g_loss == pytest.approx(loss, rel=1e-13)
    np.testing.assert_allclose(g_grads.flat, grads.flat, rtol=1e-11, atol=1e-13)
    for name in carried:
        np.testing.assert_allclose(g_carried[name], carried[name], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("cell", list(CELLS))
def test_the_bits_do_not_depend_on_the_thread_count(cell):
    net, params, state, inputs, targets, masks = setup(cell, np.float32, B=16, H=24,
                                                       dropout=0.2)
    results = [grouped_step(net, params, state, inputs, targets, masks, 4, threads)
               for threads in (1, 2, 4)]
    for loss, grads, carried in results[1:]:
        assert loss == results[0][0]
        assert grads.flat.tobytes() == results[0][1].flat.tobytes()
        for name in carried:
            assert carried[name].tobytes() == results[0][2][name].tobytes()


def test_group_slices_cover_the_streams_in_order():
    for B in (1, 7, 32, 33):
        for groups in range(1, min(B, 6) + 1):
            slices = group_slices(B, groups)
            assert len(slices) == groups
            covered = [i for s in slices for i in range(B)[s]]
            assert covered == list(range(B))
            sizes = [s.stop - s.start for s in slices]
            assert max(sizes) - min(sizes) <= 1


def test_group_count_gives_each_core_a_group_of_at_least_eight_streams():
    assert group_count(32, 2) == 2
    assert group_count(32, 16) == 4
    assert group_count(12, 2) == 1
    assert group_count(1, 8) == 1
    assert group_count(64, 1) == 1


def test_more_groups_than_streams_is_refused():
    net = Network(ModelSpec(5, 4))
    with pytest.raises(ValueError, match="3 streams into 4 groups"):
        GroupedStep(net, 3, 4, 1)


# --------------------------------------------------------------------------- in training

WORDS = "the quick brown fox jumps over a lazy dog and then some more".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(" ".join(WORDS[i] for i in rng.integers(0, len(WORDS), 3000)) + "\n",
                    encoding="utf-8")
    return read_corpus(str(path))


def large_config(**changes) -> TrainConfig:
    """Large enough (B * H^2 >= 2^19) for training to cut its streams into groups."""
    values = dict(hidden_size=192, seq_length=6, batch_size=16, max_iters=6, eval_every=3,
                  checkpoint_every=3, sample_every=0, random_seed=2, cell="gru")
    values.update(changes)
    return TrainConfig(**values)


def trained(config, corpus, path, threads_requested, checkpoint=None):
    trainer = Trainer(config, corpus, checkpoint)
    notes = trainer.use_threads(threads_requested)
    try:
        run_training(trainer, str(path), show_progress=False, log=lambda message: None)
    finally:
        trainer.close()
    return trainer, notes


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr("charrnn.train.usable_cores", lambda: 2)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    previous = threads.blas_threads()
    yield
    if previous is not None:
        threads.set_blas_threads(previous)


def test_a_large_run_computes_its_streams_in_groups_and_saves_how_many(corpus, tmp_path,
                                                                      two_cores):
    trainer, _ = trained(large_config(), corpus, tmp_path / "m.npz", None)
    assert trainer.stream_groups == 2 and trainer.grouped_step.threads == 2
    state = load_checkpoint(tmp_path / "m.npz").state
    assert state.stream_groups == 2 and state.blas_threads == 1
    small, _ = trained(large_config(hidden_size=16), corpus, tmp_path / "s.npz", None)
    assert small.stream_groups == 1 and small.grouped_step is None
    one, _ = trained(large_config(), corpus, tmp_path / "one.npz", 1)
    assert one.stream_groups == 1                     # --threads 1 on a new run: no groups
    shown = CliRunner().invoke(cli, ["info", str(tmp_path / "m.npz")]).stdout
    assert "computed as:       2 groups of streams" in shown
    shown = CliRunner().invoke(cli, ["info", str(tmp_path / "one.npz")]).stdout
    assert "computed as:       the whole batch at once, with 1 BLAS thread(s)" in shown


def test_the_thread_count_of_a_grouped_run_does_not_change_its_bits(corpus, tmp_path,
                                                                   two_cores):
    """Trained with two threads; the same run resumed with one thread from the middle, and
    with two: the same bits as the uninterrupted run either way."""
    config = large_config(dtype="float32")
    trained(config, corpus, tmp_path / "whole.npz", None)
    half = dataclasses.replace(config, max_iters=3)
    for threads_requested in (1, 2):
        path = tmp_path / f"resumed{threads_requested}.npz"
        trained(half, corpus, path, None)
        trainer, _ = trained(config, corpus, path, threads_requested,
                             checkpoint=load_checkpoint(path))
        assert trainer.stream_groups == 2
        assert trainer.grouped_step.threads == threads_requested
        whole, resumed = load_checkpoint(tmp_path / "whole.npz"), load_checkpoint(path)
        assert resumed.params.flat.tobytes() == whole.params.flat.tobytes()
        for name in whole.carry:
            assert resumed.carry[name].tobytes() == whole.carry[name].tobytes()


def test_a_run_saved_before_groups_goes_on_as_it_was_trained(corpus, tmp_path, two_cores):
    config = large_config(max_iters=3)
    old = Trainer(config, corpus)       # no use_threads: as 0.4.0 trained, the whole batch
    run_training(old, str(tmp_path / "old.npz"), show_progress=False, log=lambda m: None)
    checkpoint = load_checkpoint(tmp_path / "old.npz")
    assert checkpoint.state.stream_groups is None
    resumed = Trainer(dataclasses.replace(config, max_iters=6), corpus, checkpoint)
    resumed.use_threads(None)
    assert resumed.stream_groups == 1 and resumed.grouped_step is None


@pytest.mark.parametrize("failing", [0, 1, 3])
def test_a_group_that_fails_stops_the_step_after_every_thread_is_done(failing):
    """Whichever thread computes the failing group, the error reaches the caller, and only
    once no other group is still writing into the state (the others are slow here)."""
    net, params, state, inputs, targets, masks = setup("rnn", np.float64, B=16)
    step = GroupedStep(net, 16, 4, threads=2)
    started, finished = set(), set()

    def patched(g, backward):
        def slow_or_failing(*args):
            started.add(g)
            if g == failing:
                raise MemoryError(f"group {g}")
            time.sleep(0.1)
            backward(*args)
            finished.add(g)
        return slow_or_failing
    for g, network in enumerate(step.networks):
        network.backward = patched(g, network.backward)
    try:
        with pytest.raises(MemoryError, match=f"group {failing}"):
            step(params, inputs, targets, state, masks, net.zeros())
        assert started - {failing} == finished and len(started) > 1
    finally:
        step.close()


@pytest.mark.parametrize("cell", list(CELLS))
def test_the_helper_threads_keep_the_callers_numpy_error_settings(cell):
    """NumPy's error settings are per thread: overflow the trainer silences must stay silent
    whichever thread computes a group (the trainer reports it itself, with advice)."""
    import warnings
    net, params, state, inputs, targets, masks = setup(cell, np.float32, B=16)
    params.flat[:] = np.inf                      # inf - inf: invalid values everywhere
    step = GroupedStep(net, 16, 4, threads=2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(RuntimeWarning):      # the control: it does overflow
                step(params, inputs, targets, state, masks, net.zeros())
            with np.errstate(all="ignore"):
                step(params, inputs, targets, state, masks, net.zeros())
    finally:
        step.close()
