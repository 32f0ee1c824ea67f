"""charrnn: a character-level vanilla RNN in NumPy, with a command line to train and sample it."""

__version__ = "0.2.0"
