"""Reading MNIST-style IDX files straight into uint8 tensors, with errors that say what is wrong."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from mnistlab.core.errors import DataError

# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions
_UBYTE = 0x08


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (optionally ``.gz``) as a uint8 tensor of the shape its header declares."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read {path}: {err}; delete it so that it is downloaded again") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE or not 1 <= raw[3] <= 4:
        raise DataError(
            f"{path} is not an unsigned-byte IDX file (bad magic {raw[:4].hex() or 'empty'}); "
            "replace it with the original file"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"{path} is truncated or corrupt: {len(raw)} bytes where its header {shape} says {expected}; "
            "replace it with the original file"
        )
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy())
