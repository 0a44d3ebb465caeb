"""Softmax regression and a one-hidden-layer MLP in NumPy, with hand-written gradients.

The gradient of the mean cross-entropy with respect to the logits is ``(softmax(z) - onehot(y)) / n``: in
code, ``dz = p; dz[range(n), y] -= 1; dz /= n``. Everything else is the chain rule through matrix products.
"""

from __future__ import annotations

import numpy as np

from mnistlab.core.record import VAL_ACC, VAL_LOSS


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)  # stable: exp never overflows
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())


def logits_grad(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    dz = p.copy()
    dz[np.arange(len(y)), y] -= 1
    return dz / len(y)


class SoftmaxRegressionNP:
    """z = x W + b."""

    def __init__(self, n_in: int, n_classes: int, seed: int = 0, dtype: type = np.float32) -> None:
        rng = np.random.default_rng(seed)
        self.params: dict[str, np.ndarray] = {
            "W": (rng.standard_normal((n_in, n_classes)) * 0.01).astype(dtype),
            "b": np.zeros(n_classes, dtype=dtype),
        }

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        return softmax(x @ self.params["W"] + self.params["b"]), {"x": x}

    def backward(self, p: np.ndarray, y: np.ndarray, cache: dict) -> dict[str, np.ndarray]:
        dz = logits_grad(p, y)
        return {"W": cache["x"].T @ dz, "b": dz.sum(axis=0)}


class MLPNP:
    """h = relu(x W1 + b1); z = h W2 + b2."""

    def __init__(self, n_in: int, n_classes: int, hidden: int = 128, seed: int = 0, dtype: type = np.float32) -> None:
        rng = np.random.default_rng(seed)
        self.params: dict[str, np.ndarray] = {
            "W1": (rng.standard_normal((n_in, hidden)) * np.sqrt(2 / n_in)).astype(dtype),
            "b1": np.zeros(hidden, dtype=dtype),
            "W2": (rng.standard_normal((hidden, n_classes)) * np.sqrt(1 / hidden)).astype(dtype),
            "b2": np.zeros(n_classes, dtype=dtype),
        }

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        z1 = x @ self.params["W1"] + self.params["b1"]
        h = np.maximum(z1, 0)
        return softmax(h @ self.params["W2"] + self.params["b2"]), {"x": x, "z1": z1, "h": h}

    def backward(self, p: np.ndarray, y: np.ndarray, cache: dict) -> dict[str, np.ndarray]:
        dz2 = logits_grad(p, y)
        dh = dz2 @ self.params["W2"].T
        dz1 = dh * (cache["z1"] > 0)
        return {"W2": cache["h"].T @ dz2, "b2": dz2.sum(axis=0), "W1": cache["x"].T @ dz1, "b1": dz1.sum(axis=0)}


def train(
    model,
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    lr: float,
    batch_size: int,
    epochs: int,
    patience: int,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Mini-batch SGD with the learning rate decayed linearly to zero over the planned steps (the late small
    steps average out the noise of the early large ones); stops early when the validation loss has not
    improved for ``patience`` epochs and keeps the best parameters. Returns one record per epoch."""
    rng = np.random.default_rng(seed)
    history, best_loss, best_params, waited = [], np.inf, None, 0
    total_steps, step = epochs * -(-len(y) // batch_size), 0
    for epoch in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            p, cache = model.forward(x[idx])
            rate = lr * (1 - step / total_steps)
            step += 1
            for name, grad in model.backward(p, y[idx], cache).items():
                model.params[name] -= rate * grad
        p_val, _ = model.forward(x_val)
        val_loss = cross_entropy(p_val, y_val)
        history.append({"epoch": epoch + 1, VAL_LOSS: val_loss, VAL_ACC: float((p_val.argmax(1) == y_val).mean())})
        if val_loss < best_loss - 1e-4:
            best_loss, best_params, waited = val_loss, {k: v.copy() for k, v in model.params.items()}, 0
        else:
            waited += 1
            if waited >= patience:
                break
    if best_params is not None:
        model.params = best_params
    return history
