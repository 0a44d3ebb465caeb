"""``python -m mnistlab.evaluate ckpt_path=…``: re-test a checkpoint; prints test/acc, test/f1, test/loss and
writes the evaluation report (confusion matrix, per-class scores, baselines) into its own run dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from mnistlab.config import CONFIG_DIR
from mnistlab.errors import MnistlabError, exit_with


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    from hydra.utils import instantiate

    from mnistlab.evaluation import write_evaluation
    from mnistlab.module import load_checkpoint
    from mnistlab.results import write_json_atomic

    model, checkpoint = load_checkpoint(str(cfg.ckpt_path))
    saved = checkpoint.get("mnistlab", {}).get("config", {})
    if "data" not in saved:
        raise MnistlabError(f"ckpt_path={cfg.ckpt_path} holds no data config; it was not written by mnistlab.train")
    data_cfg = OmegaConf.merge(saved["data"], {"data_dir": cfg.paths.data_dir}, cfg.data)
    datamodule = instantiate(data_cfg)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_model_summary=False)
    (metrics,) = trainer.test(model, datamodule=datamodule, verbose=False)
    out_dir = Path(cfg.paths.output_dir)
    result = {"ckpt_path": str(Path(cfg.ckpt_path).resolve()), **{k: float(v) for k, v in metrics.items()}}
    datamodule.setup("fit")  # the baselines need the train split's labels
    labels = datamodule.class_labels("train"), datamodule.class_labels("test")
    result.update(write_evaluation(out_dir, model.test_results, model.report_classes, *labels, result))
    write_json_atomic(out_dir / "evaluation.json", result)
    for key in ("test/acc", "test/f1", "test/loss"):
        print(f"{key}: {result[key]:.4f}")
    return result


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except MnistlabError as err:
        exit_with(err)


if __name__ == "__main__":
    main()
