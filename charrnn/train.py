"""The training loop: windows in, optimiser steps out, with evaluation, checkpoints and samples."""
from __future__ import annotations

import csv
import dataclasses
import math
import os
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from .checkpoint import HISTORY_COLUMNS, Checkpoint, CheckpointError, save_checkpoint
from .config import TrainConfig
from .data import (Corpus, WindowCursor, make_streams, min_stream_length, split_validation,
                   validation_size)
from .evaluate import score_text
from .model import Network
from .optim import OPTIMIZERS, clip_gradients, make_optimizer, scheduled_learning_rate
from .runfiles import atomic_file, best_path, history_path
from .sample import generate

LOSS_SMOOTHING = 0.99          # smooth_loss = 0.99 * smooth_loss + 0.01 * loss, per iteration
TRAINING_SAMPLE_LENGTH = 200   # characters shown by --sample-every
# What a layer costs besides its arrays: the Python objects of its views, workspace and
# cache (measured at about 15 kB a layer with 8 units; rounded up).
LAYER_OVERHEAD_BYTES = 32_000


class TrainingError(Exception):
    """Training cannot start or cannot go on; the message says why in one line."""


class Trainer:
    """A model in training: parameters, the optimiser, the streams, and where each stream is."""

    def __init__(self, config: TrainConfig, corpus: Corpus, checkpoint: Checkpoint | None = None):
        self.config = config
        self.vocab = corpus.vocab
        self.text_sha256 = corpus.sha256
        train_indices, self.val_indices = split_validation(corpus.indices, config.val_fraction)
        check_text_fits(len(train_indices), config, resumed=checkpoint is not None)
        self.streams = make_streams(train_indices, config.batch_size)   # (L, B)
        self.rng = np.random.default_rng(config.random_seed)
        B = config.batch_size
        # From the run's settings, not the checkpoint's: dropout may change on resume.
        self.network = Network(config.model_spec(len(self.vocab)), config.dtype)
        check_memory(self.network, config, resumed=checkpoint is not None)

        if checkpoint is None:
            self.params = self.network.init_params(self.rng, config.init_scale)
            self.optimizer_state = {slot: self.params.zeros_like()
                                    for slot in OPTIMIZERS[config.optimizer].SLOTS}
            self.carry = self.network.zero_state(B)
            self.iteration = self.chars_seen = 0
            self.position = 0
            self.smooth_loss = math.log(len(self.vocab))   # the loss of a uniform guess
            self.elapsed_seconds = 0.0
            self.history = np.zeros((0, len(HISTORY_COLUMNS)))
            self.best_val_loss = math.inf
        else:
            state = checkpoint.state
            self.params = checkpoint.params
            self.optimizer_state = checkpoint.optimizer_state
            self.carry = checkpoint.carry
            self.iteration, self.chars_seen = state["iteration"], state["chars_seen"]
            self.position = state["position"]
            self.smooth_loss = float(state["smooth_loss"])
            self.elapsed_seconds = float(state["elapsed_seconds"])
            self.history = checkpoint.history
            best = state.get("best_val_loss")
            self.best_val_loss = math.inf if best is None else best
            if "rng_state" in state:
                self.rng.bit_generator.state = state["rng_state"]
            if state.get("text_sha256") != corpus.sha256 or self.position >= len(self.streams):
                # Another text (or an edited one): the old stream positions mean nothing here.
                self.position = 0
        # The BLAS thread count the run uses: float32 products differ in their last bits with
        # another count, so it is saved and a resumed run reuses it.
        self.blas_threads = checkpoint.state.get("blas_threads") if checkpoint else None
        self.grads = self.params.zeros_like()
        self.optimizer = make_optimizer(
            config.optimizer, {slot: values.flat for slot, values in self.optimizer_state.items()},
            config.learning_rate, steps_taken=self.iteration)
        self.cursor = WindowCursor(self.streams, config.seq_length, self.position)

    @property
    def chars_per_iteration(self) -> int:
        return self.config.seq_length * self.config.batch_size

    def step(self) -> float:
        """One iteration of truncated BPTT and an optimiser step; returns the mean loss per character."""
        inputs, targets, restarted = self.cursor.next_window()
        if restarted:
            for array in self.carry.values():   # a new pass starts from a zero state
                array.fill(0)
        self.optimizer.learning_rate = self.next_learning_rate()
        # Overflow is caught below, with advice, rather than as NumPy warnings along the way.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            masks = self.network.draw_dropout_masks(self.rng, *inputs.shape)
            loss, cache = self.network.forward(self.params, inputs, targets, self.carry, masks)
            self.network.backward(self.params, cache, self.grads)
            self.network.carry_state(self.carry, cache)
            clip_gradients(self.grads.flat, self.config.clip)
            self.optimizer.update(self.params.flat, self.grads.flat)

        loss_per_char = loss / self.config.seq_length
        # Weights that overflow make the next loss NaN, so checking the loss catches them a
        # step later; check_finite() closes the gap before every save.
        if not math.isfinite(loss_per_char):
            raise self.divergence(self.iteration + 1)
        self.iteration += 1
        self.position = self.cursor.position
        self.chars_seen += self.chars_per_iteration
        self.smooth_loss = LOSS_SMOOTHING * self.smooth_loss + (1 - LOSS_SMOOTHING) * loss_per_char
        return loss_per_char

    def next_learning_rate(self) -> float:
        """The learning rate of the next update, from the warm-up/hold/cool-down schedule."""
        config = self.config
        return scheduled_learning_rate(config.learning_rate, self.iteration, config.max_iters,
                                       config.warmup_fraction, config.decay_fraction)

    def divergence(self, iteration: int) -> TrainingError:
        return TrainingError(
            f"training diverged at iteration {iteration} (the loss or the weights became NaN "
            f"or inf); nothing of it was saved, any checkpoint on disk is the last good one. "
            f"Try a lower --learning-rate (now {self.config.learning_rate}) or a lower --clip "
            f"(now {self.config.clip})")

    def check_finite(self) -> None:
        """Raise TrainingError (with advice) if any weight is NaN or inf."""
        if not np.isfinite(self.params.flat).all():
            raise self.divergence(self.iteration)

    def validation_loss(self) -> float:
        """Mean loss per character (nats) on the held-out text; NaN when there is none."""
        if len(self.val_indices) < 2:
            return math.nan
        # Weights on their way to blowing up overflow here first: say so, with advice,
        # rather than letting NumPy warn and a NaN enter the history.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            loss = score_text(self.network, self.params, self.val_indices).nats_per_char
        if not math.isfinite(loss):
            raise self.divergence(self.iteration)
        return loss

    def record_evaluation(self, val_loss: float) -> bool:
        """Append a history row; returns True if ``val_loss`` is the best so far."""
        row = [self.iteration, self.chars_seen, self.smooth_loss, val_loss, self.elapsed_seconds]
        self.history = np.vstack([self.history, row])
        improved = val_loss < self.best_val_loss
        if improved:
            self.best_val_loss = val_loss
        return improved

    def sample(self, length: int = TRAINING_SAMPLE_LENGTH) -> str:
        """A short sample, from an RNG of its own so that training stays unaffected."""
        rng = np.random.default_rng([self.config.random_seed, self.iteration])
        return "".join(generate(self.network, self.params, self.vocab, "", length, rng))

    def to_checkpoint(self) -> Checkpoint:
        last_val = float(self.history[-1, 3]) if len(self.history) else None
        state = {
            "iteration": self.iteration,
            "position": self.position,
            "chars_seen": self.chars_seen,
            "smooth_loss": self.smooth_loss,
            "elapsed_seconds": self.elapsed_seconds,
            "rng_state": self.rng.bit_generator.state,
            "text_sha256": self.text_sha256,
            "best_val_loss": None if math.isinf(self.best_val_loss) else self.best_val_loss,
            "last_val_loss": None if last_val is None or math.isnan(last_val) else last_val,
            "blas_threads": self.blas_threads,
        }
        carry = {name: array.copy() for name, array in self.carry.items()}
        return Checkpoint(self.config, self.vocab, self.params, self.optimizer_state, carry,
                          state, self.history.copy())


def training_memory_bytes(network: Network, config: TrainConfig) -> int:
    """A lower estimate of the memory training allocates, in bytes: the parameters five or
    six times (weights, gradients, the optimiser's one or two slots and its two scratch
    arrays), the buffers of one window, and each layer's Python objects. Python integers throughout, so absurd sizes cannot
    overflow."""
    params = sum(math.prod(shape) for shape in network.param_shapes.values())
    copies = 4 + len(OPTIMIZERS[config.optimizer].SLOTS)
    return (copies * params * network.dtype.itemsize
            + network.workspace_bytes(config.seq_length, config.batch_size)
            + LAYER_OVERHEAD_BYTES * config.num_layers)


def physical_memory_bytes() -> int | None:
    """The machine's RAM in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def format_bytes(count: float) -> str:
    """``12.0 TB``, ``850 MB``: a byte count for people (decimal units)."""
    if count > 10**18:   # also keeps integers too large for a float out of the division
        return "more than 1,000,000 TB"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= size:
            return f"{count / size:,.1f} {unit}" if count < 100 * size else f"{count / size:,.0f} {unit}"
    return f"{count / 1e3:.0f} kB"


def check_memory(network: Network, config: TrainConfig, resumed: bool = False) -> None:
    """Raise TrainingError, before anything is allocated, if training this model needs more
    memory than the machine has (see training_memory_bytes), saying how much it needs."""
    needed, available = training_memory_bytes(network, config), physical_memory_bytes()
    if available is None or needed <= available:
        return
    advice = ("this model cannot be trained further on this machine" if resumed else
              "use a smaller --hidden-size (or --batch-size, --seq-length)")
    raise TrainingError(
        f"training a model of hidden size {config.hidden_size} on {network.vocab_size:,} "
        f"characters needs at least {format_bytes(needed)} of memory, more than this machine's "
        f"{format_bytes(available)}; {advice}")


def check_text_fits(num_train_chars: int, config: TrainConfig, resumed: bool = False) -> None:
    """Raise TrainingError unless the training text gives every stream at least one window.

    The message gives the settings as values, not as options the user may never have typed,
    and a resumed run (whose sizes are fixed) is not advised to change them.
    """
    needed = min_stream_length(config.seq_length) * config.batch_size
    smallest = min_stream_length(1)
    held_out = (f"after holding out {config.val_fraction * 100:g}% of it for validation"
                + ("" if resumed else ", see --val-fraction"))
    if num_train_chars < smallest:
        raise TrainingError(f"the training text has {num_train_chars} characters ({held_out}); "
                            f"at least {smallest} are needed")
    if num_train_chars < needed:
        sizes = (f"a batch size of {config.batch_size} and a sequence length of "
                 f"{config.seq_length} need at least {needed} (batch size * (sequence length + 2))")
        if resumed:
            raise TrainingError(
                f"the training text has {num_train_chars} characters ({held_out}), but this "
                f"model's {sizes}, and they are fixed when resuming; use a longer text, or start "
                f"a new model with --force")
        fitting_batch = num_train_chars // min_stream_length(config.seq_length)
        hint = (f"--batch-size {fitting_batch} would fit" if fitting_batch >= 1 else
                f"--seq-length {num_train_chars - 2} --batch-size 1 is the most that fits")
        raise TrainingError(
            f"the training text has {num_train_chars} characters ({held_out}), but {sizes}; "
            f"{hint}, or use a longer text")


def fit_to_text(config: TrainConfig, num_chars: int, adjustable=("batch_size", "seq_length")
                ) -> TrainConfig:
    """Shrink the settings named in ``adjustable`` until a text of ``num_chars`` fits.

    Batch size goes first (fewer, longer streams), then sequence length. Settings the user
    chose are left out of ``adjustable``, so a choice is never overridden; if the text still
    does not fit, check_text_fits explains.
    """
    num_train = num_chars - validation_size(num_chars, config.val_fraction)
    B, T = config.batch_size, config.seq_length
    if "batch_size" in adjustable and B * min_stream_length(T) > num_train:
        B = max(1, num_train // min_stream_length(T))
    if "seq_length" in adjustable and B * min_stream_length(T) > num_train:
        T = max(1, num_train // B - 2)
    return dataclasses.replace(config, batch_size=B, seq_length=T)


@dataclass
class Outcome:
    """How a training run ended: ``finished``, or ``interrupted`` by signal ``signal_number``."""
    finished: bool
    signal_number: int | None = None


STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM) + (
    (signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())


@contextmanager
def deferred_signals(signal_numbers=STOPPING_SIGNALS):
    """Record SIGINT/SIGTERM/SIGHUP instead of dying, so the loop can stop at a safe point
    (a closed terminal's SIGHUP saves the model like Ctrl-C).

    A signal that the process was started with ignored stays ignored, by the Unix convention:
    a job started in the background (``charrnn train ... &`` from a script) ignores SIGINT,
    so that a Ctrl-C meant for the terminal's foreground does not stop it; ``nohup`` ignores
    SIGHUP, so that closing the terminal does not.
    Yields a list that receives the numbers of the signals caught.
    """
    caught: list[int] = []
    previous = {}
    try:
        for number in signal_numbers:
            if signal.getsignal(number) is not signal.SIG_IGN:
                previous[number] = signal.signal(number, lambda n, frame: caught.append(n))
    except ValueError:   # not the main thread: signals cannot be handled here
        pass
    try:
        yield caught
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def write_history_csv(path: str, history: np.ndarray) -> None:
    """Write the evaluation history as CSV (atomically, like checkpoints).

    Raises CheckpointError if it cannot be written.
    """
    try:
        with atomic_file(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(HISTORY_COLUMNS)
            for row in history:
                iteration, chars, train_loss, val_loss, seconds = row
                writer.writerow([int(iteration), int(chars), f"{train_loss:.6f}",
                                 "" if math.isnan(val_loss) else f"{val_loss:.6f}", f"{seconds:.2f}"])
    except OSError as error:
        raise CheckpointError(f"could not write history {path}: {error.strerror or error}") from None


OVERFIT_PATIENCE = 3   # validation losses rising this many evaluations in a row: say so


def rising_streak(history: np.ndarray) -> int:
    """How many evaluations in a row, ending with the latest, had a higher validation loss
    than the evaluation before them (0 if the latest did not rise; a NaN ends the streak).

    ``history`` has one row per evaluation, the validation loss in column 3.
    """
    val = history[:, 3]
    streak = 0
    while streak + 1 < len(val) and val[-1 - streak] > val[-2 - streak]:
        streak += 1
    return streak


def overfitting_message(history: np.ndarray, best_checkpoint: str) -> str | None:
    """A note for the user when the validation loss has just risen OVERFIT_PATIENCE times in a
    row (once per rise: not again at the next evaluation while it keeps rising), else None."""
    streak = rising_streak(history)
    if streak != OVERFIT_PATIENCE:
        return None
    before, now = history[-1 - streak, 3], history[-1, 3]
    return (f"note: the validation loss has risen {streak} evaluations in a row ({before:.3f} -> "
            f"{now:.3f} nats/char): the model is learning its training text by heart. The best "
            f"model so far is kept in {best_checkpoint}; train for fewer iterations "
            f"(--max-iters), use a smaller --hidden-size, or give it more text")


def run_training(trainer: Trainer, checkpoint_path: str, show_progress: bool = True,
                 log=None) -> Outcome:
    """Train up to ``config.max_iters``, evaluating, sampling and saving along the way.

    Saves to ``checkpoint_path`` every ``checkpoint_every`` iterations, at the end, and when
    SIGINT, SIGTERM or SIGHUP arrives (after finishing the current iteration). Whenever the validation
    loss improves, the model is also saved to ``best_path(checkpoint_path)``.
    ``log(message)`` receives messages for the user (defaults to stderr): the samples, and a
    note when the validation loss keeps rising (see overfitting_message).
    """
    config = trainer.config
    log = log or (lambda message: tqdm.write(message, file=sys.stderr))
    bar = tqdm(total=config.max_iters, initial=trainer.iteration, unit="it", file=sys.stderr,
               disable=not show_progress, dynamic_ncols=True, smoothing=0.05)
    val_loss = trainer.history[-1, 3] if len(trainer.history) else math.nan

    def save():
        trainer.check_finite()
        save_checkpoint(checkpoint_path, trainer.to_checkpoint())

    def evaluate():
        nonlocal val_loss
        trainer.check_finite()
        val_loss = trainer.validation_loss()
        if trainer.record_evaluation(val_loss):
            save_checkpoint(best_path(checkpoint_path), trainer.to_checkpoint())
        write_history_csv(history_path(checkpoint_path), trainer.history)
        overfitting = overfitting_message(trainer.history, best_path(checkpoint_path))
        if overfitting:
            log(overfitting)

    try:
        with deferred_signals() as caught:
            clock = time.perf_counter()
            last_shown = 0.0
            while trainer.iteration < config.max_iters and not caught:
                trainer.step()
                now = time.perf_counter()
                trainer.elapsed_seconds += now - clock
                clock = now
                done = trainer.iteration == config.max_iters
                if trainer.iteration % config.eval_every == 0 or done:
                    evaluate()
                    clock = time.perf_counter()   # evaluation time is not training time
                if config.sample_every and trainer.iteration % config.sample_every == 0:
                    log(f"--- sample at iteration {trainer.iteration} ---\n{trainer.sample()}\n---")
                    clock = time.perf_counter()
                if trainer.iteration % config.checkpoint_every == 0 or done:
                    save()
                    clock = time.perf_counter()
                bar.update(1)
                if now - last_shown > 0.5 or done:
                    last_shown = now
                    bar.set_postfix_str(progress_text(trainer, val_loss, bar), refresh=False)
            if caught and trainer.iteration < config.max_iters:   # (at the end: saved, done)
                save()
                return Outcome(finished=False, signal_number=caught[0])
            return Outcome(finished=True)
    finally:
        bar.close()


def progress_text(trainer: Trainer, val_loss: float, bar) -> str:
    """The progress bar's postfix: smoothed train loss, latest validation loss, the learning
    rate of the next update, chars/s."""
    rate = bar.format_dict.get("rate") or 0.0
    val = "-" if math.isnan(val_loss) else f"{val_loss:.3f}"
    return (f"loss {trainer.smooth_loss:.3f} nats/char, val {val}, "
            f"lr {trainer.next_learning_rate():.2g}, "
            f"{rate * trainer.chars_per_iteration / 1000:.0f}k chars/s")
