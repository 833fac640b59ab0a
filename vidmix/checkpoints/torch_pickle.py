"""Reading PyTorch checkpoint files (`.pth`, `.bin`, `.pyth`, `.pt`) without importing torch.

`torch.save` (since torch 1.6) writes a zip archive: `<prefix>/data.pkl` is a pickle of the saved
object in which every tensor storage is a *persistent id* naming a raw little-endian byte file
`<prefix>/data/<key>`. We unpickle `data.pkl` with an unpickler that resolves only a fixed
whitelist of globals to our own small stand-ins (nothing is ever imported or executed), turn
each storage into a numpy array and each tensor into a contiguous numpy array.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Mapping

import ml_dtypes
import numpy as np
from numpy.lib.stride_tricks import as_strided

from vidmix.checkpoints.errors import CheckpointError

# Legacy typed storage classes (how torch names a storage's dtype in the pickle) -> numpy dtype.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128, "UntypedStorage": np.uint8,
}
_TORCH_DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8",
                 "uint8", "bool", "complex64", "complex128")


def _numpy_dtype(obj, align=False, copy=False):
    return np.dtype(obj, align, True)  # always a fresh copy, so a later BUILD cannot alter numpy's


def _numpy_scalar(dtype, data=None):
    """What numpy's pickled scalars (e.g. an `epoch` stored as np.int64) reduce to."""
    if not isinstance(dtype, np.dtype):
        raise TypeError(f"numpy scalar with dtype {dtype!r}")
    return data if dtype.hasobject else np.frombuffer(data, dtype, count=1)[0]


def _codecs_encode(text, encoding):
    """Protocol-2 pickles store bytes as `_codecs.encode(str, "latin1")`; allow only that."""
    if encoding not in ("latin1", "latin-1"):
        raise TypeError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix, self._path = archive, prefix, path
        self._storages: dict[str, np.ndarray] = {}  # by key: views of one storage share it

    def find_class(self, module, name):
        # Strings and bound methods are made afresh per lookup and cannot be altered by BUILD.
        full = f"{module}.{name}"
        if module == "torch" and name in _STORAGE_DTYPES or full == "torch.storage.UntypedStorage":
            return name  # a storage type is only a dtype tag inside a persistent id
        if module == "torch" and name in _TORCH_DTYPES:
            return full  # dtype objects (in tensor metadata) are never used
        allowed = {
            "collections.OrderedDict": OrderedDict,
            "torch._utils._rebuild_tensor_v2": self._rebuild_tensor,
            "torch._utils._rebuild_parameter": self._rebuild_parameter,
            "torch._utils._rebuild_parameter_with_state": self._rebuild_parameter,
            "numpy.dtype": _numpy_dtype,
            "numpy.core.multiarray.scalar": _numpy_scalar,
            "numpy._core.multiarray.scalar": _numpy_scalar,
            "_codecs.encode": _codecs_encode,
        }
        if full not in allowed:
            raise CheckpointError(f"refusing to load {full} from {self._path}: only tensors and "
                                  "plain containers are read")
        return allowed[full]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self._path}: unknown persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if storage_type not in _STORAGE_DTYPES or not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"{self._path}: malformed storage record {pid!r}")
        if key not in self._storages:
            dtype = np.dtype(_STORAGE_DTYPES[storage_type])
            record = f"{self._prefix}data/{key}"
            try:
                raw = self._archive.read(record)
            except KeyError:
                raise CheckpointError(f"{self._path}: storage record {record} is missing") from None
            if len(raw) < numel * dtype.itemsize:
                raise CheckpointError(f"{self._path}: storage {record} holds {len(raw)} bytes, "
                                      f"expected {numel * dtype.itemsize}")
            self._storages[key] = np.frombuffer(raw, dtype, count=numel)
        return self._storages[key]

    def _rebuild_tensor(self, storage, offset, size, stride, requires_grad=False, hooks=None,
                        metadata=None):
        size, stride = tuple(size), tuple(stride)
        ints = all(isinstance(n, int) and n >= 0 for n in (offset, *size, *stride))
        if not isinstance(storage, np.ndarray) or not ints or len(size) != len(stride):
            raise CheckpointError(f"{self._path}: malformed tensor record")
        if 0 in size:
            return np.zeros(size, storage.dtype)
        # Bounds check first: as_strided would otherwise read memory outside the storage.
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.size:
            raise CheckpointError(f"{self._path}: tensor of size {size} at offset {offset} runs "
                                  f"past its storage of {storage.size} elements")
        strides = tuple(s * storage.itemsize for s in stride)
        return as_strided(storage[offset:], shape=size, strides=strides).copy()

    def _rebuild_parameter(self, data, requires_grad=False, hooks=None, state=None):
        return data  # a Parameter is its tensor


def _flatten(obj, prefix: str, out: dict, path: list) -> None:
    if isinstance(obj, np.ndarray):
        out[prefix] = obj
    elif isinstance(obj, Mapping | list | tuple) and not any(obj is p for p in path):
        items = obj.items() if isinstance(obj, Mapping) else enumerate(obj)
        for k, v in items:
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out, [*path, obj])


def read_torch_file(path: str) -> dict[str, np.ndarray]:
    """Every tensor in a torch.save zip file, as a flat {name: numpy array} dict.

    Nested containers are flattened with "." (`{"model_state": {"w": t}}` -> `model_state.w`,
    lists by index); ints, strings, None and other non-tensor leaves are dropped. Every tensor
    is returned, optimizer state included (e.g. `optimizer_state.state.0.exp_avg`): the caller
    picks the prefix it wants. A bare saved tensor comes back under the key "".
    Raises CheckpointError for legacy (pre-1.6) files, corrupt or truncated files and pickles
    that name any global outside the whitelist.
    """
    path = os.fspath(path)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(b"PK"):
            raise CheckpointError(f"{path}: truncated or corrupt zip archive") from None
        if head.startswith(b"\x80"):  # a bare pickle stream: torch.save before 1.6
            raise CheckpointError(f"{path}: the legacy (pre-1.6) torch format is not supported; "
                                  "re-save it with torch.save in torch >= 1.6") from None
        raise CheckpointError(f"{path}: not a torch.save zip archive (empty, truncated or "
                              "another format)") from None
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n == "data.pkl" or
                   (n.count("/") == 1 and n.endswith("/data.pkl"))]
        if not pickles:
            raise CheckpointError(f"{path}: zip archive has no data.pkl; not a torch.save file")
        prefix = pickles[0][: -len("data.pkl")]
        if prefix + "byteorder" in names:
            if archive.read(prefix + "byteorder").strip() != b"little":
                raise CheckpointError(f"{path}: big-endian torch files are not supported")
        try:
            obj = _Unpickler(archive.read(pickles[0]), archive, prefix, path).load()
        except CheckpointError:
            raise
        except Exception as e:  # malformed pickle or zip record: only our stand-ins ever ran
            raise CheckpointError(f"{path}: cannot read data.pkl: {type(e).__name__}: {e}") from e
    out: dict[str, np.ndarray] = {}
    _flatten(obj, "", out, [])
    return out
