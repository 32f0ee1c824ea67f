"""Loss curves as a PNG (needs the optional matplotlib: pip install '.[plot]')."""
from __future__ import annotations

import math

import numpy as np

from .runfiles import atomic_file


class PlotUnavailable(Exception):
    """matplotlib is not installed."""


def plot_history(history: np.ndarray, output_path: str, title: str) -> None:
    """Draw train and validation loss, in bits per character, against characters seen.

    history: (n, 5) rows of (iteration, chars_seen, train_loss, val_loss, elapsed_seconds),
    losses in nats per character (as kept in checkpoints).
    """
    try:
        import matplotlib
        matplotlib.use("Agg")   # draw to a file; no screen needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("plotting needs matplotlib: pip install matplotlib "
                              "(or, from charrnn's folder, pip install '.[plot]')") from None
    chars_seen = history[:, 1]
    train_bits = history[:, 2] / math.log(2)
    val_bits = history[:, 3] / math.log(2)
    figure, axes = plt.subplots(figsize=(8, 5), dpi=100)
    axes.plot(chars_seen, train_bits, label="train (smoothed)", color="tab:blue")
    if not np.isnan(val_bits).all():
        axes.plot(chars_seen, val_bits, label="validation", color="tab:orange", marker=".")
    axes.set_xlabel("characters seen")
    axes.set_ylabel("bits per character")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    try:
        with atomic_file(output_path, "wb") as f:   # an old plot stays whole if this fails
            figure.savefig(f, format="png")
    finally:
        plt.close(figure)
