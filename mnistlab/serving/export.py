"""A model as one file for deployment (ONNX or TorchScript), checked against the checkpoint (largest
probability difference on a random batch) before it replaces anything."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import IO, Any

from omegaconf import DictConfig

from mnistlab.core.errors import ConfigError, MnistlabError
from mnistlab.core.extras import require
from mnistlab.core.fields import validate
from mnistlab.core.files import atomic_write
from mnistlab.serving.inference import ONNX_METADATA_KEY, OnnxBackend, load_inference_model

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
TORCHSCRIPT_CARD = "mnistlab.json"  # extra file inside the TorchScript archive


def _export_onnx(model: Any, example: Any, target: IO[bytes], card_json: str) -> None:
    import torch

    require("format=onnx", "onnx", "onnxscript")

    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            input_names=["images"],
            output_names=["probabilities"],
            dynamic_shapes={"images": {0: batch}},
            dynamo=True,
            verbose=False,
        )
    assert program is not None  # dynamo=True always returns an ONNXProgram
    proto = program.model_proto
    proto.metadata_props.add(key=ONNX_METADATA_KEY, value=card_json)
    target.write(proto.SerializeToString())


def _export_torchscript(model: Any, example: Any, target: IO[bytes], card_json: str) -> None:
    import torch

    with warnings.catch_warnings():  # torch.jit is deprecated upstream, yet still what C++/mobile runtimes load
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, target, _extra_files={TORCHSCRIPT_CARD: card_json})


def run_exported(path: Path, fmt: str, batch: Any) -> Any:
    """Probabilities from the exported file, loaded the way a deployment would load it."""
    import numpy as np
    import torch

    if fmt == "onnx":
        return OnnxBackend(str(path))(batch.numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(path))
    with torch.inference_mode():
        return np.asarray(loaded(batch))


def export(cfg: DictConfig) -> dict[str, Any]:
    import numpy as np
    import torch

    validate(cfg, "export")
    ckpt = Path(str(cfg.ckpt_path))
    output = Path(str(cfg.output)) if cfg.output else ckpt.with_name(ckpt.stem + FORMATS[cfg.format])
    if output.resolve() == ckpt.resolve():
        raise ConfigError(f"output={output} is the checkpoint itself; choose another file name")
    if output.is_dir():
        raise ConfigError(f"output={output} is a folder; name the file to write in it, e.g. output={output}/model.onnx")
    model, card = load_inference_model(cfg.ckpt_path, str(cfg.preprocess))
    batch = torch.rand(8, *card.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(batch).numpy()
    result: dict[str, Any] = {"path": str(output)}

    def check(path: Path) -> None:
        result["max_abs_diff"] = difference = float(np.abs(run_exported(path, cfg.format, batch) - expected).max())
        if not difference <= float(cfg.tolerance):  # NaN fails too
            raise MnistlabError(
                f"the {cfg.format} export differs from the checkpoint by {difference:.2e} (> tolerance={cfg.tolerance})"
            )

    # written beside the target, checked, then renamed: a failed export never replaces a good file
    writer = _export_onnx if cfg.format == "onnx" else _export_torchscript
    atomic_write(output, lambda f: writer(model, batch[:2], f, card.to_json()), check)
    size = output.stat().st_size / 1e6
    print(f"exported {output} ({size:.2f} MB); max |Δp| vs the checkpoint on 8 images: {result['max_abs_diff']:.1e}")
    return result
