"""The vanilla RNN's maths: parameters, forward pass, backward pass. NumPy only.

Letters used for shapes throughout this package:

    V  vocabulary size            H  hidden size
    T  time steps in one window   B  parallel streams (batch size)

Arrays are time-major, ``(T, B, ...)``, so each time step's slice is contiguous.

For one stream, with ``x_t`` the one-hot vector of the input character at step t:

    h_t = tanh(Wxh x_t + Whh h_{t-1} + bh)      hidden state, (H,)
    y_t = Why h_t + by                          logits, (V,)
    p_t = softmax(y_t)                          next-character probabilities, (V,)
    loss = sum_t -log p_t[target_t]             summed over the window's T steps,
                                                then averaged over the B streams

Parameters keep the orientation of these equations (as min-char-rnn and torch.nn.RNN do):
``Wxh (H, V)``, ``Whh (H, H)``, ``Why (V, H)``, ``bh (H,)``, ``by (V,)``.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

PARAM_NAMES = ("Wxh", "Whh", "Why", "bh", "by")

# Above this vocabulary size, dWxh is accumulated by sorting and summing rows of dL/da
# rather than by a (T*B, V) one-hot matrix product, whose cost grows with V.
ONE_HOT_MATMUL_MAX_VOCAB = 256


def param_shapes(vocab_size: int, hidden_size: int) -> dict[str, tuple[int, ...]]:
    """The shape of every parameter, keyed by name, in PARAM_NAMES order."""
    V, H = vocab_size, hidden_size
    return {"Wxh": (H, V), "Whh": (H, H), "Why": (V, H), "bh": (H,), "by": (V,)}


class ParamSet(Mapping):
    """Named arrays (Wxh, Whh, Why, bh, by) that are views into one flat buffer, ``flat``.

    One buffer lets clipping and Adagrad treat every parameter in a single NumPy call.
    The same class holds parameters, their gradients and their Adagrad memories.
    """

    def __init__(self, vocab_size: int, hidden_size: int, dtype=np.float32):
        shapes = param_shapes(vocab_size, hidden_size)
        sizes = [int(np.prod(shape)) for shape in shapes.values()]
        self.flat = np.zeros(sum(sizes), dtype=dtype)
        self._views = {}
        offset = 0
        for (name, shape), size in zip(shapes.items(), sizes):
            self._views[name] = self.flat[offset:offset + size].reshape(shape)
            offset += size
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], dtype=None) -> "ParamSet":
        """A ParamSet holding copies of ``arrays`` (which must have the shapes of param_shapes)."""
        V, H = np.shape(arrays["Why"])
        params = cls(V, H, dtype=dtype or np.asarray(arrays["Why"]).dtype)
        for name in PARAM_NAMES:
            params[name][...] = arrays[name]
        return params

    def zeros_like(self) -> "ParamSet":
        """A ParamSet of the same sizes and dtype, all zeros (for gradients or memories)."""
        return ParamSet(self.vocab_size, self.hidden_size, dtype=self.flat.dtype)

    def copy(self) -> "ParamSet":
        twin = self.zeros_like()
        twin.flat[...] = self.flat
        return twin

    def __getitem__(self, name: str) -> np.ndarray:
        return self._views[name]

    def __setitem__(self, name: str, value) -> None:
        self._views[name][...] = value

    def __iter__(self):
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)

    def __repr__(self) -> str:
        return (f"ParamSet(V={self.vocab_size}, H={self.hidden_size}, "
                f"dtype={self.flat.dtype}, count={self.flat.size})")


def init_params(vocab_size: int, hidden_size: int, rng: np.random.Generator,
                dtype=np.float32, scale: float = 0.01) -> ParamSet:
    """Small random weights, ``N(0, scale^2)``, drawn from ``rng``; zero biases.

    With weights this small every logit is near zero, so the first loss is close to
    ``log(V)`` per character: a check that initialisation is sane.
    """
    params = ParamSet(vocab_size, hidden_size, dtype=dtype)
    for name in ("Wxh", "Whh", "Why"):
        params[name] = rng.standard_normal(params[name].shape) * scale
    return params


def input_projection(Wxh: np.ndarray, inputs: np.ndarray, bias: np.ndarray | None = None,
                     out: np.ndarray | None = None) -> np.ndarray:
    """``Wxh x_t`` (plus ``bias`` if given) for every input character, by indexing instead
    of a one-hot product.

    Since ``Wxh @ onehot(c)`` is column ``c`` of ``Wxh``, gathering rows of ``Wxh^T`` gives
    the same numbers without building one-hot vectors. A bias is added to the V rows of
    ``Wxh^T`` before gathering, or to the T*B gathered rows, whichever are fewer: the same
    sums either way.

    Wxh: (H, V); inputs: (T, B) integer character indices, each in [0, V) as a Vocabulary
    makes them (they are not checked); bias: (H,). Returns (T, B, H), written into ``out``
    if given (C-contiguous, of Wxh's dtype).
    """
    rows = Wxh.T.copy()                    # (V, H), contiguous: row c is Wxh onehot(c)
    if bias is not None and rows.shape[0] <= inputs.size:
        rows += bias                       # the bias goes where there are fewer rows
        bias = None
    # mode="clip" writes straight into ``out``; the default mode would gather into a
    # temporary and copy it (3x slower for a (64, 32, 256) window).
    projected = rows.take(inputs, axis=0, out=out, mode="clip")
    if bias is not None:
        projected += bias
    return projected


class Workspace:
    """Buffers reused from one window to the next, so the hot loop allocates nothing.

    hs:     (T+1, B, H) hidden states, hs[0] is the initial state h0
    x_proj: (T, B, H) Wxh x_t + bh, the input term of every step
    probs:  (T*B, V) logits, then probabilities, then (in backward) dL/dlogits
    da:     (T, B, H) dL/dh_t from the output, then dL/da_t (gradient before tanh)
    dtanh:  (T, B, H) 1 - h_t^2, the derivative of tanh at each step
    carry:  (B, H) gradient carried from step t+1 back to step t

    The time loops walk lists of per-step views (``hs_steps[t]`` is ``hs[t]``), made once
    here: slicing an array costs about as much as a small NumPy operation.
    """

    def __init__(self, T: int, B: int, H: int, V: int, dtype=np.float32):
        self.shape = (T, B, H, V, np.dtype(dtype))
        self.hs = np.empty((T + 1, B, H), dtype)
        self.x_proj = np.empty((T, B, H), dtype)
        self.probs = np.empty((T * B, V), dtype)
        self.row_max = np.empty((T * B, 1), dtype)
        self.row_sum = np.empty(T * B, dtype)
        self.da = np.empty((T, B, H), dtype)
        self.dtanh = np.empty((T, B, H), dtype)
        self.carry = np.empty((B, H), dtype)
        self.one_hot = np.empty((T * B, V), dtype) if V <= ONE_HOT_MATMUL_MAX_VOCAB else None
        # Row n of probs is time step n // B, stream n % B; its target's flat index into probs
        # is row_starts[n] + target (one 1-D index is cheaper than a (rows, columns) pair).
        self.row_starts = np.arange(T * B) * V
        self.target_index = np.empty(T * B, np.intp)
        self.ones = np.ones(T * B, dtype)   # sums over rows as products: 1^T dy is sum_t dy_t
        self.ones_V = np.ones(V, dtype)     # sums within rows as products: y 1 is sum_c y_c
        self.hs_steps = list(self.hs)
        self.x_proj_steps = list(self.x_proj)
        self.da_steps = list(self.da)
        self.dtanh_steps = list(self.dtanh)

    def fits(self, T: int, B: int, H: int, V: int, dtype) -> bool:
        return self.shape == (T, B, H, V, np.dtype(dtype))


class Cache:
    """What the forward pass keeps for the backward pass (names, not positions)."""

    __slots__ = ("inputs", "targets", "hs", "probs", "ws")

    def __init__(self, inputs, targets, hs, probs, ws):
        self.inputs = inputs      # (T, B) int
        self.targets = targets    # (T, B) int
        self.hs = hs              # (T+1, B, H), hs[0] = h0
        self.probs = probs        # (T*B, V) softmax outputs
        self.ws = ws              # the Workspace the arrays live in


def forward_recurrence(hs: list, x_proj: list, Whh_T: np.ndarray) -> None:
    """``h_t = tanh(Whh h_{t-1} + x_proj_t)`` for t = 1..T, in place: ``hs[t]`` and
    ``x_proj[t-1]`` are (B, H) views of step t's states and input terms, ``hs[0]`` is set.

    The states are rows, so ``Whh h`` is ``h Whh^T``. Three NumPy calls per step; each writes
    into its last argument (``out``, passed by position: with one stream a call takes about a
    microsecond, and parsing a keyword is a noticeable part of that).
    """
    for h_prev, h, x in zip(hs, hs[1:], x_proj):
        np.dot(h_prev, Whh_T, h)       # h = h_{t-1} Whh^T
        np.add(h, x, h)                # h += Wxh x_t + bh
        np.tanh(h, h)                  # h = tanh(h)


def backward_recurrence(da: list, dtanh: list, carry: np.ndarray, Whh: np.ndarray) -> None:
    """``da_t = (1 - h_t^2) * (dh_t + Whh^T da_{t+1})`` from the last step back to the first,
    in place: on entry ``da[t]`` holds dh_t from the output layer, ``dtanh[t]`` is 1 - h_t^2
    (both (B, H) views, steps 0..T-1); ``carry`` is a (B, H) buffer.
    """
    np.multiply(da[-1], dtanh[-1], da[-1])                 # the last step has no carry
    for da_next, da_t, dtanh_t in zip(da[:0:-1], da[-2::-1], dtanh[-2::-1]):
        np.dot(da_next, Whh, carry)                        # carry = Whh^T da_{t+1}, as rows
        np.add(da_t, carry, da_t)                          # dh_t = dh_t (from y_t) + carry
        np.multiply(da_t, dtanh_t, da_t)                   # da_t = (1 - h_t^2) * dh_t


def forward(params: Mapping[str, np.ndarray], inputs: np.ndarray, targets: np.ndarray,
            h0: np.ndarray, ws: Workspace | None = None) -> tuple[float, Cache]:
    """Run one window forward and score it.

    inputs, targets: (T, B) integer character indices (targets are inputs shifted by one).
    h0: (B, H) hidden state before the window.
    Returns the loss (sum over T of -log p[target], mean over B; a Python float) and a Cache.
    ``cache.hs[-1]`` is the final hidden state (a view into the workspace: copy it to keep it).

    Only the recurrence loops over time (forward_recurrence: three NumPy calls per step into
    preallocated buffers); the input projection, output projection and softmax are each a
    few calls over the whole window.
    """
    Wxh, Whh, Why, bh, by = (params[name] for name in PARAM_NAMES)
    T, B = inputs.shape
    V, H = Why.shape
    if ws is None or not ws.fits(T, B, H, V, Why.dtype):
        ws = Workspace(T, B, H, V, Why.dtype)

    # Wxh x_t + bh for all steps at once: (T, B, H)
    input_projection(Wxh, inputs, bh, out=ws.x_proj)

    hs = ws.hs
    hs[0] = h0
    forward_recurrence(ws.hs_steps, ws.x_proj_steps, Whh.T)   # h_t = tanh(Whh h_{t-1} + x_proj_t)

    # y = Why h + by for all steps at once: (T*B, V)
    logits = ws.probs
    np.dot(hs[1:].reshape(T * B, H), Why.T, out=logits)   # h Why^T, as rows
    logits += by
    # Stable softmax and cross-entropy: -log p[target] = log(sum(exp(y - max))) - (y - max)[target]
    logits -= logits.max(axis=1, keepdims=True, out=ws.row_max)
    target_index = np.add(ws.row_starts, targets.reshape(-1), out=ws.target_index)
    target_logits = logits.take(target_index)               # (y - max)[target], (T*B,)
    probs = np.exp(logits, out=logits)
    sums = np.dot(probs, ws.ones_V, out=ws.row_sum)       # row sums, as a product (faster)
    loss = float((np.log(sums, dtype=np.float64) - target_logits).sum()) / B
    probs /= sums[:, None]
    return loss, Cache(inputs, targets, hs, probs, ws)


def backward(params: Mapping[str, np.ndarray], cache: Cache,
             grads: ParamSet | None = None) -> tuple[ParamSet, np.ndarray]:
    """Gradients of forward's loss with respect to every parameter and to h0.

    Consumes the cache (its probabilities are overwritten with dL/dlogits).
    Returns ``(grads, dh0)``: grads is a ParamSet (``grads`` itself if given, overwritten),
    dh0 is (B, H).

        dy_t  = (p_t - onehot(target_t)) / B           (T*B, V)
        dWhy  = sum_t dy_t h_t^T        dby = sum_t dy_t
        dh_t  = Why^T dy_t + Whh^T da_{t+1}             (the second term is the carry)
        da_t  = (1 - h_t^2) * dh_t                      (back through tanh)
        dWhh  = sum_t da_t h_{t-1}^T    dWxh = sum_t da_t x_t^T    dbh = sum_t da_t
        dh0   = Whh^T da_1

    Only the carry loops over time (backward_recurrence: three NumPy calls per step); every
    sum over t is one matrix product after the loop.
    """
    Whh, Why = params["Whh"], params["Why"]
    inputs, hs, ws = cache.inputs, cache.hs, cache.ws
    T, B = inputs.shape
    V, H = Why.shape
    if grads is None:
        grads = ParamSet(V, H, dtype=Why.dtype)

    # dL/dlogits, in place of the probabilities
    dy = cache.probs
    dy.reshape(-1)[ws.target_index] -= 1                   # p - onehot(target), at the flat
                                                           # indices forward left in ws
    if B > 1:   # (dividing by 1 changes nothing, and costs a call)
        dy /= B
    h_flat = hs[1:].reshape(T * B, H)
    np.dot(dy.T, h_flat, out=grads["Why"])                 # dWhy = dy^T h
    np.dot(ws.ones, dy, out=grads["by"])                   # dby = 1^T dy (a BLAS sum over rows)

    da = ws.da
    np.dot(dy, Why, out=da.reshape(T * B, H))             # dL/dh_t from the output, all t
    dtanh = ws.dtanh
    np.multiply(hs[1:], hs[1:], out=dtanh)
    np.subtract(1, dtanh, out=dtanh)                       # 1 - h_t^2, all t

    # da_t = (1 - h_t^2) * (dh_t + Whh^T da_{t+1}), from t = T back to 1
    backward_recurrence(ws.da_steps, ws.dtanh_steps, ws.carry, Whh)
    dh0 = np.dot(da[0], Whh)                               # Whh^T da_1, as rows

    da_flat = da.reshape(T * B, H)
    np.dot(da_flat.T, hs[:-1].reshape(T * B, H), out=grads["Whh"])   # dWhh = da^T h_prev
    np.dot(ws.ones, da_flat, out=grads["bh"])              # dbh = 1^T da
    accumulate_dWxh(grads["Wxh"], da_flat, inputs.reshape(-1), ws.one_hot)
    return grads, dh0


def accumulate_dWxh(dWxh: np.ndarray, da_flat: np.ndarray, input_indices: np.ndarray,
                    one_hot: np.ndarray | None = None) -> None:
    """Write ``dWxh = sum_t da_t x_t^T`` into dWxh (H, V).

    da_flat: (N, H) gradients before tanh; input_indices: (N,) the characters x_t.
    For a small vocabulary a one-hot (N, V) matrix product is fastest; for a large one,
    sorting by character and summing each run of rows costs O(N H) whatever V is.
    """
    H, V = dWxh.shape
    if one_hot is not None:
        one_hot.fill(0)
        one_hot[np.arange(len(input_indices)), input_indices] = 1
        np.matmul(da_flat.T, one_hot, out=dWxh)
        return
    order = np.argsort(input_indices, kind="stable")
    sorted_chars = input_indices[order]
    starts = np.flatnonzero(np.r_[True, sorted_chars[1:] != sorted_chars[:-1]])
    dWxh.fill(0)
    dWxh[:, sorted_chars[starts]] = np.add.reduceat(da_flat[order], starts, axis=0).T
