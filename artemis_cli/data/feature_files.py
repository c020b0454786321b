"""Reading and writing per-video feature files without running code from them.

Published feature files are Python pickles of one numpy array. Unpickling can run arbitrary code,
so `.pkl` files go through `NumpyOnlyUnpickler`, which resolves only the handful of numpy globals
needed to rebuild an ndarray; any other global (``os.system``, ``builtins.eval``...) is refused
before anything runs. `.npy` is read with ``allow_pickle=False``; `.safetensors` has no code path.
Every module that reads features calls `load_feature`.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
from pathlib import Path

import numpy as np

from artemis_cli.common.media import FEATURE_SUFFIXES
from artemis_cli.errors import InputError

SAFETENSORS_KEY = "features"

# (module, name) pairs numpy's own ndarray/dtype pickling refers to, across numpy 1.x and 2.x.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # Protocols 0-2 store bytes as latin-1 text re-encoded through this pure function.
    ("_codecs", "encode"),
}


class UnsafePickleError(InputError):
    """A pickle asked for something other than a numpy array."""


class _Forbidden(pickle.UnpicklingError):
    """Raised by the unpickler itself when a pickle asks for a forbidden global."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            # numpy 2 renamed numpy.core to numpy._core; resolve directly to skip its shim warning.
            if module.startswith("numpy.core") and hasattr(np, "_core"):
                module = module.replace("numpy.core", "numpy._core")
            return getattr(importlib.import_module(module), name)
        if module == "numpy.dtypes" and name.endswith("DType"):
            # numpy 2 may pickle dtype instances by their class, e.g. numpy.dtypes.Float16DType.
            import numpy.dtypes as np_dtypes

            return getattr(np_dtypes, name)
        raise _Forbidden(f"global '{module}.{name}' is not allowed (numpy arrays only)")

    def persistent_load(self, pid):
        raise _Forbidden("persistent ids are not allowed (numpy arrays only)")


def safe_unpickle_array(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Rebuild a numpy array from pickle bytes; refuses anything else without running it."""
    try:
        obj = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except _Forbidden as exc:
        raise UnsafePickleError(f"{source}: refused to load pickle: {exc}",
                                hint="feature pickles must hold one numpy array; re-extract with `artemis features extract`") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, ImportError) as exc:
        raise InputError(f"{source}: not a readable feature pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, np.ndarray):
        raise InputError(f"{source}: pickle holds {type(obj).__name__}, expected a numpy array")
    if obj.dtype.hasobject:
        raise InputError(f"{source}: array has dtype object, expected a numeric array")
    return obj


def load_feature(path: str | os.PathLike) -> np.ndarray:
    """Load one feature file (`.pkl`, `.npy` or `.safetensors`) as a numpy array, safely."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".pkl", ".pickle"):
            return safe_unpickle_array(path.read_bytes(), str(path))
        if suffix == ".npy":
            try:
                return np.load(path, allow_pickle=False)
            except ValueError as exc:
                raise InputError(f"{path}: not a plain .npy array ({exc})") from None
        if suffix == ".safetensors":
            return _load_safetensors(path)
    except FileNotFoundError:
        raise InputError(f"{path}: feature file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a feature file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    raise InputError(f"{path}: unknown feature file type {suffix!r}; expected one of {', '.join(FEATURE_SUFFIXES)}")


def _load_safetensors(path: Path) -> np.ndarray:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc})") from None
    if SAFETENSORS_KEY in tensors:
        return tensors[SAFETENSORS_KEY]
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    raise InputError(f"{path}: holds tensors {sorted(tensors)}, expected one named {SAFETENSORS_KEY!r}")


def feature_bytes(array: np.ndarray, fmt: str) -> bytes:
    """Serialise `array` in one of the formats `load_feature` reads (`pkl` is the published one)."""
    if fmt == "pkl":
        return pickle.dumps(np.ascontiguousarray(array), protocol=4)
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue()
    if fmt == "safetensors":
        from safetensors.numpy import save

        return save({SAFETENSORS_KEY: np.ascontiguousarray(array)})
    raise ValueError(f"unknown feature format {fmt!r}")


def save_feature(path: str | os.PathLike, array: np.ndarray, fmt: str | None = None) -> None:
    """Write one feature file atomically; the format defaults to the path's suffix."""
    from artemis_cli.common.atomic import atomic_write_bytes

    path = Path(path)
    fmt = fmt or {".pkl": "pkl", ".pickle": "pkl", ".npy": "npy", ".safetensors": "safetensors"}[path.suffix.lower()]
    atomic_write_bytes(path, feature_bytes(array, fmt))
