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

from .checkpoint import (HISTORY_COLUMNS, Checkpoint, CheckpointError, History, TrainingState,
                         load_checkpoint, save_checkpoint)
from .config import (DEFAULT_MAX_PASSES, DEFAULT_TIME_BUDGET, MAX_ITERS, TrainConfig,
                     resumed_config)
from .data import (Corpus, CorpusError, UndecodableTextError, UnknownCharactersError,
                   WindowCursor, make_streams, min_stream_length, read_sources, split_corpus,
                   validation_size)
from .evaluate import score_text
from .model import Network
from .model.groups import GroupedStep, group_count
from .optim import OPTIMIZERS, clip_gradients, make_optimizer, scheduled_learning_rate
from .runfiles import atomic_file, best_path, history_path
from .sample import generate
from .threads import (SINGLE_THREAD_BELOW, set_blas_threads, training_threads, usable_cores,
                      user_chose_threads)

LOSS_SMOOTHING = 0.99          # smooth_loss = 0.99 * smooth_loss + 0.01 * loss, per iteration
TRAINING_SAMPLE_LENGTH = 200   # characters shown by --sample-every
# What a layer costs besides its arrays: the Python objects of its views, workspace and
# cache (measured at about 15 kB a layer with 8 units; rounded up).
LAYER_OVERHEAD_BYTES = 32_000


# Evaluations during training score at most EVAL_SAMPLE_PIECES pieces of EVAL_SAMPLE_PIECE
# characters of the held-out text (131,072 characters), so that their cost does not grow with
# the corpus; the end of a run scores all of it.
EVAL_SAMPLE_PIECES = 32
EVAL_SAMPLE_PIECE = 4096
# ... and the end of a run scores all of it only up to this many characters (32 samples'
# worth): on a 200 MB corpus, all 19 million held-out characters took 33 s, 11% of a
# 5-minute run (benchmarks/bench_eval_share.py).
FULL_EVAL_MAX_CHARS = 32 * EVAL_SAMPLE_PIECES * EVAL_SAMPLE_PIECE
MIN_USEFUL_SEQ_LENGTH = 8      # shorter windows teach a model next to nothing
MANY_PASSES = 1000             # a run of more passes over its text than this gets a note first
LN2 = math.log(2)


def bits(nats: float) -> float:
    """Nats per character -> bits per character (bits = nats / ln 2)."""
    return nats / LN2


def loss_text(nats: float, digits: int = 3) -> str:
    """``2.354 bits/char (1.632 nats)``: a loss per character, bits first, nats beside it."""
    return f"{bits(nats):.{digits}f} bits/char ({nats:.{digits}f} nats)"


def evaluation_sample(val_indices: np.ndarray) -> np.ndarray:
    """What evaluations during training score: all of the held-out text when it has at most
    EVAL_SAMPLE_PIECES * EVAL_SAMPLE_PIECE characters, else that many evenly spaced pieces of
    it (the first at its start, the last at its end), joined: the same sample every time, so
    that the figures are comparable with each other."""
    n = len(val_indices)
    if n <= EVAL_SAMPLE_PIECES * EVAL_SAMPLE_PIECE:
        return val_indices
    starts = np.arange(EVAL_SAMPLE_PIECES) * (n - EVAL_SAMPLE_PIECE) // (EVAL_SAMPLE_PIECES - 1)
    return np.concatenate([val_indices[start:start + EVAL_SAMPLE_PIECE] for start in starts])


class TrainingError(Exception):
    """Training cannot start or cannot go on; the message says why in one line."""


class Trainer:
    """A model in training: parameters, the optimiser, the streams, and where each stream is."""

    def __init__(self, config: TrainConfig, corpus: Corpus, checkpoint: Checkpoint | None = None):
        self.config = config
        self.vocab = corpus.vocab
        self.text_sha256 = corpus.sha256
        self.corpus_files = corpus.file_list() or None
        train_indices, self.val_indices = split_corpus(corpus, config.val_fraction)
        self.val_sample = evaluation_sample(self.val_indices)
        self.train_chars = len(train_indices)
        self.full_val_loss: float | None = None
        self.length_ceiling = MAX_ITERS   # the most iterations a time budget may choose
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
            self.history = History()
            self.best_val_loss = math.inf
        else:
            state: TrainingState = checkpoint.state
            self.params = checkpoint.params
            self.optimizer_state = checkpoint.optimizer_state
            self.carry = checkpoint.carry
            self.iteration, self.chars_seen = state.iteration, state.chars_seen
            self.position = state.position
            self.smooth_loss = float(state.smooth_loss)
            self.elapsed_seconds = float(state.elapsed_seconds)
            self.history = checkpoint.history
            best = state.best_val_loss
            self.best_val_loss = math.inf if best is None else best
            if state.rng_state is not None:
                self.rng.bit_generator.state = state.rng_state
            if state.text_sha256 != corpus.sha256 or self.position >= len(self.streams):
                # Another text (or an edited one): the old stream positions mean nothing here.
                self.position = 0
        # How the run computes a window (see use_threads), fixed when it starts and saved:
        # float32 results differ in their last bits with another split of the work.
        self.blas_threads = checkpoint.state.blas_threads if checkpoint else None
        self.stream_groups = checkpoint.state.stream_groups if checkpoint else None
        self.resumed = checkpoint is not None
        self.grouped_step: GroupedStep | None = None
        self.grads = self.params.zeros_like()
        self.optimizer = make_optimizer(
            config.optimizer, {slot: values.flat for slot, values in self.optimizer_state.items()},
            config.learning_rate, steps_taken=self.iteration)
        self.cursor = WindowCursor(self.streams, config.seq_length, self.position)

    @property
    def scores_all_at_end(self) -> bool:
        """Whether the end of the run scores all of the held-out text, besides the evaluation
        sample: when it is larger than the sample, up to FULL_EVAL_MAX_CHARS characters."""
        return len(self.val_sample) < len(self.val_indices) <= FULL_EVAL_MAX_CHARS

    @property
    def chars_per_iteration(self) -> int:
        return self.config.seq_length * self.config.batch_size

    @property
    def passes(self) -> float:
        """Passes over the training text so far (epochs): characters seen / its length."""
        return self.chars_seen / self.train_chars if self.train_chars else 0.0

    def iterations_for_passes(self, passes: float) -> int:
        """The iteration count at which the run has made ``passes`` passes over its text."""
        return max(1, math.ceil(passes * self.train_chars / self.chars_per_iteration))

    def use_threads(self, requested: int | None = None) -> list[str]:
        """Choose how windows are computed, and return notes for the user about the choice.

        A new run whose recurrence products are large enough (threads.threads_for) cuts its
        B streams into groups, one per core (or per ``requested`` thread), computed side by
        side on threads of our own with one-threaded BLAS (model/groups.py): results that do
        not depend on how many threads run the groups, and threads that share a busy machine
        instead of stalling each other. The group count is saved; on resume, ``requested``
        only says how many threads run the groups. A run saved before groups existed (or a
        small model: one group) computes the whole batch at once with ``blas_threads`` BLAS
        threads, chosen as training_threads says.
        """
        config = self.config
        B, H = config.batch_size, config.hidden_size
        if self.stream_groups is None:
            # Saved by 0.4.0 or before: go on as it was trained. OPENBLAS_NUM_THREADS or
            # OMP_NUM_THREADS set: the user's thread count, for the whole batch at once.
            if self.resumed or user_chose_threads() or B * H * H < SINGLE_THREAD_BELOW:
                self.stream_groups = 1
            else:
                self.stream_groups = group_count(B, min(requested or usable_cores(),
                                                        usable_cores()))
        if self.stream_groups == 1:
            count, notes = training_threads(requested, self.blas_threads, B, H)
            set_blas_threads(count)
            self.blas_threads = count
            return notes
        notes = []
        threads = min(requested or self.stream_groups, self.stream_groups, usable_cores())
        if requested is not None and requested > threads:
            notes.append(f"--threads {requested}: this run computes its streams in "
                         f"{self.stream_groups} groups on at most {threads} thread(s)")
        set_blas_threads(1)
        self.blas_threads = 1
        if self.grouped_step is not None:
            self.grouped_step.close()
        self.grouped_step = GroupedStep(self.network, B, self.stream_groups, threads)
        return notes

    def close(self) -> None:
        """Stop the threads of a grouped run (safe to call twice)."""
        if self.grouped_step is not None:
            self.grouped_step.close()

    def _forward_backward(self, inputs, targets, carry: dict, masks) -> float:
        """The window's loss; every gradient into self.grads; ``carry`` moved to the window's
        end, in place."""
        if self.grouped_step is not None:
            return self.grouped_step(self.params, inputs, targets, carry, masks, self.grads)
        loss, cache = self.network.forward(self.params, inputs, targets, carry, masks)
        self.network.backward(self.params, cache, self.grads)
        self.network.carry_state(carry, cache)
        return loss

    def time_step(self, rng: np.random.Generator) -> float:
        """Seconds one iteration takes, measured on the next window without changing the run:
        forward, backward, clipping, and an optimiser update of copies of the weights and
        the optimiser's state (so that a run timed first is still bit for bit the run of
        its iteration count)."""
        inputs, targets, _ = WindowCursor(self.streams, self.config.seq_length,
                                          self.position).next_window()
        params = self.params.flat.copy()
        probe = make_optimizer(self.config.optimizer,
                               {slot: values.flat.copy()
                                for slot, values in self.optimizer_state.items()},
                               self.config.learning_rate, steps_taken=self.iteration)
        start = time.perf_counter()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            masks = self.network.draw_dropout_masks(rng, *inputs.shape)
            carry = {name: value.copy() for name, value in self.carry.items()}
            self._forward_backward(inputs, targets, carry, masks)
            clip_gradients(self.grads.flat, self.config.clip)
            probe.update(params, self.grads.flat)
        return time.perf_counter() - start

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
            loss = self._forward_backward(inputs, targets, self.carry, masks)
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

    def validation_loss(self, everything: bool = False) -> float:
        """Mean loss per character (nats) on the evaluation sample of the held-out text (see
        evaluation_sample), or with ``everything`` on all of it; NaN when there is none."""
        indices = self.val_indices if everything else self.val_sample
        if len(indices) < 2:
            return math.nan
        # Weights on their way to blowing up overflow here first: say so, with advice,
        # rather than letting NumPy warn and a NaN enter the history.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            loss = score_text(self.network, self.params, indices).nats_per_char
        if not math.isfinite(loss):
            raise self.divergence(self.iteration)
        return loss

    def record_evaluation(self, val_loss: float) -> bool:
        """Append a history row; returns True if ``val_loss`` is the best so far."""
        self.history = self.history.appended(self.iteration, self.chars_seen, self.smooth_loss,
                                             val_loss, self.elapsed_seconds)
        improved = val_loss < self.best_val_loss
        if improved:
            self.best_val_loss = val_loss
        return improved

    def sample(self, length: int = TRAINING_SAMPLE_LENGTH) -> str:
        """A short sample, from an RNG of its own so that training stays unaffected."""
        rng = np.random.default_rng([self.config.random_seed, self.iteration])
        return "".join(generate(self.network, self.params, self.vocab, "", length, rng))

    def to_checkpoint(self) -> Checkpoint:
        last_val = self.history.last_val_loss
        state = TrainingState(
            iteration=self.iteration, position=self.position, chars_seen=self.chars_seen,
            smooth_loss=self.smooth_loss, elapsed_seconds=self.elapsed_seconds,
            rng_state=self.rng.bit_generator.state, text_sha256=self.text_sha256,
            best_val_loss=None if math.isinf(self.best_val_loss) else self.best_val_loss,
            last_val_loss=None if math.isnan(last_val) else last_val,
            blas_threads=self.blas_threads, stream_groups=self.stream_groups,
            corpus_files=self.corpus_files,
            train_chars=self.train_chars, val_chars=len(self.val_sample),
            val_total_chars=len(self.val_indices), full_val_loss=self.full_val_loss)
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
    does not fit, check_text_fits explains. A chosen batch size that would leave windows
    shorter than MIN_USEFUL_SEQ_LENGTH is refused (TrainingError), saying what would fit.
    """
    num_train = num_chars - validation_size(num_chars, config.val_fraction)
    B, T = config.batch_size, config.seq_length
    if "batch_size" in adjustable and B * min_stream_length(T) > num_train:
        B = max(1, num_train // min_stream_length(T))
    if "seq_length" in adjustable and B * min_stream_length(T) > num_train:
        fitted = max(1, num_train // B - 2)
        if "batch_size" not in adjustable and fitted < min(MIN_USEFUL_SEQ_LENGTH, T):
            fitting = num_train // min_stream_length(T)
            hint = (f"--batch-size {fitting} would fit --seq-length {T}" if fitting >= 1 else
                    f"--batch-size 1 would fit --seq-length {max(1, num_train - 2)}")
            raise TrainingError(
                f"--batch-size {B} leaves windows of {fitted} character(s) on this text "
                f"({num_train:,} training characters), too short to learn from; {hint}, or "
                f"give --seq-length yourself")
        T = fitted
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


def rising_streak(history: History) -> int:
    """How many evaluations in a row, ending with the latest, had a higher validation loss
    than the evaluation before them (0 if the latest did not rise; a NaN ends the streak)."""
    val = History(history).val_loss
    streak = 0
    while streak + 1 < len(val) and val[-1 - streak] > val[-2 - streak]:
        streak += 1
    return streak


def overfitting_message(history: History, best_checkpoint: str) -> str | None:
    """A note for the user when the validation loss has just risen OVERFIT_PATIENCE times in a
    row (once per rise: not again at the next evaluation while it keeps rising), else None."""
    streak = rising_streak(history)
    if streak != OVERFIT_PATIENCE:
        return None
    val = History(history).val_loss
    before, now = val[-1 - streak], val[-1]
    return (f"note: the validation loss has risen {streak} evaluations in a row ({bits(before):.3f} "
            f"-> {bits(now):.3f} bits/char): the model is learning its training text by heart. "
            f"The best model so far is kept in {best_checkpoint}; train for less (--time, "
            f"--max-iters, --max-passes), use a smaller --hidden-size, or give it more text")


# --------------------------------------------------------------------------- the time budget

PROBE_SHARE = 0.02        # of a time budget spent timing iterations before the count is fixed
PROBE_STEPS = (3, 30)     # and at least / at most this many timed iterations
BUDGET_TARGET = 0.98      # plan to end here, of the budget: the rest absorbs the clock's noise


@dataclass
class Costs:
    """Seconds that a run's parts take, measured on this machine: an iteration, an evaluation
    of the evaluation sample (with the best twin's save and the history), a checkpoint save,
    a sample shown, and the final evaluation of all the held-out text."""
    step: float
    evaluation: float
    save: float
    sample: float
    final: float

    def per_iteration(self, config: TrainConfig) -> float:
        """Seconds an iteration costs with its share of evaluations, saves and samples."""
        sample = self.sample / config.sample_every if config.sample_every else 0.0
        return (self.step + self.evaluation / config.eval_every
                + self.save / config.checkpoint_every + sample)


def measure_costs(trainer: Trainer, budget: float) -> Costs:
    """Time iterations (Trainer.time_step: the run itself is unchanged) and one evaluation;
    the save's cost is left at 0 for the caller to time (see plan_within)."""
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    times = []
    while len(times) < PROBE_STEPS[1] and (
            len(times) < PROBE_STEPS[0] or time.perf_counter() - started < PROBE_SHARE * budget):
        times.append(trainer.time_step(rng))
    step = float(np.median(times[1:]))   # the first pays for warming BLAS and caches up
    clock = time.perf_counter()
    trainer.validation_loss()
    evaluation = time.perf_counter() - clock
    sample = step * TRAINING_SAMPLE_LENGTH / trainer.chars_per_iteration * 4
    final = 0.0
    if trainer.scores_all_at_end:
        final = evaluation * len(trainer.val_indices) / max(len(trainer.val_sample), 1)
    return Costs(step, evaluation, 0.0, sample, final)


def plan_within(trainer: Trainer, budget: float, started: float, save) -> Costs:
    """Fix ``config.max_iters`` to the count that fits what is left of ``budget`` (seconds
    since ``started``), within ``trainer.length_ceiling``; then save the checkpoint with that
    count (``save()``: a run killed from here on resumes to it), timing the save. Returns
    the costs measured."""
    costs = measure_costs(trainer, budget)
    left = BUDGET_TARGET * budget - (time.monotonic() - started)
    count = trainer.iteration + max(1, iterations_within(left, costs, trainer.config))
    trainer.config = dataclasses.replace(trainer.config,
                                         max_iters=min(count, trainer.length_ceiling))
    clock = time.perf_counter()
    save()
    costs.save = time.perf_counter() - clock
    costs.evaluation += costs.save   # an evaluation that improves saves the best twin
    return costs


def iterations_within(seconds: float, costs: Costs, config: TrainConfig) -> int:
    """How many more iterations fit in ``seconds``, with their evaluations and saves, the
    final evaluation and the final save."""
    left = seconds - costs.final - costs.evaluation - costs.save
    return max(0, int(left / costs.per_iteration(config)))


# --------------------------------------------------------------------------- a run's start

@dataclass
class Run:
    """A run ready to train: the trainer, and ``time_budget`` (seconds, or None) within which
    run_training is to fix the iteration count; ``finished`` when the model is already
    trained as far as asked (nothing to do)."""
    trainer: Trainer
    corpus: Corpus
    resumed: bool
    time_budget: float | None = None
    finished: bool = False


def start_run(sources, checkpoint_path: str, resume: bool, overrides: dict,
              time_budget: float | None = None, stdin: bytes | None = None, note=None) -> Run:
    """Decide what a run is: a new model, or the one at ``checkpoint_path`` resumed; read the
    corpus (``sources``, see data.find_sources); fit the sizes the user did not choose to a
    short text; fix the length (``overrides["max_iters"]``, ``time_budget`` seconds,
    ``overrides["max_passes"]``; with none of the first two, a new run gets
    DEFAULT_TIME_BUDGET and DEFAULT_MAX_PASSES). ``note(message)`` receives notes for the
    user. Raises TrainingError with a one-line message."""
    note = note or (lambda message: None)
    overrides = dict(overrides)
    given_length = "max_iters" in overrides or time_budget is not None
    saved = None
    try:
        if resume:
            saved = load_checkpoint(checkpoint_path)
            config = resumed_config(saved.config, overrides)
            try:
                corpus = read_sources(sources, config.encoding, vocab=saved.vocab, stdin=stdin)
            except UnknownCharactersError as unknown:
                if saved.state.corpus_files is not None:   # say which file changed, if one did
                    try:
                        check_same_corpus(saved.state, read_sources(sources, config.encoding,
                                                                    stdin=stdin))
                    except TrainingError as changed:
                        raise TrainingError(f"{changed}; the new text has {unknown}") from None
                raise
            check_same_corpus(saved.state, corpus)
        else:
            if not given_length:
                time_budget = DEFAULT_TIME_BUDGET
            if "max_iters" not in overrides:
                overrides.setdefault("max_passes", DEFAULT_MAX_PASSES)
            if time_budget is not None:
                overrides["time_budget"] = float(time_budget)
            config = TrainConfig.for_new_run(**overrides)
            corpus = read_sources(sources, config.encoding, stdin=stdin)
            if len(corpus.vocab) < 2:
                raise TrainingError(
                    f"{describe_sources(sources)} has a single distinct character "
                    f"({corpus.vocab.chars[0]!r}): there is nothing to learn")
            unchosen = [name for name in ("batch_size", "seq_length") if name not in overrides]
            fitted = fit_to_text(config, len(corpus.indices), adjustable=unchosen)
            if (fitted.batch_size, fitted.seq_length) != (config.batch_size, config.seq_length):
                note(f"note: {describe_sources(sources)} is short ({len(corpus.indices):,} "
                     f"characters); using --batch-size {fitted.batch_size} --seq-length "
                     f"{fitted.seq_length}")
            config = fitted
        trainer = Trainer(config, corpus, saved)
    except UnknownCharactersError as error:
        raise TrainingError(f"{describe_sources(sources)} has characters the checkpoint's model "
                            f"does not know ({error}); train a new model with --force") from None
    except UndecodableTextError as error:
        raise TrainingError(f"{error.without_advice}; the model reads {config.encoding} text "
                            f"(fixed when resuming)" if resume else str(error)) from None
    except (CheckpointError, CorpusError, ValueError) as error:
        raise TrainingError(str(error)) from None
    if corpus.byte_order_mark:
        note("note: the text starts with a byte-order mark (U+FEFF); it marks the encoding, "
             "it is not part of the text, and was left out")
    if corpus.binary_skipped:
        note(f"note: skipped {corpus.binary_skipped} file(s) that are not {config.encoding} "
             f"text (binary, or bytes that do not decode)")
    if saved is not None and saved.state.text_sha256 != corpus.sha256:
        note("note: the text differs from the one this model was trained on; its streams start "
             "again from the beginning")

    config = trainer.config
    fixed = "max_iters" in overrides or (saved is not None and time_budget is None)
    ceiling = config.max_iters if fixed else MAX_ITERS
    if config.max_passes and (time_budget is not None or "max_passes" in overrides):
        ceiling = min(ceiling, trainer.iterations_for_passes(config.max_passes))
    if trainer.iteration >= ceiling:
        time_budget = None
    if time_budget is not None:   # run_training fixes the count within these bounds
        trainer.config = dataclasses.replace(config, max_iters=max(ceiling, trainer.iteration + 1),
                                             time_budget=float(time_budget))
    else:
        trainer.config = dataclasses.replace(config, max_iters=ceiling)
    trainer.length_ceiling = ceiling
    if time_budget is None and trainer.iteration >= trainer.config.max_iters:
        note(f"{checkpoint_path} is already trained for {trainer.iteration} iterations; "
             f"raise --max-iters (or --max-passes) to train further")
        return Run(trainer, corpus, saved is not None, finished=True)
    planned = trainer.config.max_iters * trainer.chars_per_iteration / max(trainer.train_chars, 1)
    if time_budget is None and planned > MANY_PASSES:
        fitting = trainer.iterations_for_passes(DEFAULT_MAX_PASSES)
        note(f"note: the training text is small ({trainer.train_chars:,} characters): "
             f"{trainer.config.max_iters:,} iterations are {planned:,.0f} passes over it, and a "
             f"model learns a text by heart long before; --max-iters {fitting:,} is "
             f"{DEFAULT_MAX_PASSES:g} passes")
    return Run(trainer, corpus, saved is not None, time_budget=time_budget)


def describe_sources(sources) -> str:
    """``a.txt``, or ``a.txt and 3 more files``: the corpus in a message."""
    sources = list(sources)
    first = sources[0].name
    return first if len(sources) == 1 else f"{first} and {len(sources) - 1} more files"


def check_same_corpus(state: TrainingState, corpus: Corpus) -> None:
    """Raise TrainingError naming what changed if the checkpoint records the files it was
    trained on (0.5.0 and later) and ``corpus`` is not those files, unchanged."""
    if state.corpus_files is None:
        return   # an older checkpoint: only the text's hash (a note if it differs)
    if [list(entry) for entry in state.corpus_files] == corpus.file_list():
        return
    before = dict(map(tuple, state.corpus_files))
    now = dict(map(tuple, corpus.file_list()))
    changes = ([f"{name} is new" for name in now if name not in before]
               + [f"{name} is missing" for name in before if name not in now]
               + [f"{name} was edited" for name in now if name in before
                  and now[name] != before[name]])
    changes = changes or ["the files are in another order"]
    if changes:
        shown = "; ".join(changes[:3]) + (f"; and {len(changes) - 3} more" if len(changes) > 3 else "")
        raise TrainingError(f"cannot resume: the corpus changed since this model was trained "
                            f"({shown}); give the same files, or start a new model with --force")


# --------------------------------------------------------------------------- the loop

PLAIN_PROGRESS_SECONDS = 30.0   # a progress line this often when stderr is not a terminal


def run_training(trainer: Trainer, checkpoint_path: str, show_progress: bool = True,
                 log=None, time_budget: float | None = None,
                 started: float | None = None) -> Outcome:
    """Train up to ``config.max_iters``, evaluating, sampling and saving along the way.

    Saves to ``checkpoint_path`` every ``checkpoint_every`` iterations, at the end, and when
    SIGINT, SIGTERM or SIGHUP arrives (after finishing the current iteration). Whenever the validation
    loss improves, the model is also saved to ``best_path(checkpoint_path)``.
    ``log(message)`` receives messages for the user (defaults to stderr): the samples, and a
    note when the validation loss keeps rising (see overfitting_message).

    ``time_budget``: seconds the whole run may take, from ``started`` (a time.monotonic()
    reading; default: now). Iterations are timed first (without changing the run), and
    ``config.max_iters`` becomes the count that fits, evaluations and saves included, so
    that the learning-rate schedule spans the budget; it is saved, so a resumed run goes on
    exactly. If the machine's pace changes, BudgetKeeper moves the count so that the run
    still ends in time.

    Progress goes to a bar on a terminal, and to a plain line every PLAIN_PROGRESS_SECONDS
    elsewhere (a file or a pipe), never both.
    """
    started = time.monotonic() if started is None else started
    log = log or (lambda message: tqdm.write(message, file=sys.stderr))
    on_terminal = show_progress and _is_terminal(sys.stderr)
    bar = tqdm(total=trainer.config.max_iters, initial=trainer.iteration, unit="it",
               file=sys.stderr, disable=not on_terminal, dynamic_ncols=True, smoothing=0.05)
    val_loss = trainer.history.last_val_loss

    def save():
        trainer.check_finite()
        save_checkpoint(checkpoint_path, trainer.to_checkpoint())

    def evaluate(final: bool = False):
        nonlocal val_loss
        trainer.check_finite()
        clock = time.perf_counter()
        val_loss = trainer.validation_loss()
        if keeper is not None:   # the latest figure is the best guess of the last one's cost
            keeper.costs.evaluation = time.perf_counter() - clock + keeper.costs.save
        if trainer.record_evaluation(val_loss):
            save_checkpoint(best_path(checkpoint_path), trainer.to_checkpoint())
        write_history_csv(history_path(checkpoint_path), trainer.history)
        overfitting = overfitting_message(trainer.history, best_path(checkpoint_path))
        if overfitting:
            log(overfitting)
        if final and trainer.scores_all_at_end:
            trainer.full_val_loss = trainer.validation_loss(everything=True)

    keeper = None
    try:
        with deferred_signals() as caught:   # (Ctrl-C while timing: the loop does not start)
            if time_budget is not None:
                costs = plan_within(trainer, time_budget, started, save)
                bar.total = trainer.config.max_iters
                bar.refresh()
                log(f"--time {format_duration(time_budget)}: about "
                    f"{trainer.config.max_iters:,} iterations in all (an iteration takes "
                    f"{costs.step * 1000:.0f} ms here)")
                keeper = BudgetKeeper(trainer, costs, time_budget, started)
            clock = time.perf_counter()
            last_shown = 0.0
            last_line = time.monotonic()
            while trainer.iteration < trainer.config.max_iters and not caught:
                config = trainer.config
                trainer.step()
                now = time.perf_counter()
                trainer.elapsed_seconds += now - clock
                clock = now
                done = trainer.iteration == config.max_iters
                if keeper is not None and not done and keeper.check(trainer):
                    bar.total = trainer.config.max_iters
                    done = trainer.iteration >= trainer.config.max_iters
                if trainer.iteration % config.eval_every == 0 or done:
                    evaluate(final=done)
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
                if show_progress and not on_terminal and (
                        done or time.monotonic() - last_line >= PLAIN_PROGRESS_SECONDS):
                    last_line = time.monotonic()
                    log(progress_line(trainer, val_loss, started))
            if caught and trainer.iteration < trainer.config.max_iters:   # (at the end: saved)
                save()
                return Outcome(finished=False, signal_number=caught[0])
            if keeper is not None and keeper.changes:
                log(f"note: the iteration count followed this machine's pace "
                    f"({keeper.changes} change(s)); it ended at {trainer.iteration:,}, which "
                    f"the checkpoint keeps")
            return Outcome(finished=True)
    finally:
        bar.close()


class BudgetKeeper:
    """Keeps a run with a time budget on time. Every iteration: when what is left of the
    budget only just holds the final evaluation and save, the run ends there. And when the
    projected end misses the planned one by more than REPLAN_TOLERANCE of the budget, it
    moves ``config.max_iters`` to what fits: lower at any time (at the pace since the loop
    began, or if slower its mean with the pace since the last look; evaluations and saves
    included), higher only before the cool-down has begun (at the overall pace), so that the
    run still ends on a cooled-down model. It looks again only after REPLAN_GAP of the budget, so
    that one slow moment of a shared machine does not move the count back and forth."""
    REPLAN_TOLERANCE = 0.03
    REPLAN_GAP = 0.05
    MIN_ITERATIONS = 10

    def __init__(self, trainer: Trainer, costs: Costs, budget: float, started: float):
        self.costs, self.budget, self.started = costs, budget, started
        self.loop_start = self.last_check = time.monotonic()
        self.first_iteration = self.last_iteration = trainer.iteration
        self.changes = 0

    @property
    def end_costs(self) -> float:
        """Seconds the end of the run takes: the last evaluation (of the sample, and of all
        the held-out text) and the last save."""
        return self.costs.evaluation + self.costs.final + self.costs.save

    def check(self, trainer: Trainer) -> bool:
        """Re-plan if needed; True when ``trainer.config.max_iters`` changed."""
        now = time.monotonic()
        config = trainer.config
        left = BUDGET_TARGET * self.budget - (now - self.started) - self.end_costs
        if left <= 0:   # out of time: the next evaluation and save are the last
            trainer.config = dataclasses.replace(config, max_iters=trainer.iteration)
            self.changes += 1
            return True
        done = trainer.iteration - self.first_iteration
        if done < self.MIN_ITERATIONS or now - self.last_check < self.REPLAN_GAP * self.budget:
            return False
        overall = (now - self.loop_start) / done
        recent = (now - self.last_check) / max(trainer.iteration - self.last_iteration, 1)
        self.last_check, self.last_iteration = now, trainer.iteration
        remaining = config.max_iters - trainer.iteration
        if abs(remaining * overall - left) <= self.REPLAN_TOLERANCE * self.budget and (
                remaining * recent <= left + self.REPLAN_TOLERANCE * self.budget):
            return False
        slower = max(overall, (overall + recent) / 2)   # a slow moment counts, but only half
        if remaining * slower > left:
            count = trainer.iteration + max(1, int(left / slower))
        else:
            count = trainer.iteration + max(1, int(left / overall))
        count = min(count, trainer.length_ceiling)
        cooling = trainer.iteration >= config.max_iters * (1 - config.decay_fraction)
        if count == config.max_iters or (count > config.max_iters and cooling):
            return False
        trainer.config = dataclasses.replace(config, max_iters=count)
        self.changes += 1
        return True


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_duration(seconds: float) -> str:
    """``5m``, ``1h30m``, ``90s``, ``2m30s``: a duration as --time takes it."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if value]
    return "".join(parts) or f"{seconds:g}s"


def progress_text(trainer: Trainer, val_loss: float, bar) -> str:
    """The progress bar's postfix: smoothed train loss and latest validation loss in bits per
    character, passes over the text, the learning rate of the next update, chars/s."""
    rate = bar.format_dict.get("rate") or 0.0
    val = "-" if math.isnan(val_loss) else f"{bits(val_loss):.3f}"
    return (f"train {bits(trainer.smooth_loss):.3f} bits/char, val {val}, "
            f"pass {trainer.passes:.1f}, lr {trainer.next_learning_rate():.2g}, "
            f"{rate * trainer.chars_per_iteration / 1000:.0f}k chars/s")


def progress_line(trainer: Trainer, val_loss: float, started: float) -> str:
    """A plain progress line, for a stderr that is a file or a pipe."""
    val = "-" if math.isnan(val_loss) else f"{bits(val_loss):.3f}"
    return (f"iteration {trainer.iteration:,} of {trainer.config.max_iters:,} "
            f"(pass {trainer.passes:.1f}, {time.monotonic() - started:.0f} s): train "
            f"{bits(trainer.smooth_loss):.3f} bits/char, val {val}, "
            f"lr {trainer.next_learning_rate():.2g}")
