"""The NumPy classifiers: hand-written gradients against torch autograd, and training on real MNIST."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import REAL_DATA
from helpers.cli import run_cli

from mnistlab.scratch.numpy_models import MLPNP, SoftmaxRegressionNP, cross_entropy


def _autograd(model, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    params = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    xt = torch.tensor(x)
    if "W" in params:
        logits = xt @ params["W"] + params["b"]
    else:
        logits = torch.relu(xt @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
    torch.nn.functional.cross_entropy(logits, torch.tensor(y)).backward()
    return {k: v.grad.numpy() for k, v in params.items()}


@pytest.mark.parametrize(
    "make", [lambda: SoftmaxRegressionNP(20, 5, dtype=np.float64), lambda: MLPNP(20, 5, hidden=16, dtype=np.float64)]
)
def test_hand_written_gradients_match_autograd(make):
    rng = np.random.default_rng(1)
    model = make()
    for params in model.params.values():
        params += rng.standard_normal(params.shape) * 0.3  # away from the symmetric start
    x, y = rng.standard_normal((32, 20)), rng.integers(0, 5, 32)
    p, cache = model.forward(x)
    ours = model.backward(p, y, cache)
    reference = _autograd(model, x, y)
    assert set(ours) == set(reference)
    for name, grad in ours.items():
        relative = np.abs(grad - reference[name]).max() / max(np.abs(reference[name]).max(), 1e-12)
        assert relative < 1e-5, name
    expected = torch.nn.functional.nll_loss(torch.log(torch.tensor(p)), torch.tensor(y)).item()
    assert cross_entropy(p, y) == pytest.approx(expected, rel=1e-9)


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_DATA / "MNIST" / "raw").is_dir(), reason=f"no real MNIST in {REAL_DATA}")
def test_numpy_softmax_regression_reaches_92_percent_in_one_epoch(tmp_path):
    result = run_cli("mnistlab.scratch", f"hydra.run.dir={tmp_path}", data_dir=REAL_DATA)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["test/acc"] >= 0.92, result.stdout
    assert (tmp_path / "softmax_weights.png").stat().st_size > 10_000
