"""charrnn: a character-level RNN (vanilla, LSTM or GRU) in NumPy, with a command line to train,
sample, evaluate, look inside and export it."""

__version__ = "0.5.1"
