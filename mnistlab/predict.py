"""``python -m mnistlab.predict ckpt_path=… inputs=[a.png,digits/]``: the label and top-3 probabilities of each
image, preprocessed the way the training data was (``mnistlab.preprocess``). ``output=json`` for machines.

An unreadable image is reported on its own line and the others are still predicted; the exit status is then 1.
"""

from __future__ import annotations

import json
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from mnistlab.config import CONFIG_DIR
from mnistlab.errors import ConfigError, MnistlabError, exit_with

OUTPUTS = ("text", "json")


def predict(cfg: DictConfig) -> list[dict[str, Any]]:
    from mnistlab.inference import Predictor
    from mnistlab.preprocess import BadImageError, image_files, open_image

    if cfg.output not in OUTPUTS:
        raise ConfigError(f"output={cfg.output!r} is not one of {', '.join(OUTPUTS)}")
    inputs = OmegaConf.to_container(cfg.inputs) if OmegaConf.is_list(cfg.inputs) else [cfg.inputs]
    files = image_files([str(item) for item in inputs])
    predictor = Predictor(cfg.ckpt_path, cfg.backend, cfg.onnx_path, cfg.preprocess, cfg.batch_size)
    results: list[dict[str, Any]] = [{"file": str(path)} for path in files]
    arrays, good = [], []
    for result, path in zip(results, files, strict=True):
        try:
            arrays.append(predictor.prepare(open_image(path, int(cfg.max_image_pixels))))
            good.append(result)
        except BadImageError as err:
            result["error"] = str(err)
    for result, prediction in zip(good, predictor.predict_arrays(arrays), strict=True):
        result.update(prediction.to_dict())
    if cfg.output == "json":
        print(json.dumps(results, indent=2))
    else:
        width = max(len(r["file"]) for r in results)
        for r in results:
            if "error" in r:
                print(f"{r['file']:<{width}}  error: {r['error']}")
            else:
                top = ", ".join(f"{t['label']}: {t['probability']:.3f}" for t in r["top3"])
                print(f"{r['file']:<{width}}  {r['label']}  ({top})")
    return results


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    try:
        results = predict(cfg)
    except MnistlabError as err:
        exit_with(err)
    if any("error" in r for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
