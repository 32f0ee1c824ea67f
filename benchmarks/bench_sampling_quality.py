"""What each way of sampling gives: for each model, a table of the text that each setting
writes and what it costs.

For every setting, SAMPLES samples of LENGTH characters, sample i continuing prompt i (a
line of the training text chosen at random, with its newline; the same prompts for every
setting) and drawn with random seed i:

  repeated lines   lines (non-empty) per sample that repeat an earlier line of the sample
  distinct 4-grams distinct word 4-grams / all word 4-grams of a sample, averaged (%)
  known words      words of the samples that occur in the training text (%)
  nats/char        the model's own cross-entropy on the generated characters (given the
                   prompt): low is what the model finds likely, not necessarily good text
  us/char          generation time per character, one thread (plain sampling's speed
                   against PyTorch, per cell: benchmarks/bench_cells.py --only sampling)

Words are runs of letters and digits, as for the loop guard (--no-repeat).

Usage:  python benchmarks/bench_sampling_quality.py --model gru.npz --model rnn.npz
            [--samples 100] [--length 500] [--text data/tinyshakespeare.txt]
        python benchmarks/bench_sampling_quality.py --quick   (trains two tiny models first)
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

from _common import DEFAULT_CORPUS, blas_threads_limited, machine_lines, print_table

from charrnn.checkpoint import load_checkpoint
from charrnn.sample import Settings, continuation

SETTINGS = {   # name: Settings, in the order of the table
    "T=1": Settings(),
    "T=0.8": Settings(temperature=0.8),
    "T=0.5": Settings(temperature=0.5),
    "top-k 5": Settings(top_k=5),
    "top-p 0.9": Settings(top_p=0.9),
    "min-p 0.1": Settings(min_p=0.1),
    "T=1.2 min-p 0.1": Settings(temperature=1.2, min_p=0.1),
    "T=1 no-repeat 4": Settings(no_repeat=4),
    "T=0.5 no-repeat 4": Settings(temperature=0.5, no_repeat=4),
    "T=0.8 min-p 0.1 no-repeat 4": Settings(temperature=0.8, min_p=0.1, no_repeat=4),
    "greedy": Settings(greedy=True),
    "greedy no-repeat 4": Settings(greedy=True, no_repeat=4),
    "beam 4": Settings(beam=4),
    "beam 4 no-repeat 4": Settings(beam=4, no_repeat=4),
}
WORD = re.compile(r"[^\W_]+")   # letters and digits: str.isalnum's words


def choose_prompts(text: str, count: int, rng) -> list[str]:
    lines = sorted({line for line in text.split("\n") if line.strip()})
    return [lines[i] + "\n" for i in rng.choice(len(lines), count, replace=False)]


def repeated_lines(sample: str) -> int:
    lines = [line for line in sample.split("\n") if line.strip()]
    return len(lines) - len(set(lines))


def distinct_4grams(sample: str) -> float | None:
    words = WORD.findall(sample)
    grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
    return len(set(grams)) / len(grams) if grams else None


def model_nats(checkpoint, prompt: str, sample: str) -> float:
    """-mean log p of the sample's characters under the model, after the prompt."""
    indices = checkpoint.vocab.encode(prompt + sample)
    probs, _ = checkpoint.network().trace(checkpoint.params, indices)
    rows = np.arange(len(prompt) - 1, len(indices) - 1)
    return float(-np.log(probs[rows, indices[len(prompt):]]).mean())


def measure(checkpoint, settings: Settings, prompts: list[str], length: int, known: set) -> list:
    network, params, vocab = checkpoint.network(), checkpoint.params, checkpoint.vocab
    samples, seconds = [], 0.0
    for i, prompt in enumerate(prompts):
        start = time.perf_counter()
        samples.append("".join(continuation(network, params, vocab, prompt, length, settings,
                                            np.random.default_rng(i))))
        seconds += time.perf_counter() - start
    words = [word for sample in samples for word in WORD.findall(sample)]
    ratios = [r for r in map(distinct_4grams, samples) if r is not None]
    nats = [model_nats(checkpoint, p, s) for p, s in zip(prompts, samples)]
    return [f"{np.mean([repeated_lines(s) for s in samples]):.2f}",
            f"{100 * np.mean(ratios):.1f}" if ratios else "-",
            f"{100 * np.mean([w in known for w in words]):.1f}" if words else "-",
            f"{np.mean(nats):.3f}",
            f"{1e6 * seconds / (length * len(prompts)):.1f}"], samples[0]


def train_tiny_models(folder: str, text_path: str) -> list[str]:
    """--quick: a GRU and a vanilla model of a few seconds each, on the text's first 100k."""
    with open(text_path, encoding="utf-8") as f:
        small = os.path.join(folder, "text.txt")
        with open(small, "w", encoding="utf-8") as out:
            out.write(f.read()[:100_000])
    paths = []
    for cell in ("gru", "rnn"):
        path = os.path.join(folder, f"{cell}.npz")
        subprocess.run([sys.executable, "-m", "charrnn", "train", small, path, "--cell", cell,
                        "--hidden-size", "32", "--max-iters", "150", "--eval-every", "150",
                        "--sample-every", "0", "--threads", "1", "-q"], check=True)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="CHECKPOINT",
                        help="a trained model (repeatable): a GRU and a vanilla one")
    parser.add_argument("--text", default=DEFAULT_CORPUS, help="the models' training text")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--length", type=int, default=500)
    parser.add_argument("--quick", action="store_true",
                        help="train two tiny models, then 5 samples of 100 characters each")
    args = parser.parse_args()
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    known = set(WORD.findall(text))
    with tempfile.TemporaryDirectory() as folder:
        models = args.model
        if args.quick:
            models = train_tiny_models(folder, args.text)
            args.samples, args.length = 5, 100
        if not models:
            parser.error("give --model CHECKPOINT (a GRU and a vanilla model), or --quick")
        prompts = choose_prompts(text, args.samples, np.random.default_rng(0))
        print("\n".join(machine_lines()))
        for path in models:
            checkpoint = load_checkpoint(path)
            state = checkpoint.state
            print(f"\n{path}: {checkpoint.network()!r}, validation loss "
                  f"{state.get('best_val_loss') or float('nan'):.3f} nats/char (best); "
                  f"{args.samples} samples of {args.length} characters per setting")
            rows, examples = [], []
            with blas_threads_limited(1):
                for name, settings in SETTINGS.items():
                    row, example = measure(checkpoint, settings, prompts, args.length, known)
                    rows.append([name, *row])
                    examples.append((name, example))
            print_table(["setting", "repeated lines", "distinct 4-grams %", "known words %",
                         "nats/char", "us/char"], rows)
            print(f"\nThe first sample of each setting (prompt: {prompts[0]!r}):")
            for name, example in examples:
                print(f"--- {name}\n{example[:300]}")


if __name__ == "__main__":
    main()
