"""Named parameter arrays that are views into one flat buffer.

One buffer lets gradient clipping and the optimiser treat every parameter of any model in a
single NumPy call, whatever the cell and the number of layers. The same class holds
parameters, their gradients and the optimiser's state (Adagrad's memories, Adam's moments),
under the same names.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class ParamSet(Mapping):
    """Arrays named and shaped by ``shapes`` ({name: shape}), views into one flat array ``flat``.

    Iteration follows the order of ``shapes``; so does the layout of ``flat``.
    """

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], dtype=np.float32):
        self.shapes = {name: tuple(int(n) for n in shape) for name, shape in shapes.items()}
        sizes = [int(np.prod(shape)) for shape in self.shapes.values()]
        self.flat = np.zeros(sum(sizes), dtype=dtype)
        self._views = {}
        offset = 0
        for (name, shape), size in zip(self.shapes.items(), sizes):
            self._views[name] = self.flat[offset:offset + size].reshape(shape)
            offset += size

    @classmethod
    def from_arrays(cls, shapes: Mapping[str, tuple[int, ...]], arrays: Mapping[str, np.ndarray],
                    dtype=np.float32) -> "ParamSet":
        """A ParamSet holding copies of ``arrays[name]`` for every name in ``shapes``.

        Raises ValueError naming the first array whose shape is not the expected one.
        """
        params = cls(shapes, dtype=dtype)
        for name, shape in params.shapes.items():
            value = np.asarray(arrays[name])
            if value.shape != shape:
                raise ValueError(f"{name} has shape {value.shape}, expected {shape}")
            params[name] = value
        return params

    def zeros_like(self) -> "ParamSet":
        """A ParamSet of the same names, shapes and dtype, all zeros (gradients, memories)."""
        return ParamSet(self.shapes, dtype=self.flat.dtype)

    def copy(self) -> "ParamSet":
        twin = self.zeros_like()
        twin.flat[...] = self.flat
        return twin

    @property
    def dtype(self) -> np.dtype:
        return self.flat.dtype

    def __getitem__(self, name: str) -> np.ndarray:
        return self._views[name]

    def __setitem__(self, name: str, value) -> None:
        self._views[name][...] = value

    def __iter__(self):
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)

    def __repr__(self) -> str:
        return f"ParamSet({len(self)} arrays, dtype={self.flat.dtype}, count={self.flat.size})"
