"""Read pickled datasets (CIFAR python batches) without executing code from the file.

A pickle can name any importable callable and have it called on load. This reader only
resolves the handful of numpy functions that rebuild an array from bytes; everything else
(``os.system``, ``builtins.eval``, custom classes) is refused before it is called. Builtin
containers (dict, list, tuple, str, bytes, int, float) need no lookup and load as usual.
"""

from __future__ import annotations

import codecs
import io
import pickle

import numpy as np

from engine.core.errors import UserError


class Refused(pickle.UnpicklingError):
    """The pickle names something this reader will not call."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 pickles bytes at protocol < 3 as _codecs.encode(str, 'latin1').
    if encoding not in ("latin1", "latin-1"):
        raise Refused(f"refused codec '{encoding}'")
    return codecs.encode(text, "latin1")


def _numpy_allowed() -> dict[tuple[str, str], object]:
    core = np._core if hasattr(np, "_core") else np.core
    reconstruct = core.multiarray._reconstruct
    scalar = core.multiarray.scalar
    frombuffer = core.numeric._frombuffer
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("codecs", "encode"): _latin1_encode,
    }
    for pkg in ("numpy.core", "numpy._core"):
        allowed[(f"{pkg}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{pkg}.multiarray", "scalar")] = scalar
        allowed[(f"{pkg}.numeric", "_frombuffer")] = frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose find_class only returns numpy's array-rebuilding functions."""

    def __init__(self, file, **kwargs):
        super().__init__(file, **kwargs)
        self._allowed = _numpy_allowed()

    def find_class(self, module: str, name: str):
        found = self._allowed.get((module, name))
        if found is None:
            raise Refused(f"refused to load '{module}.{name}'")
        return found

    def persistent_load(self, pid):
        raise Refused("refused a persistent reference")


def safe_load(data: bytes, where: str) -> object:
    """Unpickle ``data`` allowing only builtin containers and numpy arrays.

    Python 2 pickles (the CIFAR batches) are read with ``encoding='bytes'``, so their
    dictionary keys come back as bytes.

    Raises:
        UserError: the pickle names anything else, or is truncated or corrupt.
    """
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Refused as exc:
        raise UserError(f"not a plain data pickle, not loaded ({exc})", where) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        MemoryError,
    ) as exc:
        raise UserError(f"pickle is truncated or corrupt ({type(exc).__name__}: {exc})", where) from None
    return obj
