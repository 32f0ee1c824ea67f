"""A large text: time charrnn.data.read_corpus on 100 MB of UTF-8, and train on it, with the
peak memory of each.

The text is made in a temporary directory from data/tinyshakespeare.txt with non-ASCII mixed
in (accented Latin, Chinese, emoji: 1- to 4-byte UTF-8 characters), repeated up to the size
asked. Each measurement runs in a fresh Python process, so its peak resident memory (RSS) is
its own: the child reports ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, and when
``/usr/bin/time -v`` exists the child is run under it and its "Maximum resident set size" is
shown as well (the two should agree).

  read   ``read_corpus(path)``: decoding, the vocabulary, the integer index array
  train  ``read_corpus`` + ``Trainer(config, corpus)`` + ``--iterations`` calls of
         ``Trainer.step()`` (H=256, T=64, B=32 by default, one BLAS thread; no validation
         pass: bench_train.py is the benchmark for training speed)

Usage:  python benchmarks/bench_corpus.py [--quick] [--megabytes 100] [--iterations 20]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from _common import DEFAULT_CORPUS, REPO, machine_lines, print_table

READ_LIMIT_SECONDS = 15.0     # the targets for 100 MB
MEMORY_LIMIT_MB = 1024.0

# Sprinkled into the text: accents (2-byte UTF-8), Chinese (3-byte), emoji (4-byte).
EXTRAS = ["À bientôt, mon cœur ! Ça va, señor Müller ? Naïve façade, déjà vu.",
          "莎士比亚的戏剧：生存还是毁灭，这是一个问题。",
          "🙂 🎭 👑 🗡️ 🌹 — “quoted” ‘text’ … ½ × ÷ ± § ¶",
          "Ἀλφα βήτα γάμμα — Привет, мир! — שָׁלוֹם — مرحبا"]


def make_text(path: str, megabytes: float, source: str = DEFAULT_CORPUS, seed: int = 0) -> int:
    """Write about ``megabytes`` MB of UTF-8 to ``path``; returns the size in bytes.

    One ~1 MB chunk is built from the source text with an EXTRAS line after every few of
    its lines (chosen by a seeded generator), then written over and over.
    """
    rng = np.random.default_rng(seed)
    with open(source, encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    chunk_lines = []
    for i, line in enumerate(lines):
        chunk_lines.append(line)
        if rng.random() < 0.05:
            chunk_lines.append(EXTRAS[int(rng.integers(len(EXTRAS)))] + "\n")
    chunk = "".join(chunk_lines).encode("utf-8")
    target = int(megabytes * 1e6)
    written = 0
    with open(path, "wb") as f:
        while written < target:
            piece = chunk[:target - written]
            if len(piece) < len(chunk):   # the last piece: drop a character cut in two
                piece = piece.decode("utf-8", errors="ignore").encode("utf-8")
                if not piece:
                    break
            f.write(piece)
            written += len(piece)
    return written


CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
from charrnn.data import read_corpus
start = time.perf_counter()
corpus = read_corpus({path!r})
read_seconds = time.perf_counter() - start
result = dict(read_seconds=read_seconds, chars=int(len(corpus.indices)), vocab=len(corpus.vocab),
              index_dtype=str(corpus.indices.dtype), index_mb=corpus.indices.nbytes / 1e6)
if {iterations} > 0:
    from charrnn.config import TrainConfig
    from charrnn.train import Trainer
    from charrnn.threads import set_blas_threads
    config = TrainConfig(hidden_size={H}, seq_length={T}, batch_size={B})
    set_blas_threads(1)   # memory is the point here; one thread keeps the time steady on a busy machine
    start = time.perf_counter()
    trainer = Trainer(config, corpus)
    setup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range({iterations}):
        loss = trainer.step()
    result.update(setup_seconds=setup_seconds, train_seconds=time.perf_counter() - start,
                  loss=loss, chars_per_second={iterations} * {T} * {B} / (time.perf_counter() - start))
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(result))
"""


def run_child(path: str, iterations: int, H: int, T: int, B: int) -> dict:
    """Run one measurement in a fresh interpreter; returns its RESULT dict (+ time -v RSS)."""
    code = CHILD.format(repo=REPO, path=path, iterations=iterations, H=H, T=T, B=B)
    command = [sys.executable, "-c", code]
    time_v = shutil.which("time") if os.path.exists("/usr/bin/time") else None
    if time_v:
        command = ["/usr/bin/time", "-v"] + command
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measurement failed:\n{done.stderr[-2000:]}")
    line = next(l for l in done.stdout.splitlines() if l.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    result["time_v_rss_mb"] = int(match.group(1)) / 1024 if match else float("nan")
    return result


def verdict(ok: bool) -> str:
    return "ok" if ok else "OVER"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 3 MB text and 3 iterations")
    parser.add_argument("--megabytes", type=float, default=100.0)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--config", default="256,64,32", metavar="H,T,B")
    parser.add_argument("--keep", metavar="DIR", help="write the text here and keep it")
    args = parser.parse_args(argv)
    if args.quick:
        args.megabytes, args.iterations = min(args.megabytes, 3.0), min(args.iterations, 3)
    H, T, B = (int(x) for x in args.config.split(","))

    directory = args.keep or tempfile.mkdtemp(prefix="charrnn-bench-")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "big.txt")
    try:
        start = time.perf_counter()
        size = make_text(path, args.megabytes)
        made = time.perf_counter() - start
        read = run_child(path, 0, H, T, B)
        train = run_child(path, args.iterations, H, T, B)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)

    print(f"charrnn large-corpus benchmark: {size / 1e6:.1f} MB of UTF-8 "
          f"({read['chars']:,} characters, V={read['vocab']}, indices {read['index_dtype']}, "
          f"{read['index_mb']:.0f} MB), made in {made:.1f} s")
    for line in machine_lines():
        print(line)
    scale = 100e6 / size   # the targets are for 100 MB
    print(f"peak RSS: the child's own getrusage maxrss, and /usr/bin/time -v's (nan: not "
          f"available); targets for 100 MB: read < {READ_LIMIT_SECONDS:.0f} s, "
          f"memory < {MEMORY_LIMIT_MB:.0f} MB\n")
    rows = [
        ["read_corpus", f"{read['read_seconds']:.2f}", f"{size / 1e6 / read['read_seconds']:.1f}",
         f"{read['peak_rss_mb']:.0f}", f"{read['time_v_rss_mb']:.0f}",
         verdict(read["read_seconds"] * scale < READ_LIMIT_SECONDS
                 and read["peak_rss_mb"] < MEMORY_LIMIT_MB)],
        [f"read + train {args.iterations} it (H={H} T={T} B={B})",
         f"{train['read_seconds'] + train['setup_seconds'] + train['train_seconds']:.2f}",
         "-", f"{train['peak_rss_mb']:.0f}", f"{train['time_v_rss_mb']:.0f}",
         verdict(train["peak_rss_mb"] < MEMORY_LIMIT_MB)],
    ]
    print_table(["measurement", "seconds", "MB/s", "peak RSS MB", "time -v MB", "target"], rows)
    print(f"\ntraining: {train['chars_per_second'] / 1e3:.1f}k chars/s over {args.iterations} "
          f"iterations (setup {train['setup_seconds']:.2f} s), last loss "
          f"{train['loss']:.3f} nats/char")
    return 0


if __name__ == "__main__":
    sys.exit(main())
