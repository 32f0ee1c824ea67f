"""The Adam optimiser (--optimizer adam): its update by hand and against torch.optim.Adam,
its default learning rate, exact resume, its checkpoint arrays and their validation, and
the CLI's rules for it."""
from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from charrnn.cli import cli
from charrnn.config import DEFAULT_LEARNING_RATES, DEFAULT_OPTIMIZERS, TrainConfig, resumed_config
from charrnn.data import read_corpus
from charrnn.optim import ADAM_BETAS, ADAM_EPS, Adagrad, Adam, make_optimizer
from charrnn.train import Trainer, run_training

from test_train import assert_identical_checkpoints, make_text, read_npz


# --------------------------------------------------------------------------- the update

def test_adam_two_steps_by_hand():
    """lr 0.1, betas (0.9, 0.999). Step 1 from zero moments: m = 0.1 g, v = 0.001 g^2, and
    the bias corrections turn them back into g and g^2, so every element moves by lr * g /
    (|g| + eps), about lr against its gradient's sign."""
    assert ADAM_BETAS == (0.9, 0.999) and ADAM_EPS == 1e-8
    param, m, v = np.array([1.0, 2.0, 3.0]), np.zeros(3), np.zeros(3)
    opt = Adam(m, v, learning_rate=0.1)
    opt.update(param, np.array([3.0, -4.0, 0.0]))
    np.testing.assert_allclose(m, [0.3, -0.4, 0.0], rtol=1e-15)
    np.testing.assert_allclose(v, [0.009, 0.016, 0.0], rtol=1e-12)
    np.testing.assert_allclose(param, [1 - 0.1 * 3 / (3 + 1e-8), 2 + 0.1 * 4 / (4 + 1e-8), 3.0],
                               rtol=1e-14)
    # Step 2, g = [1, 0, 2]: m = 0.9 m + 0.1 g, v = 0.999 v + 0.001 g^2, corrections
    # 1 - 0.9^2 = 0.19 and 1 - 0.999^2 = 0.001999.
    before = param.copy()
    opt.update(param, np.array([1.0, 0.0, 2.0]))
    m2 = np.array([0.27 + 0.1, -0.36, 0.2])
    v2 = np.array([0.999 * 0.009 + 0.001, 0.999 * 0.016, 0.004])
    np.testing.assert_allclose(m, m2, rtol=1e-14)
    np.testing.assert_allclose(v, v2, rtol=1e-12)
    step = 0.1 * (m2 / 0.19) / (np.sqrt(v2 / 0.001999) + 1e-8)
    np.testing.assert_allclose(param, before - step, rtol=1e-13)
    assert opt.steps_taken == 2


def test_adam_step_size_follows_recent_gradients_not_their_sum():
    """Unlike Adagrad, whose steps shrink for good after large gradients, Adam's step returns
    to about lr once the gradients settle: 10 gradients of 100, then 10,000 of 0.5 (long
    enough for 0.999^n to forget the large ones), and Adam's step is lr again, to 1%, while
    Adagrad's is lr * 0.5 / sqrt(10 * 100^2 + 10,000 * 0.5^2), 1/640 of it."""
    param, m, v = np.zeros(1), np.zeros(1), np.zeros(1)
    adam = Adam(m, v, learning_rate=0.01)
    adagrad_param = np.zeros(1)
    adagrad = Adagrad(np.zeros(1), learning_rate=0.01)
    for grad in [100.0] * 10 + [0.5] * 10_000:
        before, adagrad_before = param.copy(), adagrad_param.copy()
        adam.update(param, np.array([grad]))
        adagrad.update(adagrad_param, np.array([grad]))
    assert (before - param)[0] == pytest.approx(0.01, rel=0.01)
    assert (adagrad_before - adagrad_param)[0] == pytest.approx(0.01 * 0.5 / math.sqrt(102_500))


def test_adam_equals_torch_optim_adam():
    """Ten steps of random gradients on float64 parameters: the same parameters as
    torch.optim.Adam with its defaults (betas 0.9, 0.999; eps 1e-8), to 1e-12."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    start = rng.standard_normal(40)
    weights = torch.nn.Parameter(torch.tensor(start.copy()))
    reference = torch.optim.Adam([weights], lr=0.03)
    param, m, v = start.copy(), np.zeros(40), np.zeros(40)
    ours = Adam(m, v, learning_rate=0.03)
    for _ in range(10):
        grad = rng.standard_normal(40) * rng.choice([1e-3, 1.0, 30.0], 40)
        ours.update(param, grad)
        weights.grad = torch.tensor(grad.copy())
        reference.step()
        np.testing.assert_allclose(param, weights.detach().numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_resumed_from_its_arrays_continues_bit_for_bit(dtype):
    """Six steps in one go equal three steps, then a new Adam over copies of the moments
    told it has taken three: the update count is all the state beyond m and v."""
    rng = np.random.default_rng(1)
    grads = [(rng.standard_normal(30) * 2).astype(dtype) for _ in range(6)]
    start = rng.standard_normal(30).astype(dtype)

    param, m, v = start.copy(), np.zeros(30, dtype), np.zeros(30, dtype)
    whole = Adam(m, v, 0.01)
    for grad in grads:
        whole.update(param, grad)

    param2, m2, v2 = start.copy(), np.zeros(30, dtype), np.zeros(30, dtype)
    first = Adam(m2, v2, 0.01)
    for grad in grads[:3]:
        first.update(param2, grad)
    second = make_optimizer("adam", {"adam.m": m2.copy(), "adam.v": v2.copy()}, 0.01,
                            steps_taken=3)
    for grad in grads[3:]:
        second.update(param2, grad)
    assert param2.dtype == dtype
    assert param2.tobytes() == param.tobytes()
    assert second.m.tobytes() == m.tobytes() and second.v.tobytes() == v.tobytes()


# --------------------------------------------------------------------------- settings

def test_each_optimiser_has_its_own_default_learning_rate():
    assert TrainConfig.for_new_run().learning_rate == DEFAULT_LEARNING_RATES["adagrad"]
    adam = TrainConfig.for_new_run(optimizer="adam")
    assert adam.learning_rate == DEFAULT_LEARNING_RATES["adam"] != DEFAULT_LEARNING_RATES["adagrad"]
    assert TrainConfig.for_new_run(optimizer="adam", learning_rate=0.5).learning_rate == 0.5


def test_the_gated_cells_default_to_adam_and_the_vanilla_cell_to_adagrad():
    assert DEFAULT_OPTIMIZERS == {"rnn": "adagrad", "lstm": "adam", "gru": "adam"}
    for cell, optimizer in DEFAULT_OPTIMIZERS.items():
        config = TrainConfig.for_new_run(cell=cell)
        assert config.optimizer == optimizer, cell
        assert config.learning_rate == DEFAULT_LEARNING_RATES[optimizer], cell
    assert TrainConfig.for_new_run(cell="gru", optimizer="adagrad").learning_rate == 0.07
    # The vanilla default run is the 0.2.0 one: Adagrad at 0.07.
    assert TrainConfig.for_new_run() == TrainConfig()


def test_unknown_optimiser_is_refused():
    with pytest.raises(ValueError, match="optimizer must be one of adagrad, adam"):
        TrainConfig.for_new_run(optimizer="sgd")


def test_optimiser_is_fixed_on_resume():
    with pytest.raises(ValueError, match="--optimizer adagrad conflicts with the checkpoint"):
        resumed_config(TrainConfig(optimizer="adam"), {"optimizer": "adagrad"})


def test_older_checkpoints_were_trained_with_adagrad():
    settings = TrainConfig().to_dict()
    del settings["optimizer"]
    assert TrainConfig.from_dict(settings).optimizer == "adagrad"


# --------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(make_text(300), encoding="utf-8")
    return read_corpus(path)


def adam_config(**changes) -> TrainConfig:
    values = dict(cell="gru", num_layers=2, dropout=0.2, optimizer="adam", hidden_size=12,
                  seq_length=8, batch_size=3, learning_rate=0.01, max_iters=30, eval_every=7,
                  checkpoint_every=9, sample_every=0, dtype="float32", random_seed=5,
                  warmup_fraction=0.2, decay_fraction=0.3)
    values.update(changes)
    return TrainConfig(**values)


def run(config, corpus, path, checkpoint=None) -> Trainer:
    trainer = Trainer(config, corpus, checkpoint)
    run_training(trainer, str(path), show_progress=False, log=lambda message: None)
    return trainer


def test_adam_lowers_the_loss(corpus, tmp_path):
    trainer = run(adam_config(max_iters=150, learning_rate=0.02, dropout=0.0), corpus,
                  tmp_path / "m.npz")
    assert trainer.smooth_loss < math.log(len(corpus.vocab)) - 0.5
    assert trainer.history[-1, 3] < trainer.history[0, 3] - 0.5


@pytest.mark.parametrize("stop", [4, 17])
def test_adam_run_resumed_equals_one_run(corpus, tmp_path, stop):
    """Stopped at ``stop`` (in the warm-up, then in the hold) and resumed to 30: every array,
    the Adam moments included, bit for bit equal to one uninterrupted run's."""
    run(adam_config(), corpus, tmp_path / "one.npz")
    # The first part steps a Trainer by hand: a run stopped by --max-iters would follow the
    # schedule of its own max_iters.
    partial = Trainer(adam_config(), corpus)
    for _ in range(stop):
        partial.step()
    save_checkpoint(tmp_path / "two.npz", partial.to_checkpoint())
    saved = load_checkpoint(tmp_path / "two.npz")
    assert saved.state["iteration"] == stop
    assert set(saved.optimizer_state) == {"adam.m", "adam.v"}
    resumed = run(resumed_config(saved.config, {}), corpus, tmp_path / "two.npz", saved)
    assert resumed.optimizer.steps_taken == 30
    assert_identical_checkpoints(tmp_path / "one.npz", tmp_path / "two.npz",
                                 compare_history=False)


def test_adam_checkpoint_holds_both_moments_and_no_adagrad_memory(corpus, tmp_path):
    run(adam_config(max_iters=5), corpus, tmp_path / "m.npz")
    arrays = read_npz(tmp_path / "m.npz")
    params = {key[len("params."):] for key in arrays if key.startswith("params.")}
    assert {key[len("adam.m."):] for key in arrays if key.startswith("adam.m.")} == params
    assert {key[len("adam.v."):] for key in arrays if key.startswith("adam.v.")} == params
    assert not any(key.startswith("adagrad.") for key in arrays)
    assert all((arrays["adam.v." + name] >= 0).all() for name in params)
    assert any((arrays["adam.m." + name] < 0).any() for name in params)


def rewritten(tmp_path, change) -> str:
    arrays = read_npz(tmp_path / "m.npz")
    change(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("adam.v.Why"), "'adam.v.Why' is missing"),
    (lambda a: a.update({"adam.v.by": -1 - a["adam.v.by"]}), "negative values"),
    (lambda a: a.update({"adagrad.by": a["adam.v.by"]}), "adagrad.by, which its model"),
    (lambda a: a.update({"adam.m.by": a["adam.m.by"][:-1]}), "adam.m.by has shape"),
], ids=["missing-moment", "negative-v", "other-optimiser's-array", "bad-shape"])
def test_adam_arrays_are_validated_on_load(corpus, tmp_path, change, message):
    run(adam_config(max_iters=5), corpus, tmp_path / "m.npz")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(rewritten(tmp_path, change))


# --------------------------------------------------------------------------- the CLI

def cli_run(*args, expect=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == expect, (result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.stderr
    return result


SMALL = ["--hidden-size", "8", "--seq-length", "8", "--batch-size", "2", "--max-iters", "6",
         "--eval-every", "3", "--sample-every", "0", "-q"]


def test_cli_trains_with_adam_at_its_default_rate_and_info_says_so(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(make_text(60), encoding="utf-8")
    model = tmp_path / "m.npz"
    cli_run("train", text, model, "--optimizer", "adam", *SMALL)
    saved = load_checkpoint(model)
    assert saved.config.optimizer == "adam"
    assert saved.config.learning_rate == DEFAULT_LEARNING_RATES["adam"]
    info = cli_run("info", model).stdout
    assert "optimizer        adam" in info
    # Resuming keeps Adam without being told (or when told again); another optimiser is a
    # one-line error.
    cli_run("train", text, model, "--resume", "--max-iters", "7", "-q")
    cli_run("train", text, model, "--resume", "--optimizer", "adam", "--max-iters", "8", "-q")
    assert load_checkpoint(model).state["iteration"] == 8
    assert load_checkpoint(model).config.optimizer == "adam"
    result = cli_run("train", text, model, "--resume", "--optimizer", "adagrad",
                     "--max-iters", "9", expect=1)
    assert "--optimizer adagrad conflicts with the checkpoint" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert load_checkpoint(model).state["iteration"] == 8


def test_cli_refuses_an_unknown_optimiser(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(make_text(60), encoding="utf-8")
    result = cli_run("train", text, tmp_path / "m.npz", "--optimizer", "sgd", *SMALL, expect=2)
    assert "'sgd' is not one of 'adagrad', 'adam'" in result.stderr
    assert not (tmp_path / "m.npz").exists()


def test_help_gives_both_default_learning_rates():
    help_text = " ".join(cli_run("train", "--help").stdout.split())
    assert "0.07 with adagrad, 0.003 with adam" in help_text
    assert "adagrad for rnn, adam for lstm, adam for gru" in help_text
