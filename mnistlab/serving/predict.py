"""Predict image files: the label and top-3 probabilities of each image, preprocessed the way the training
data was (``mnistlab.serving.preprocess``), as text or JSON.

An unreadable image is reported on its own line and the others are still predicted; the exit status is then 1.
"""

from __future__ import annotations

import io
import sys
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnistlab.core.errors import ConfigError
from mnistlab.core.fields import validate
from mnistlab.core.files import to_json
from mnistlab.serving.inference import Predictor
from mnistlab.serving.preprocess import BadImageError, image_files, open_image


def predict_files(cfg: DictConfig) -> list[dict[str, Any]]:
    """Print one line (or one JSON entry) per image; returns the results (an ``error`` key for bad files)."""
    validate(cfg, "predict")
    if not cfg.inputs:
        raise ConfigError("inputs is required: image files or folders, e.g. inputs=[a.png,digits/]")
    inputs = OmegaConf.to_container(cfg.inputs) if OmegaConf.is_list(cfg.inputs) else [cfg.inputs]
    assert isinstance(inputs, list)
    files = image_files([str(item) for item in inputs])
    predictor = Predictor(cfg.ckpt_path, cfg.backend, cfg.onnx_path, cfg.preprocess, cfg.batch_size)
    results: list[dict[str, Any]] = [{"file": str(path)} for path in files]
    arrays, good = [], []
    for result, path in zip(results, files, strict=True):
        try:
            arrays.append(predictor.prepare(open_image(path, int(cfg.max_image_pixels), float(cfg.max_decoded_mb))))
            good.append(result)
        except BadImageError as err:
            result["error"] = str(err)
    for result, prediction in zip(good, predictor.predict_arrays(arrays), strict=True):
        result.update(prediction.to_dict())
    if isinstance(sys.stdout, io.TextIOWrapper):  # a class name the console cannot encode is escaped, not fatal
        sys.stdout.reconfigure(errors="backslashreplace")
    if cfg.output == "json":
        print(to_json(results, ensure_ascii=False))
    else:
        width = max(len(r["file"]) for r in results)
        for r in results:
            if "error" in r:
                print(f"{r['file']:<{width}}  error: {r['error']}")
            else:
                top = ", ".join(f"{t['label']}: {t['probability']:.3f}" for t in r["top3"])
                print(f"{r['file']:<{width}}  {r['label']}  ({top})")
    return results
