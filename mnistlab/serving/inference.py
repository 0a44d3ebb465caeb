"""A trained model as a function from images to class probabilities, for predict, serve and export.

Two backends behind one interface: ``torch`` rebuilds the model from its checkpoint (``weights_only=True``),
``onnx`` runs a file written by ``python -m mnistlab.export`` with onnxruntime (no torch model code at all).
Both run :class:`InferenceModel`, so they take the same [0, 1] input and agree to float precision.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from mnistlab.core.errors import ConfigError, first_line
from mnistlab.core.fields import STYLES, check
from mnistlab.data.permutation import permutation_order, permute
from mnistlab.models.layers import normalize
from mnistlab.serving.preprocess import prepare, resolve_style
from mnistlab.tasks.checkpoint import card_problem

ONNX_METADATA_KEY = "mnistlab"


@dataclass(frozen=True)
class ModelCard:
    """What a caller must know of a model to feed it: its classes, input shape and preprocessing."""

    classes: list[str]
    input_shape: tuple[int, int, int]
    preprocess: str  # mnist | fit | resize (resolved, see mnistlab.serving.preprocess)
    permutation_seed: int | None = None  # pixels were shuffled in training (data.permute_pixels)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)  # class names as written: "café", not an escape

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """A card read back from a file: every field checked (ValueError/TypeError when one is off)."""
        fields = json.loads(text)
        card = cls(**{**fields, "input_shape": tuple(int(n) for n in fields["input_shape"])})
        if len(card.input_shape) != 3 or min(card.input_shape) < 1:
            raise ValueError(f"input_shape {card.input_shape} is not (C, H, W)")
        if not card.classes or not all(isinstance(c, str) for c in card.classes):
            raise ValueError("classes must be a list of names")
        if card.preprocess not in STYLES or card.preprocess == "auto":
            raise ValueError(f"preprocess {card.preprocess!r} is not one of mnist, fit, resize")
        return card


class InferenceModel(nn.Module):
    """[0, 1] images → probabilities: the pixel permutation of training (if any), the model's own
    normalization (the train split's mean/std from the checkpoint), the network, softmax. This plain module
    is what is exported, so every backend computes exactly this."""

    mean: Tensor  # buffers
    inv_std: Tensor
    order: Tensor | None

    def __init__(self, net: nn.Module, mean: Tensor, inv_std: Tensor, card: ModelCard) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("inv_std", inv_std.detach().clone())
        order = None
        if card.permutation_seed is not None:
            _, height, width = card.input_shape
            order = permutation_order(height * width, card.permutation_seed)
        self.register_buffer("order", order, persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        if self.order is not None:
            images = permute(images, self.order)
        return self.net(normalize(images, self.mean, self.inv_std)).float().softmax(dim=1)


def card_from_checkpoint(checkpoint: dict[str, Any], style: str = "auto") -> ModelCard:
    from mnistlab.tasks.checkpoint import stored_data

    hparams = checkpoint["hyper_parameters"]
    data = stored_data(checkpoint)
    input_shape = tuple(int(n) for n in hparams["input_shape"])
    classes = [str(c) for c in (hparams.get("classes") or range(int(hparams["num_classes"])))]
    permuted = bool(data.get("permute_pixels", False))
    return ModelCard(
        classes=classes,
        input_shape=input_shape,  # type: ignore[arg-type]
        preprocess=resolve_style(style, data.get("dataset"), input_shape),  # type: ignore[arg-type]
        permutation_seed=int(data.get("permutation_seed", 0)) if permuted else None,
    )


def load_inference_model(ckpt_path: str | None, style: str = "auto") -> tuple[InferenceModel, ModelCard]:
    from mnistlab.models import model_task
    from mnistlab.tasks.checkpoint import load_task

    classifier, checkpoint = load_task(ckpt_path)
    if model_task(checkpoint["hyper_parameters"]["model"]["name"]) != "classification":
        raise ConfigError(f"ckpt_path={ckpt_path} holds a detection model; predict, serve and export take classifiers")
    card = card_from_checkpoint(checkpoint, style)
    model = InferenceModel(classifier.net, classifier.mean, classifier.inv_std, card).eval()
    try:  # one image of zeros: the network takes the card's input shape and gives one output per class
        with torch.inference_mode():
            outputs = int(model(torch.zeros(1, *card.input_shape)).shape[-1])
    except RuntimeError as err:
        raise ConfigError(
            f"ckpt_path={ckpt_path} has a card that does not fit its model: input_shape={list(card.input_shape)} "
            f"({first_line(err)})"
        ) from None
    problem = card_problem(card.classes, card.input_shape, outputs)
    if problem:
        raise ConfigError(f"ckpt_path={ckpt_path} has a card that does not fit its model: {problem}")
    return model, card


class TorchBackend:
    def __init__(self, ckpt_path: str | None, style: str = "auto") -> None:
        self.model, self.card = load_inference_model(ckpt_path, style)

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(batch)).numpy()


class OnnxBackend:
    def __init__(self, onnx_path: str, style: str = "auto") -> None:
        from mnistlab.core.extras import require

        require("backend=onnx", "onnxruntime")
        import onnxruntime as ort

        if not Path(onnx_path).is_file():
            raise ConfigError(
                f"onnx_path={onnx_path} does not exist: "
                "write it with `python -m mnistlab.export ckpt_path=… format=onnx`"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        except Exception as err:
            raise ConfigError(f"onnx_path={onnx_path} is not a readable ONNX model ({first_line(err)})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if ONNX_METADATA_KEY not in metadata:
            raise ConfigError(f"onnx_path={onnx_path} was not exported by mnistlab (no '{ONNX_METADATA_KEY}' metadata)")
        try:
            card = ModelCard.from_json(metadata[ONNX_METADATA_KEY])  # preprocess resolved at export time
        except (ValueError, TypeError, KeyError) as err:
            raise ConfigError(
                f"onnx_path={onnx_path} has malformed '{ONNX_METADATA_KEY}' metadata ({first_line(err)})"
            ) from None
        self.input_name = self.session.get_inputs()[0].name
        self.check_card(card, onnx_path)
        if style != "auto":
            card = replace(card, preprocess=resolve_style(style, None, card.input_shape))
        self.card = card

    def check_card(self, card: ModelCard, onnx_path: str) -> None:
        """The metadata's input shape is the graph's, and its classes one name per output (a dry run on zeros)."""
        graph = list(self.session.get_inputs()[0].shape)[1:]  # [batch, C, H, W]: C, H, W are fixed numbers
        problem = card_problem(card.classes, card.input_shape)
        if not problem and graph != list(card.input_shape):
            problem = f"input_shape={list(card.input_shape)} is not the graph's input {graph}"
        if not problem:
            try:
                outputs = int(self(np.zeros((1, *card.input_shape), dtype=np.float32)).shape[-1])
            except Exception as err:  # onnxruntime's own errors: the graph does not run on its declared input
                problem = f"the graph does not run on input_shape={list(card.input_shape)} ({first_line(err)})"
            else:
                problem = card_problem(card.classes, card.input_shape, outputs)
        if problem:
            raise ConfigError(f"onnx_path={onnx_path} has a card that does not fit its model: {problem}")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        (probabilities,) = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})
        return probabilities


@dataclass
class Prediction:
    label: str
    index: int
    probabilities: dict[str, float]
    input: np.ndarray  # what the model saw, (C, H, W) in [0, 1]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:k]

    def to_dict(self, with_input: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = {
            "label": self.label,
            "index": self.index,
            "probabilities": self.probabilities,
            "top3": [{"label": label, "probability": p} for label, p in self.top(3)],
        }
        if with_input:
            image = self.input[0] if self.input.shape[0] == 1 else self.input.transpose(1, 2, 0)
            result["input"] = np.round(image, 3).tolist()  # 28×28 (gray) or H×W×3
        return result


class Predictor:
    """Preprocessing + a backend. Loaded once; ``predict`` takes decoded PIL images."""

    def __init__(
        self,
        ckpt_path: str | None = None,
        backend: str = "torch",
        onnx_path: str | None = None,
        preprocess: str = "auto",
        batch_size: int = 256,
    ) -> None:
        check("backend", backend)
        if backend == "torch":
            self.backend: TorchBackend | OnnxBackend = TorchBackend(ckpt_path, preprocess)
        else:
            if not onnx_path and not ckpt_path:
                raise ConfigError("backend=onnx needs onnx_path=… (or ckpt_path=… beside its exported .onnx)")
            self.backend = OnnxBackend(onnx_path or str(Path(ckpt_path).with_suffix(".onnx")), preprocess)  # type: ignore[arg-type]
        self.card = self.backend.card
        self.batch_size = int(batch_size)

    def prepare(self, image: Image.Image) -> np.ndarray:
        return prepare(image, self.card.input_shape, self.card.preprocess)

    def predict_arrays(self, inputs: list[np.ndarray]) -> list[Prediction]:
        predictions: list[Prediction] = []
        for start in range(0, len(inputs), self.batch_size):
            chunk = inputs[start : start + self.batch_size]
            probabilities = self.backend(np.stack(chunk).astype(np.float32))
            for array, row in zip(chunk, probabilities, strict=True):
                index = int(row.argmax())
                predictions.append(
                    Prediction(
                        label=self.card.classes[index],
                        index=index,
                        probabilities={c: round(float(p), 6) for c, p in zip(self.card.classes, row, strict=True)},
                        input=array,
                    )
                )
        return predictions

    def predict(self, images: list[Image.Image]) -> list[Prediction]:
        return self.predict_arrays([self.prepare(image) for image in images])
