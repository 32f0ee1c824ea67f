"""The model: a network of recurrent cells over one-hot characters, and its maths.

``Network`` (network.py) is the interface the rest of charrnn uses. One module per cell
(rnn.py, lstm.py, gru.py) opens with its equations and keeps the contract in cell.py;
groups.py computes a batch's streams in groups on threads; embedding.py, dropout.py and output.py
hold the layers around the cells; params.py the flat parameter buffer. reference.py is
min-char-rnn's vanilla RNN written plainly: the first page to read, and the tests' oracle.
"""
from .network import CELLS, ModelSpec, Network, Stream
from .params import ParamSet

__all__ = ["CELLS", "ModelSpec", "Network", "ParamSet", "Stream"]
