"""The ``charrnn`` command line: parse, call, print. Text on stdout; everything else on stderr."""
from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import sys
import time

import click
from click.core import ParameterSource
import numpy as np
from tqdm import tqdm

from . import __version__
from . import runfiles
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .console import (StdoutError, check_stdout_shows, detach_stdout, emit,  # noqa: F401
                      quiet_from_now, say, stdout_error, write_stream)
from .config import (DEFAULT_LEARNING_RATES, DEFAULT_MAX_PASSES, DEFAULT_OPTIMIZERS,
                     DEFAULT_SCHEDULES, MAX_ITERS, TrainConfig, describe_model)
from .data import (STDIN, CorpusError, UndecodableTextError, UnknownCharactersError, corpus_name,
                   encode_text, eval_stream_count, find_sources, read_sources, read_stdin_bytes)
from .evaluate import chars_scored, perplexity_text, score_text
from .export import (JSON_WARNING_BYTES, ExportError, check_export_output, default_output,
                     export_model, format_for)
from .importer import ImportModelError, checkpoint_from_export
from .interactive import prompt_lines, run_session
from .model import CELLS
from .options import (POSITIVE, Duration, Fraction, RepeatWords,
                      Temperature, TopP, nonempty_stops, range_help)
from .optim import OPTIMIZERS
from .page import WARN_PAGE_BYTES, PageError, PageSettings, check_page_size, render_writer_page
from .prompts import PromptError, read_prompt_file, read_prompt_stream
from .sample import Settings, continuation
from .threads import set_blas_threads, threads_for
from .plot import PlotUnavailable, plot_history
from .runfiles import (RunFilesError, best_path, check_page_output, check_plot_output,
                       check_writer_page_output, claimed_run, history_path, plot_path,
                       prepare_run, text_page_name, training_checkpoint, viz_path,
                       writer_page_path)
from .train import (TrainingError, describe_sources, format_duration, loss_text,
                    run_training, start_run)
from .viz import PageSource, render_page, write_page

DEFAULT_CHECKPOINT_DIR = "checkpoints"
DEFAULTS = TrainConfig()
EXIT_SIGNAL_BASE = 128   # a process stopped by signal N exits with 128 + N, by convention


def fail(message: str):
    raise click.ClickException(message)


class CharrnnGroup(click.Group):
    """click's group, plus: output that stdout cannot take is a one-line error, never a
    traceback or an "Exception ignored" at exit (a full disk, a closed stdout, an encoding
    that cannot show a character), whichever command or option (--help, --version) wrote it."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            try:
                return one_line_errors(super().main, *args, **kwargs)
            finally:
                if sys.stdout is not None:
                    sys.stdout.flush()
        except BrokenPipeError:   # the reader went away, as in `charrnn info | head -1`
            detach_stdout()
            sys.exit(1)
        except (OSError, UnicodeEncodeError, StdoutError) as error:
            if isinstance(error, OSError) and error.filename:   # not stdout's: name the file
                failure = click.ClickException(f"{error.filename}: {error.strerror or error}")
            else:
                failure = error if isinstance(error, StdoutError) else stdout_error(error)
            failure.show()
            sys.exit(failure.exit_code)


NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def one_line_errors(main, *args, **kwargs):
    """Run click's ``main`` as a standalone program does, but with every error one line:
    click shows a usage error as the usage, a hint, a blank line and the error; here the
    hint is part of the error's line. Exits like click: 2 for usage errors, 1 for others."""
    try:
        status = main(*args, standalone_mode=False, **kwargs)
    except NO_ARGS_IS_HELP as error:   # `charrnn` alone (click 8.2 and later): the help
        error.show()
        sys.exit(error.exit_code)
    except click.UsageError as error:
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
        click.echo(f"Error: {error.format_message()}{hint}", err=True)
        sys.exit(error.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)


@click.group(cls=CharrnnGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charrnn")
def cli():
    """Train a character-level RNN (vanilla, LSTM or GRU) on a text, and generate text from it."""


def default_checkpoint_for(text_file: str) -> str:
    return runfiles.default_checkpoint_for(text_file, DEFAULT_CHECKPOINT_DIR)


@cli.command()
@click.argument("paths", metavar="CORPUS... [CHECKPOINT]", nargs=-1, required=True)
@click.option("--checkpoint", "checkpoint_path", metavar="PATH",
              help="Where to save the model (or give it as CHECKPOINT, a last argument ending "
                   "in .npz). [default: checkpoints/<first CORPUS's name>.npz]")
@click.option("--include", metavar="GLOB", multiple=True,
              help="In folders, read only the files whose name matches GLOB, e.g. '*.py' "
                   "(repeatable). [default: every file but hidden ones]")
@click.option("--time", "time_budget", type=Duration(), metavar="DURATION",
              help="Train for this long in all, evaluations and saves included: 90s, 5m, "
                   "1h30m. [default: 5m when --max-iters is not given]")
@click.option("--resume", is_flag=True, help="Continue training the model saved at --checkpoint.")
@click.option("--force", is_flag=True, help="Start a new model even if --checkpoint exists (overwrites it).")
@click.option("--cell", type=click.Choice(list(CELLS)), metavar="rnn|lstm|gru",
              help=range_help("The recurrent cell: rnn (vanilla), lstm or gru.", DEFAULTS.cell))
@click.option("--num-layers", type=click.IntRange(min=1), metavar="L",
              help=range_help("Layers of cells, each reading the one below.",
                              DEFAULTS.num_layers))
@click.option("--hidden-size", type=click.IntRange(min=1), metavar="H",
              help=range_help("Size of the hidden state (of every layer).", DEFAULTS.hidden_size))
@click.option("--dropout", type=Fraction(below_one=True), metavar="P",
              help=range_help("Dropout on each layer's output in training (never on the "
                              "recurrent state; may change on resume).", DEFAULTS.dropout))
@click.option("--seq-length", type=click.IntRange(min=1), metavar="T",
              help=range_help("Time steps per window of truncated BPTT.", DEFAULTS.seq_length))
@click.option("--batch-size", type=click.IntRange(min=1), metavar="B",
              help=range_help("Parallel streams the text is cut into.", DEFAULTS.batch_size))
@click.option("--optimizer", type=click.Choice(list(OPTIMIZERS)), metavar="adagrad|adam",
              help="The update rule (fixed on resume). [default: "
                   + ", ".join(f"{name} for {cell}" for cell, name in DEFAULT_OPTIMIZERS.items())
                   + "]")
@click.option("--learning-rate", type=POSITIVE, metavar="LR",
              help="Step size at the peak of the schedule. [default: "
                   + ", ".join(f"{rate:g} with {name}"
                               for name, rate in DEFAULT_LEARNING_RATES.items()) + "]")
@click.option("--warmup-fraction", type=Fraction(), metavar="F",
              help="First fraction of the run over which the learning rate rises linearly to "
                   "LR (0: start at LR). [default: " + ", ".join(
                       f"{warmup:g} with {name}" for name, (warmup, _) in DEFAULT_SCHEDULES.items())
                   + "]")
@click.option("--decay-fraction", type=Fraction(), metavar="F",
              help="Last fraction of the run over which the learning rate falls linearly to 0 "
                   "(0: no decay). [default: " + ", ".join(
                       f"{decay:g} with {name}" for name, (_, decay) in DEFAULT_SCHEDULES.items())
                   + "]")
@click.option("--clip", type=POSITIVE, metavar="C",
              help=range_help("Clip gradients elementwise to [-C, C].", DEFAULTS.clip))
@click.option("--max-iters", type=click.IntRange(min=1, max=MAX_ITERS), metavar="N",
              help="Total iterations (a resumed run continues up to N); the same N and seed "
                   "give the same model. [default: what fits in --time]")
@click.option("--max-passes", type=POSITIVE, metavar="P",
              help=f"At most P passes over the training text. [default: {DEFAULT_MAX_PASSES:g} "
                   f"when --max-iters is not given]")
@click.option("--val-fraction", type=Fraction(below_one=True), metavar="F",
              help=range_help("Fraction of the text, at its end, held out for validation.",
                              DEFAULTS.val_fraction))
@click.option("--eval-every", type=click.IntRange(min=1), metavar="N",
              help=range_help("Iterations between validation losses.", DEFAULTS.eval_every))
@click.option("--checkpoint-every", type=click.IntRange(min=1), metavar="N",
              help=range_help("Iterations between checkpoint saves.", DEFAULTS.checkpoint_every))
@click.option("--sample-every", type=click.IntRange(min=0), metavar="N",
              help=range_help("Iterations between samples printed to stderr (0: never).",
                              DEFAULTS.sample_every))
@click.option("--dtype", type=click.Choice(["float32", "float64"]),
              help=range_help("Floating-point type of the model.", DEFAULTS.dtype))
@click.option("--random-seed", type=click.IntRange(min=0), metavar="SEED",
              help=range_help("Seed for the initial weights.", DEFAULTS.random_seed))
@click.option("--encoding", metavar="NAME",
              help=range_help("Text encoding of TEXT_FILE.", DEFAULTS.encoding))
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="Threads that compute each window. [default: one per core]")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress bar, samples or notes: only errors (and, after Ctrl-C, how to "
                   "resume).")
def train(paths, checkpoint_path, resume, force, threads, quiet, include, time_budget,
          **options):
    """Train a model on CORPUS (files, folders, glob patterns, or - for standard input),
    saving checkpoints as it goes.

    Ctrl-C saves the model and stops; run the same command with --resume to continue.
    """
    started = time.monotonic()
    quiet_from_now(quiet)
    overrides = {name: value for name, value in options.items() if value is not None}
    paths, checkpoint_arg = corpus_and_checkpoint(paths)
    checkpoint_path = (one_checkpoint(checkpoint_arg, checkpoint_path)
                       or default_checkpoint_for(corpus_name(paths[0])))
    if resume and force:
        fail("--resume and --force contradict each other: --resume continues the saved model, "
             "--force replaces it")
    try:
        sources = find_sources(paths, include)
        stdin = read_stdin_bytes() if any(source.path is None for source in sources) else None
        runfiles.check_outside_corpus(checkpoint_path,
                                      [path for path in paths if path != STDIN])
    except (CorpusError, RunFilesError) as error:
        fail(str(error))
    texts = [source.path for source in sources if source.path is not None]
    try:
        target = training_checkpoint(checkpoint_path, texts)
        # Held until the command ends, however it ends: the lock, and the folder if created.
        click.get_current_context().with_resource(
            claimed_run(target, texts, resume, force, note=say))
    except RunFilesError as error:
        fail(str(error))
    if target != checkpoint_path:
        say(f"note: {checkpoint_path} is a symbolic link; training the file it points to, {target}")
        checkpoint_path = target

    try:
        run = start_run(sources, checkpoint_path, resume, overrides, time_budget, stdin, note=say)
        prepare_run(checkpoint_path, replacing=force, note=say)
    except (TrainingError, RunFilesError) as error:
        fail(str(error))
    if run.finished:
        return
    trainer, config = run.trainer, run.trainer.config
    for message in trainer.use_threads(threads):
        say(f"note: {message}")
    verb = "resuming" if run.resumed else "training"
    files = f" in {len(run.corpus.documents):,} files" if len(run.corpus.documents) > 1 else ""
    length = (f"for {format_duration(run.time_budget)}" if run.time_budget is not None
              else f"to iteration {config.max_iters:,}")
    say(f"{verb} {checkpoint_path} {length}: {len(run.corpus.vocab)} characters in the "
        f"vocabulary, {len(run.corpus.indices):,} in the text{files}, "
        f"{trainer.params.flat.size:,} parameters, {config.optimizer} at a peak learning rate "
        f"of {config.learning_rate:g}")

    try:
        outcome = run_training(trainer, checkpoint_path, show_progress=not quiet,
                               log=(lambda message: None) if quiet else None,
                               time_budget=run.time_budget, started=started)
    except (CheckpointError, TrainingError) as error:
        fail(str(error))
    finally:
        trainer.close()
    if not outcome.finished:
        command = (["charrnn", "train", *paths] + [f"--include={glob}" for glob in include]
                   + ["--checkpoint", checkpoint_path, "--resume"])
        # Printed even with -q: it is how to get the model back.
        click.echo(f"interrupted at iteration {trainer.iteration}; saved {checkpoint_path}. "
                   f"To continue: {' '.join(shlex.quote(word) for word in command)}", err=True)
        sys.exit(EXIT_SIGNAL_BASE + outcome.signal_number)
    say(f"done: iteration {trainer.iteration:,} ({trainer.passes:.1f} passes over the text), "
        f"train loss {loss_text(trainer.smooth_loss)}, {describe_val(trainer)}; "
        f"saved {checkpoint_path}")


def corpus_and_checkpoint(arguments) -> tuple[list[str], str | None]:
    """``train``'s and ``eval``'s arguments: the corpus paths, and a last argument ending in
    .npz (after at least one path) as the checkpoint."""
    arguments = list(arguments)
    if len(arguments) >= 2 and arguments[-1].endswith(".npz"):
        return arguments[:-1], arguments[-1]
    return arguments, None


def note_byte_order_mark(text_file: str, corpus) -> None:
    if corpus.byte_order_mark:
        say(f"note: {text_file} starts with a byte-order mark (U+FEFF); it marks the encoding, "
            f"it is not part of the text, and was left out")


def finite_or_none(value: float) -> float | None:
    """A figure for JSON, which has no infinity or NaN: None (null) for those."""
    return value if math.isfinite(value) else None


def describe_val(trainer) -> str:
    """``validation loss 2.354 bits/char (1.632 nats) on all 111,539 held-out characters``."""
    val = trainer.history.last_val_loss
    if math.isnan(val):
        return "no validation text"
    total = len(trainer.val_indices)
    if trainer.full_val_loss is None:
        return f"validation loss {loss_text(val)} on all {total:,} held-out characters"
    return (f"validation loss {loss_text(trainer.full_val_loss)} on all {total:,} held-out "
            f"characters ({loss_text(val)} on the {len(trainer.val_sample):,} of each "
            f"evaluation)")


def latest_checkpoint() -> tuple[str, int]:
    """The most recently written checkpoint under checkpoints/ (not counting .best files),
    and how many there are."""
    try:
        found = runfiles.checkpoints_in(DEFAULT_CHECKPOINT_DIR)
    except RunFilesError as error:
        fail(str(error))
    if not found:
        fail(f"no checkpoint found in {DEFAULT_CHECKPOINT_DIR}/: train one with "
             f"'charrnn train TEXT_FILE', or pass --checkpoint PATH")
    return found[0], len(found)


def checkpoint_choice(what: str, best: bool = False, positional: bool = True):
    """The options that choose a command's checkpoint: ``[CHECKPOINT]`` or ``--checkpoint
    PATH`` (see one_checkpoint), and ``--best`` where the command offers it. Without
    ``positional`` the command finds CHECKPOINT among its own arguments (eval, viz: see
    corpus_and_checkpoint)."""
    def decorate(command):
        if best:
            command = click.option(
                "--best", is_flag=True,
                help="Use the checkpoint's lowest-validation-loss twin (.best.npz).")(command)
        command = click.option(
            "--checkpoint", "checkpoint_path", metavar="PATH",
            help=f"{what} (or give it as CHECKPOINT). "
                 f"[default: the latest checkpoint in checkpoints/]")(command)
        if not positional:
            return command
        return click.argument("checkpoint_arg", metavar="[CHECKPOINT]", required=False)(command)
    return decorate


def one_checkpoint(positional: str | None, option: str | None) -> str | None:
    """The checkpoint, given as CHECKPOINT or as --checkpoint PATH (both only if the same)."""
    if positional is not None and option is not None and (
            os.path.abspath(positional) != os.path.abspath(option)):
        raise click.UsageError(f"two checkpoints given, {positional} and --checkpoint {option}; "
                               f"give one")
    return option if option is not None else positional


def open_checkpoint(path: str | None, best: bool = False, mention_best: bool = False):
    """Load the checkpoint at ``path`` (default: the latest), or its .best twin.

    ``mention_best``: note on stderr when the .best twin has a lower validation loss than
    the checkpoint's last one (an overfit model is the likely reason).
    """
    if path is None:
        path, count = latest_checkpoint()
        others = (f", the most recently written of the {count} in {DEFAULT_CHECKPOINT_DIR}/ "
                  f"('charrnn list' shows them)" if count > 1 else "")
        say(f"using {path}{others}" if not best else f"using the best of {path}{others}")
    if best:
        path = best_path(runfiles.checkpoint_target(path))
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as error:
        fail(str(error))
    if mention_best and not best:
        best_loss, last_loss = (checkpoint.state.get(key) for key in ("best_val_loss", "last_val_loss"))
        twin = best_path(runfiles.checkpoint_target(path))
        if best_loss is not None and last_loss is not None and best_loss < last_loss and (
                os.path.isfile(twin)):
            say(f"note: {twin} has a lower validation loss ({loss_text(best_loss)}) than this "
                f"checkpoint's last ({loss_text(last_loss)}); add --best to use it")
    return path, checkpoint


@cli.command()
@checkpoint_choice("Model to sample from", best=True)
@click.option("--seed", "--prompt", "seed", metavar="TEXT",
              help="Text to start from (the prompt), printed before the generated text; '-' "
                   "reads it from standard input. [default: none: start as after a line break]")
@click.option("--seed-file", metavar="FILE", help="Read the prompt from FILE.")
@click.option("-n", "--length", default=500, show_default=True, type=click.IntRange(min=0),
              metavar="N", help="Characters to generate after the seed.")
@click.option("--temperature", default=1.0, show_default=True, type=Temperature(), metavar="T",
              help="Below 1: safer, more repetitive text; above 1: wilder text.")
@click.option("--top-k", type=click.IntRange(min=1), metavar="K",
              help="Draw only among the K most likely characters.")
@click.option("--top-p", type=TopP(), metavar="P",
              help="Draw only among the fewest most likely characters whose probabilities add "
                   "up to P (nucleus).")
@click.option("--min-p", type=Fraction(), metavar="P",
              help="Draw only among characters at least P times as likely as the likeliest.")
@click.option("--no-repeat", default=0, show_default=True, type=RepeatWords(), metavar="N",
              help="Loop guard: never repeat a run of N words already in the text (0: off).")
@click.option("--greedy", is_flag=True, help="Always take the most likely character (no randomness).")
@click.option("--beam", type=click.IntRange(min=1), metavar="K",
              help="Beam search: the most likely text of N characters found with K hypotheses.")
@click.option("--stop", multiple=True, metavar="TEXT", callback=nonempty_stops,
              help="End a sample once it generates TEXT (which is printed); repeatable.")
@click.option("--num-samples", default=1, show_default=True, type=click.IntRange(min=1),
              metavar="N", help="Samples to generate, each from the seed; '---' lines between.")
@click.option("--random-seed", type=click.IntRange(min=0), metavar="SEED",
              help="Seed for the draws; the same seed gives the same text. [default: random, "
                   "printed on stderr]")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per sample, a line each: prompt, text and settings.")
@click.option("--interactive", "-i", is_flag=True,
              help="Keep the model loaded and continue each line typed or piped, until the end "
                   "of input; Ctrl-C stops the current continuation.")
@click.option("--quiet", "-q", is_flag=True, help="No notes on stderr, only errors.")
def sample(checkpoint_arg, checkpoint_path, best, seed, seed_file, length, temperature, top_k,
           top_p, min_p, no_repeat, greedy, beam, stop, num_samples, random_seed, as_json,
           interactive, quiet):
    """Generate text from a trained model and print it to stdout."""
    quiet_from_now(quiet)
    check_sampling_options(beam, greedy, top_k, top_p, min_p, num_samples)
    if seed is not None and seed_file is not None:
        raise click.UsageError("give the prompt once: --seed TEXT or --seed-file FILE")
    if interactive and (seed is not None or seed_file is not None):
        raise click.UsageError("--interactive reads its prompts from standard input: drop "
                               "--seed/--seed-file")
    checkpoint_path = one_checkpoint(checkpoint_arg, checkpoint_path)
    if seed not in (None, "-") and not as_json:
        check_stdout_shows(seed)
    path, checkpoint = open_checkpoint(checkpoint_path, best, mention_best=True)
    vocab = checkpoint.vocab
    for option, value in (("--top-k", top_k), ("--beam", beam)):
        if value is not None and value > len(vocab):
            fail(f"{option} {value} is larger than the vocabulary ({len(vocab)} characters)")
    prompt, source = read_prompt(seed, seed_file, checkpoint.config.encoding)
    problem = prompt_problem(vocab, prompt, source)
    if problem:
        fail(problem)
    if not as_json:
        # Every character the model may write must be printable, checked before the first one.
        check_stdout_shows(prompt + "".join(vocab.chars) + "\n")
    settings = Settings(temperature, top_k, top_p, min_p, greedy, beam, no_repeat, stop)
    drawn = not greedy and beam is None
    if drawn and random_seed is None:
        random_seed = int.from_bytes(os.urandom(4), "little")
        if length > 0 or interactive:
            say(f"note: random seed {random_seed} (--random-seed {random_seed} gives the same "
                f"text again)")
    rng = np.random.default_rng(random_seed)
    record = {"checkpoint": path, "settings": {"length": length, **settings.to_dict(),
                                               "num_samples": num_samples,
                                               "random_seed": random_seed if drawn else None}}
    network = checkpoint.network()
    set_blas_threads(1)   # one character at a time: products far too small to share

    written = [0]   # samples written so far: a separator line goes before each later one

    def samples_of(text: str, echo: bool) -> None:
        """Write num_samples continuations of ``text`` (after ``text`` itself if ``echo``)."""
        for i in range(num_samples):
            try:
                characters = continuation(network, checkpoint.params, vocab, text, length,
                                          settings, rng)
            except ValueError as error:   # a temperature too small for this model
                fail(str(error))
            if as_json:
                generated = "".join(characters)
                found = next((s for s in stop if generated.endswith(s)), None)
                emit(json.dumps({**record, "sample": i + 1, "prompt": text, "text": generated,
                                 "stopped_by": found}))
                continue
            if written[0]:
                emit(SAMPLE_SEPARATOR)
            written[0] += 1
            write_stream(text if echo else "", characters)

    if not interactive:
        with stdout_guarded():
            samples_of(prompt, echo=True)
        return
    run_interactive(vocab, samples_of, as_json)


SAMPLE_SEPARATOR = "---"   # the line between two samples (--num-samples, --interactive)


def check_sampling_options(beam, greedy, top_k, top_p, min_p, num_samples) -> None:
    """Usage errors for options that contradict each other."""
    context = click.get_current_context()
    if beam is not None:
        if greedy:
            raise click.UsageError("--greedy is beam search with one hypothesis: give --greedy "
                                   "or --beam K, not both")
        given = [name for name, value in (("--top-k", top_k), ("--top-p", top_p),
                                          ("--min-p", min_p)) if value is not None]
        if context.get_parameter_source("temperature") != ParameterSource.DEFAULT:
            given.insert(0, "--temperature")
        if given:
            raise click.UsageError(f"--beam finds the most likely text and draws nothing, so "
                                   f"{', '.join(given)} would change nothing: drop it")
    if num_samples > 1 and (greedy or beam is not None):
        raise click.UsageError(f"--{'greedy' if greedy else 'beam'} gives the same text every "
                               f"time: --num-samples {num_samples} would repeat it")


def read_prompt(seed: str | None, seed_file: str | None, encoding: str) -> tuple[str, str]:
    """The prompt and how to name it in messages: --seed TEXT, standard input (--seed -), or
    the --seed-file."""
    try:
        if seed_file is not None:
            return read_prompt_file(seed_file, encoding), seed_file
        if seed == "-":
            if sys.stdin is None:
                fail("--seed - reads the prompt from standard input, which is closed")
            if sys.stdin.isatty():
                say("reading the prompt from standard input; end it with Ctrl-D")
            return read_prompt_stream(sys.stdin.buffer, encoding), "the prompt on standard input"
    except PromptError as error:
        fail(str(error))
    return seed or "", "--seed"


def prompt_problem(vocab, prompt: str, name: str) -> str | None:
    """Why the model cannot start from ``prompt`` (characters it does not know), or None. A
    number given as --seed was most likely meant as --random-seed: say so."""
    try:
        vocab.encode(prompt)
    except UnknownCharactersError as error:
        hint = ""
        if name == "--seed" and prompt.strip().isdigit():
            hint = (f"; --seed is the prompt, the text to start from: did you mean "
                    f"--random-seed {prompt.strip()}?")
        return f"{name} has {error}{hint}"
    return None


@contextlib.contextmanager
def stdout_guarded():
    """Stdout errors while text streams out are one line; a reader that went away (e.g.
    `charrnn sample | head`) ends the command quietly, as it would end cat."""
    try:
        yield
    except (OSError, UnicodeEncodeError) as error:
        if not isinstance(error, BrokenPipeError):
            raise stdout_error(error) from None
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_SIGNAL_BASE + 13)   # 13 is SIGPIPE


def run_interactive(vocab, samples_of, as_json: bool) -> None:
    """sample --interactive: each line of stdin is a prompt (checked like --seed) whose
    continuation is written as soon as the line is read: after the prompt when the lines are
    piped in (as --seed would), alone at a terminal (the prompt is on the screen already)."""
    stdin = sys.stdin
    at_terminal = stdin is not None and stdin.isatty()
    quiet = click.get_current_context().meta.get("charrnn.quiet")
    ask = (lambda text: click.echo(text, err=True, nl=False)) if at_terminal and not quiet else None
    if ask is not None:
        say("type a prompt and press Enter; Ctrl-C stops a continuation, Ctrl-D ends")

    def respond(line: str) -> None:
        problem = prompt_problem(vocab, line, "the prompt")
        if problem:
            raise ValueError(problem)
        with stdout_guarded():
            samples_of(line, echo=not at_terminal)

    def stopped() -> None:
        with stdout_guarded():
            if not as_json:
                emit("")
        say("(stopped)")

    with stdout_guarded():
        run_session(prompt_lines(stdin, ask) if stdin is not None else iter(()), respond,
                    report=lambda message: click.echo(f"Error: {message}", err=True),
                    stopped=stopped)


@cli.command()
@checkpoint_choice("The checkpoint", best=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
@click.option("--quiet", "-q", is_flag=True, help="No notes on stderr, only errors.")
def info(checkpoint_arg, checkpoint_path, best, as_json, quiet):
    """Describe a checkpoint: settings, vocabulary, progress and losses."""
    quiet_from_now(quiet)
    path, checkpoint = open_checkpoint(one_checkpoint(checkpoint_arg, checkpoint_path), best)
    state, config = checkpoint.state, checkpoint.config
    if as_json:
        emit(json.dumps({
            "checkpoint": path, "iteration": state["iteration"], "chars_seen": state["chars_seen"],
            "elapsed_seconds": state["elapsed_seconds"], "vocabulary": "".join(checkpoint.vocab.chars),
            "model": describe_model(config), "parameters": int(checkpoint.params.flat.size),
            "train_loss": state["smooth_loss"], "last_val_loss": state.get("last_val_loss"),
            "best_val_loss": state.get("best_val_loss"), "loss_unit": "nats/char",
            "history": history_path(runfiles.checkpoint_target(path)),
            "evaluations": len(checkpoint.history), "settings": config.to_dict()}))
        return
    lines = [f"checkpoint:        {path}",
             f"iteration:         {state['iteration']:,} of {config.max_iters:,}",
             f"characters seen:   {state['chars_seen']:,}",
             f"training time:     {state['elapsed_seconds']:.1f} s",
             f"vocabulary:        {len(checkpoint.vocab)} characters",
             f"model:             {describe_model(config)}",
             f"parameters:        {checkpoint.params.flat.size:,}",
             f"train loss:        {loss_text(state.smooth_loss, 4)}, smoothed"]
    if state.train_chars:
        lines.insert(3, f"passes:            {state.chars_seen / state.train_chars:.2f} over "
                        f"the {state.train_chars:,} characters of training text")
    if state.corpus_files is not None and len(state.corpus_files) > 1:
        lines.insert(1, f"corpus:            {len(state.corpus_files):,} files, from "
                        f"{state.corpus_files[0][0]} to {state.corpus_files[-1][0]}")
    if config.time_budget:
        passes = f", at most {config.max_passes:g} passes" if config.max_passes else ""
        lines.insert(2, f"time budget:       {format_duration(config.time_budget)}{passes}: "
                        f"{config.max_iters:,} iterations in all")
    covers = ""
    if state.val_chars is not None and state.val_total_chars is not None:
        covers = (f" on all {state.val_total_chars:,} held-out characters"
                  if state.val_chars >= state.val_total_chars else
                  f" on a fixed sample of {state.val_chars:,} of the {state.val_total_chars:,} "
                  f"held-out characters")
    for label, key in (("validation loss:", "last_val_loss"), ("best val. loss:", "best_val_loss")):
        value = state.get(key)
        shown = loss_text(value, 4) + covers if value is not None else "-"
        lines.append(f"{label:<19}{shown}")
    if state.full_val_loss is not None:
        lines.append(f"{'all held out:':<19}{loss_text(state.full_val_loss, 4)} on all "
                     f"{state.val_total_chars:,} held-out characters, at the end of the run")
    for name, description, count in checkpoint.network().layer_summary():
        lines.append(f"  {name + ':':<17}{description}, {count:,} parameters")
    lines.append(f"computed as:       {describe_computation(state)}")
    lines.append(f"history:           {history_path(runfiles.checkpoint_target(path))} ({len(checkpoint.history)} evaluations)")
    lines.append("settings:")
    lines += [f"  {name:<17}{value}" for name, value in config.to_dict().items()]
    emit("\n".join(lines))


def describe_computation(state) -> str:
    """How a run computes its windows (``info``): in groups of streams on threads, or the
    whole batch at once with some BLAS threads (see Trainer.use_threads)."""
    if state.stream_groups and state.stream_groups > 1:
        return (f"{state.stream_groups} groups of streams, side by side on threads "
                f"(the same bits with any thread count)")
    threads = f"{state.blas_threads} BLAS thread(s)" if state.blas_threads else "BLAS threads"
    return f"the whole batch at once, with {threads} (kept on resume)"


@cli.command(name="list")
@click.argument("folder", metavar="[FOLDER]", default=DEFAULT_CHECKPOINT_DIR)
def list_checkpoints(folder):
    """List the models in FOLDER (default: checkpoints/), most recently written first.

    The first is the one that sample, eval, info, plot, export and viz use when given no
    checkpoint. Columns: name, model, iterations trained, validation loss (latest and best,
    bits per character), and when the file was written.
    """
    if not os.path.isdir(folder):
        fail(f"{folder} is not a folder" if os.path.exists(folder) else f"no folder {folder}")
    try:
        paths = runfiles.checkpoints_in(folder)
    except RunFilesError as error:
        fail(str(error))
    if not paths:
        fail(f"no checkpoint in {folder}/: train one with 'charrnn train TEXT_FILE'")
    rows = [("checkpoint", "model", "iterations", "val bits/char", "best", "written")]
    for path in paths:
        rows.append(describe_listed(path))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    emit("\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                   for row in rows))


def describe_listed(path: str) -> tuple[str, ...]:
    """One row of ``charrnn list``: a checkpoint that cannot be read says why, in the row."""
    written = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(path)))
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as error:
        reason = str(error).removeprefix(f"{path} ").removeprefix(f"{path}: ")
        return (os.path.basename(path), f"unreadable: {reason}", "", "", "", written)
    state, config = checkpoint.state, checkpoint.config

    def bits(key):
        value = state.get(key)
        return "-" if value is None else f"{value / math.log(2):.3f}"
    return (os.path.basename(path), describe_model(config),
            f"{state['iteration']:,} of {config.max_iters:,}", bits("last_val_loss"),
            bits("best_val_loss"), written)


def read_known_text(checkpoint, paths, skip_unknown: bool, text: str | None = None,
                    include=()):
    """The text to score or show (the corpus ``paths``, as train takes them, or ``text``
    given inline), encoded with the checkpoint's vocabulary; unknown characters are a
    one-line error, or with ``skip_unknown`` are left out and counted."""
    name = "--text"
    try:
        if text is not None:
            corpus = encode_text(text, checkpoint.vocab, skip_unknown)
        else:
            sources = find_sources(paths, include)
            name = describe_sources(sources)
            stdin = read_stdin_bytes() if any(source.path is None for source in sources) else None
            corpus = read_sources(sources, checkpoint.config.encoding, vocab=checkpoint.vocab,
                                  skip_unknown=skip_unknown, stdin=stdin)
    except UnknownCharactersError as error:
        fail(f"{name} has {error}; pass --skip-unknown to leave them out")
    except UndecodableTextError as error:
        fail(f"{error.without_advice} (the model reads {checkpoint.config.encoding} text)")
    except CorpusError as error:
        fail(str(error))
    if text is None:
        note_byte_order_mark(name, corpus)
        if corpus.binary_skipped:
            say(f"note: skipped {corpus.binary_skipped} file(s) that are not "
                f"{checkpoint.config.encoding} text (binary, or bytes that do not decode)")
    return corpus


@cli.command(name="eval")
@click.argument("paths", metavar="CORPUS... [CHECKPOINT]", nargs=-1, required=True)
@checkpoint_choice("Model to evaluate", best=True, positional=False)
@click.option("--include", metavar="GLOB", multiple=True,
              help="In folders, read only the files whose name matches GLOB (repeatable).")
@click.option("--skip-unknown", is_flag=True,
              help="Leave out characters the model does not know (they are counted) instead of failing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no notes, only errors.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
def evaluate(paths, checkpoint_path, best, include, skip_unknown, quiet, as_json):
    """Score a model on CORPUS (files, folders, glob patterns, - for standard input, as for
    train): cross-entropy in bits and nats per character, perplexity.

    Every character but the first is scored, each predicted from all the text before it
    (the same figure as training's validation loss).
    """
    quiet_from_now(quiet)
    paths, checkpoint_arg = corpus_and_checkpoint(paths)
    text_file = paths[0] if len(paths) == 1 else f"{paths[0]} and the rest"
    check_stdout_shows("")
    path, checkpoint = open_checkpoint(one_checkpoint(checkpoint_arg, checkpoint_path), best,
                                       mention_best=True)
    corpus = read_known_text(checkpoint, paths, skip_unknown, include=include)
    streams = eval_stream_count(len(corpus.indices))
    set_blas_threads(threads_for(streams, checkpoint.config.hidden_size))
    with tqdm(total=chars_scored(len(corpus.indices)), unit="char", unit_scale=True, file=sys.stderr,
              disable=quiet, leave=False) as bar:
        result = score_text(checkpoint.network(), checkpoint.params, corpus.indices,
                            on_progress=bar.update)
    if result.count == 0:
        fail(f"{text_file} is too short to score (it needs at least 2 known characters)")
    if as_json:
        emit(json.dumps({"text_file": text_file, "checkpoint": path,
                         "nats_per_char": result.nats_per_char,
                         "bits_per_char": result.bits_per_char,
                         "perplexity": finite_or_none(result.perplexity),
                         "characters_scored": result.count, "unknown_skipped": corpus.skipped}))
        return
    skipped = f", {corpus.skipped:,} unknown skipped" if corpus.skipped else ""
    emit(f"{result.bits_per_char:.4f} bits/char  {result.nats_per_char:.4f} nats/char  "
         f"perplexity {perplexity_text(result.nats_per_char)}  ({result.count:,} characters "
         f"scored{skipped})")


@cli.command()
@checkpoint_choice("The checkpoint")
@click.option("-o", "--output", metavar="FILE.png",
              help="Where to write the PNG. [default: the checkpoint's path with .png]")
@click.option("--quiet", "-q", is_flag=True, help="No notes on stderr, only errors.")
def plot(checkpoint_arg, checkpoint_path, output, quiet):
    """Plot train and validation loss (bits/char) against characters seen, as a PNG."""
    quiet_from_now(quiet)
    path, checkpoint = open_checkpoint(one_checkpoint(checkpoint_arg, checkpoint_path))
    if len(checkpoint.history) == 0:
        fail(f"{path} has no evaluations yet: train it past --eval-every iterations first")
    output = output or plot_path(path)
    try:
        check_plot_output(output, path)
        plot_history(checkpoint.history, output, title=os.path.basename(path))
    except (PlotUnavailable, RunFilesError) as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror or error}")
    say(f"wrote {output}")


@cli.command()
@checkpoint_choice("Model to export", best=True)
@click.option("-o", "--output", metavar="FILE",
              help="Where to write. [default: beside the checkpoint, <stem>.safetensors or "
                   "<stem>.json]")
@click.option("--format", "fmt", metavar="safetensors|json",
              help="File format. [default: json if FILE ends in .json, else safetensors]")
@click.option("--quiet", "-q", is_flag=True, help="No notes on stderr, only errors.")
def export(checkpoint_arg, checkpoint_path, best, output, fmt, quiet):
    """Write the model for PyTorch or any other program: its weights under PyTorch's names
    (nn.RNN/nn.LSTM/nn.GRU and an nn.Linear 'out.'), with the vocabulary and the model's
    description, as safetensors or JSON."""
    quiet_from_now(quiet)
    try:
        fmt = format_for(output, fmt)
    except ExportError as error:
        fail(str(error))
    path, checkpoint = open_checkpoint(one_checkpoint(checkpoint_arg, checkpoint_path), best)
    output = output or default_output(path, fmt)
    try:
        check_export_output(output, path, fmt)
        size = export_model(checkpoint.network(), checkpoint.params, checkpoint.vocab.chars,
                            output, fmt)
    except ExportError as error:
        fail(str(error))
    say(f"wrote {output}: {describe_model(checkpoint.config)}, {len(checkpoint.vocab)} "
        f"characters, {checkpoint.params.flat.size:,} parameters, {size:,} bytes")
    if fmt == "json" and size > JSON_WARNING_BYTES:
        say(f"warning: {output} is {size / 1e6:.0f} MB of JSON, slow to load; "
            f"--format safetensors holds the same weights in about a third of the space")


DEFAULT_VIZ_CHARS = 2000
MAX_VIZ_CHARS = 20_000    # beyond this a page is tens of MB, too heavy for a browser
VIZ_WARNING_BYTES = 20_000_000


@cli.command()
@click.argument("paths", metavar="[CORPUS...] [CHECKPOINT]", nargs=-1)
@checkpoint_choice("Model to look inside", best=True, positional=False)
@click.option("--include", metavar="GLOB", multiple=True,
              help="In folders, read only the files whose name matches GLOB (repeatable).")
@click.option("--text", "--prompt", "inline_text", metavar="TEXT",
              help="Show this text instead of a TEXT_FILE (--prompt: the same, the name "
                   "sample uses).")
@click.option("-o", "--output", metavar="FILE.html",
              help="Where to write the page. [default: beside the checkpoint, <stem>.viz.html]")
@click.option("--max-chars", default=DEFAULT_VIZ_CHARS, show_default=True,
              type=click.IntRange(min=2, max=MAX_VIZ_CHARS), metavar="N",
              help="Show at most the first N characters of the text.")
@click.option("--skip-unknown", is_flag=True,
              help="Leave out characters the model does not know (they are counted) instead of failing.")
@click.option("--quiet", "-q", is_flag=True, help="No notes on stderr, only errors.")
def viz(paths, checkpoint_path, best, include, inline_text, output, max_chars, skip_unknown,
        quiet):
    """Write an HTML page of what a model predicts and what its units track on a text.

    Each character shaded by its surprise (hover for the top 5 guesses), the text coloured by
    any unit (h, and c and the gates of gated cells), the units that best follow features of
    the text, and gate saturation. Prints the page's path.
    """
    quiet_from_now(quiet)
    if inline_text is not None:
        if len(paths) > 1:
            raise click.UsageError("with --text, give at most one argument, the CHECKPOINT")
        text_file, checkpoint_arg = None, (paths[0] if paths else None)
    elif not paths:
        raise click.UsageError("give a TEXT_FILE (or files, folders, -), or the text with --text")
    else:
        paths, checkpoint_arg = corpus_and_checkpoint(paths)
        text_file = paths[0]
    check_stdout_shows("")
    path, checkpoint = open_checkpoint(one_checkpoint(checkpoint_arg, checkpoint_path), best,
                                       mention_best=True)
    text_name = (text_page_name(inline_text) if text_file is None
                 else os.path.splitext(os.path.basename(corpus_name(text_file)))[0])
    output = output or viz_path(path, text_name)
    try:
        for text in ([] if text_file is None else paths):
            if text != STDIN and os.path.isfile(text):
                check_page_output(output, path, text)
        if text_file is None:
            check_page_output(output, path, None)
    except RunFilesError as error:
        fail(str(error))
    check_stdout_shows(output)   # the page's name is printed: before the page is written
    corpus = read_known_text(checkpoint, paths if text_file is not None else None, skip_unknown,
                             inline_text, include=include)
    name = ((text_file if len(paths) == 1 else f"{text_file} and the rest")
            if text_file is not None else "the text given with --text")
    total = len(corpus.indices)
    if total < 2:
        fail(f"{name} is too short to show (it needs at least 2 known characters)")
    if total > max_chars:
        say(f"note: showing the first {max_chars:,} of the {total:,} characters of {name} "
            f"(--max-chars)")
    set_blas_threads(1)   # one stream, a character at a time
    page = render_page(PageSource(checkpoint, path, name, corpus.indices[:max_chars], total,
                                  corpus.skipped))
    try:
        size = write_page(output, page)
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror or error}")
    if size > VIZ_WARNING_BYTES:
        say(f"note: {output} is {size / 1e6:.0f} MB, slow to open in a browser; a smaller "
            f"--max-chars makes it lighter")
    emit(output)


DEFAULT_PAGE_LENGTH = 500


@cli.command(name="page")
@checkpoint_choice("Model to put in the page", best=True)
@click.option("-o", "--output", metavar="FILE.html",
              help="Where to write the page. [default: beside the checkpoint, <stem>.page.html]")
@click.option("--prompt", default="", metavar="TEXT",
              help="The prompt the page opens with. [default: none]")
@click.option("-n", "--length", default=DEFAULT_PAGE_LENGTH, show_default=True,
              type=click.IntRange(min=0), metavar="N",
              help="Characters to write, as the page opens.")
@click.option("--temperature", default=1.0, show_default=True, type=POSITIVE, metavar="T",
              help="Temperature, as the page opens.")
@click.option("--top-k", default=0, show_default=True, type=click.IntRange(min=0), metavar="K",
              help="Top-k, as the page opens (0: all characters).")
@click.option("--top-p", default=1.0, show_default=True,
              type=TopP(), metavar="P",
              help="Top-p, as the page opens (1: all characters).")
@click.option("--quiet", "-q", is_flag=True, help="No notes on stderr, only errors.")
def page(checkpoint_arg, checkpoint_path, best, output, prompt, length, temperature, top_k,
         top_p, quiet):
    """Write a web page that writes text with the model, in the browser.

    One HTML file with the model's weights and vocabulary inside: it opens from disk with no
    network, and offers a prompt, temperature, top-k and top-p, generate and stop. The
    options set what its controls hold when it opens. Prints the page's path.
    """
    quiet_from_now(quiet)
    check_stdout_shows("")
    path, checkpoint = open_checkpoint(one_checkpoint(checkpoint_arg, checkpoint_path), best)
    output = output or writer_page_path(path)
    vocab = checkpoint.vocab
    if top_k > len(vocab):
        fail(f"--top-k {top_k} is larger than the vocabulary ({len(vocab)} characters)")
    try:
        vocab.encode(prompt)
    except UnknownCharactersError as error:
        fail(f"--prompt has {error}")
    try:
        check_writer_page_output(output, path)
        check_page_size(checkpoint.network())
    except (RunFilesError, PageError) as error:
        fail(str(error))
    page_text = render_writer_page(checkpoint, path, PageSettings(prompt, length, temperature,
                                                                  top_k, top_p))
    try:
        size = write_page(output, page_text)
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror or error}")
    float64 = ", its float64 weights rounded to float32" if checkpoint.config.dtype != "float32" else ""
    say(f"wrote {output}: {describe_model(checkpoint.config)}, {len(vocab)} characters, "
        f"{size / 1e6:.2f} MB{float64}")
    if size > WARN_PAGE_BYTES:
        say(f"note: {output} is {size / 1e6:.0f} MB, slow to open in a browser")
    emit(output)


@cli.command(name="import")
@click.argument("source", metavar="FILE.safetensors")
@click.option("-o", "--output", required=True, metavar="FILE.npz",
              help="The checkpoint to write (a new name, or with --force a charrnn checkpoint).")
@click.option("--force", is_flag=True,
              help="Replace an existing charrnn checkpoint (its .best.npz and .csv are removed).")
@click.option("--quiet", "-q", is_flag=True, help="No notes on stderr, only errors.")
def import_model(source, output, force, quiet):
    """Turn an export (charrnn export's safetensors), trained further in PyTorch or elsewhere,
    back into a charrnn checkpoint.

    PyTorch's two biases are folded into charrnn's one. The checkpoint starts afresh: the
    default settings of its cell, iteration 0, and a fresh optimiser state when you --resume
    training from it.
    """
    quiet_from_now(quiet)
    if not os.path.exists(source):
        fail(f"no file {source}")
    kind = runfiles.not_a_regular_file(source)
    if kind:
        fail(f"{source} is {kind}, not a safetensors file")
    try:
        target = training_checkpoint(output, source)
    except RunFilesError as error:
        fail(str(error).replace("--checkpoint", "-o"))
    if os.path.lexists(target) and not runfiles.not_a_regular_file(target):
        if not runfiles.is_charrnn_checkpoint(target):
            fail(f"-o {output} exists and is not a charrnn checkpoint; charrnn will not replace "
                 f"it: choose another name")
        if not force:
            fail(f"-o {output} already exists: pass --force to replace it with the imported model")
    try:
        checkpoint = checkpoint_from_export(source)
    except ImportModelError as error:
        fail(str(error))
    try:
        with claimed_run(target, source, resume=False, force=force, note=say):
            prepare_run(target, replacing=force, note=say)
            save_checkpoint(target, checkpoint)
    except (RunFilesError, CheckpointError) as error:
        fail(str(error).replace("--checkpoint", "-o"))
    config = checkpoint.config
    say(f"wrote {output}: {describe_model(config)}, {len(checkpoint.vocab)} characters, "
        f"{checkpoint.params.flat.size:,} parameters. It holds no optimiser state: "
        f"'charrnn train TEXT_FILE {output} --resume' trains it with a fresh one "
        f"({config.optimizer}, learning rate {config.learning_rate:g}, from iteration 0 of "
        f"{config.max_iters:,})")
