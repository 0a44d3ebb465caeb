"""What the tests share besides fixtures (those stay in ``tests/conftest.py``): paths, data and checkpoint
writers (``data``), the command runner and a served model (``cli``), TensorBoard readers (``tb``), test images
(``images``), the browser (``browser``) and a crashing callback (``killer``). Test modules import from here,
never from one another or from conftest (``tests/`` is on the path: ``pythonpath`` in pyproject.toml)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
_REAL_CANDIDATES = [
    os.environ.get("MNISTLAB_REAL_DATA"),
    os.environ.get("MNISTLAB_DATA_DIR"),
    REPO.parent / "shared" / "datasets",
]
# the real MNIST for the slow end-to-end tests: the first of these that holds MNIST/raw
REAL_DATA = next(
    (Path(c) for c in _REAL_CANDIDATES if c and (Path(c) / "MNIST" / "raw").is_dir()),
    REPO.parent / "shared" / "datasets",
)


def needs(*modules: str) -> pytest.MarkDecorator:
    """Skip a test when an optional extra it uses is not installed (a core install runs the core tests)."""
    from mnistlab.core.extras import EXTRA_OF, installed

    missing = [m for m in modules if not installed(m)]
    extras = ", ".join(sorted({f"[{EXTRA_OF.get(m, 'all')}]" for m in missing}))
    return pytest.mark.skipif(bool(missing), reason=f"the {extras} extra is not installed")
