"""Testing a checkpoint again on the data it was trained on, and the test report both training and
re-testing write (confusion matrix, per-class scores, baselines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mnistlab.core.config import build, to_plain
from mnistlab.core.errors import ConfigError, DataError
from mnistlab.core.fields import validate
from mnistlab.core.files import write_json_atomic
from mnistlab.core.record import TEST_SCORES


def write_test_report(out_dir: Path, module: Any, datamodule: Any, record: dict[str, Any], writers: Any = ()) -> dict:
    """The run report of the last ``trainer.test`` (rank 0); returns its scalars for metrics.json."""
    from mnistlab.analysis.run_report import write_evaluation

    # the test labels come from the test itself (its confusion matrix): the images it saw, not the whole split
    train_labels = datamodule.class_labels("train")
    return write_evaluation(out_dir, module.test_results, module.report_classes, train_labels, record, writers)


def merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update``'s values, nested dicts merged key by key. Not ``OmegaConf.merge``: ``base`` is
    read from a checkpoint, and OmegaConf would take a ``${…}`` in it for an interpolation (data is never code)."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def check_same_classes(ckpt_path: str, trained: list[str] | None, datamodule: Any) -> None:
    """The data a checkpoint is tested on must have the classes it was trained on, in the same order: a class
    folder added, removed or renamed since would score the model against other labels, a confidently wrong
    accuracy. Checked when the data is set up (its classes come from the files)."""
    if not trained:
        return
    datamodule.setup("test")
    now = [str(c) for c in datamodule.classes]
    if now != [str(c) for c in trained]:
        added, gone = sorted(set(now) - set(trained)), sorted(set(trained) - set(now))
        what = (
            "; ".join(
                part
                for part in (f"new: {', '.join(added)}" if added else "", f"gone: {', '.join(gone)}" if gone else "")
                if part
            )
            or "the same names in another order"
        )
        raise DataError(
            f"ckpt_path={ckpt_path} was trained on {len(trained)} classes, the data now has {len(now)} ({what}); "
            "test it on the data it was trained on"
        )


def evaluate_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """Test ``cfg.ckpt_path`` on the test split of its own data config (``data.*`` on the command line
    overrides it); write ``evaluation.json`` and the report into the run dir; print the main metrics."""
    validate(cfg, "evaluate")  # a bad value or checkpoint is reported before Lightning and the data are imported
    from mnistlab.tasks.checkpoint import load_task, stored_data

    module, checkpoint = load_task(cfg.ckpt_path)
    from mnistlab.data import create_datamodule

    saved = stored_data(checkpoint)
    if not saved:
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} holds no data config; it was not written by mnistlab.train")
    shape = module.hparams.get("input_shape") or [None, None]
    for key, value in (("channels", shape[0]), ("image_size", shape[-1])):  # inferred when trained: as trained
        if key in saved and saved[key] is None:
            saved = {**saved, key: value}
    datamodule = create_datamodule(merged({**saved, "data_dir": cfg.paths.data_dir}, to_plain(cfg.data) or {}))
    check_same_classes(cfg.ckpt_path, module.hparams.get("classes"), datamodule)
    trainer = build(cfg.trainer, logger=False, callbacks=[], enable_model_summary=False)
    (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    out_dir = Path(cfg.paths.output_dir)
    result = {"ckpt_path": str(Path(cfg.ckpt_path).resolve()), **{k: float(v) for k, v in metrics.items()}}
    datamodule.setup("fit")  # the baselines need the train split's labels
    result.update(write_test_report(out_dir, module, datamodule, result))
    write_json_atomic(out_dir / "evaluation.json", result)
    for key in TEST_SCORES:
        print(f"{key}: {result[key]:.4f}")
    return result
