"""mnistlab from Python and notebooks: the commands as functions over the same configs.

    from mnistlab import train, sweep, evaluate, predict
    run = train(["model=cnn", "optim=sgd", "trainer.max_epochs=1"])
    run["test/acc"], run["run_dir"]
    result = sweep(["optim=sgd,adam", "seed=1,2,3"])   # the overrides of ``mnistlab-train -m``
    evaluate([f"ckpt_path={run['run_dir']}/checkpoints/best.ckpt"])

Each call composes the config with Hydra exactly as the command line does (same YAML, same validation, same
run dir under ``outputs/`` or ``multirun/`` of the current directory, same metrics.json and reports) and returns
what the run recorded. A bad override raises ``mnistlab.core.errors.MnistlabError`` (a ``ConfigError`` for
a bad value) with the same one-line message the command prints.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import mnistlab.core.factors  # noqa: F401  (registers the run-name resolvers of the logger configs)
from mnistlab.core.config import CONFIG_DIR, prepare_train_overrides, refuse_busy_dirs


def _strings(overrides: Sequence[str]) -> list[str]:
    """The overrides as a list of text, as a command line has them: a string or another item is a caller's slip,
    named here rather than as an AttributeError deep in the checks."""
    if isinstance(overrides, str):
        raise TypeError(f"overrides must be a list of strings such as ['optim=sgd'], not the string {overrides!r}")
    overrides = list(overrides)
    bad = next((i for i, o in enumerate(overrides) if not isinstance(o, str)), None)
    if bad is not None:
        item = overrides[bad]
        raise TypeError(
            f"overrides must be strings such as 'optim=sgd'; item {bad} is {item!r} ({type(item).__name__})"
        )
    return overrides


def _hydra(config_name: str, task: Callable[[Any], Any], overrides: Sequence[str], multirun: bool = False) -> Any:
    """Hydra's own run/multirun (run dir, .hydra/ files, job logging, callbacks) on conf/, with our task."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from mnistlab.core.composition import explain
    from mnistlab.core.errors import ConfigError
    from mnistlab.core.hydra_compat import VERSION_BASE, hydras_own_instantiations

    overrides = _strings(overrides)
    with (
        initialize_config_dir(config_dir=CONFIG_DIR, job_name=config_name, **VERSION_BASE),
        hydras_own_instantiations(),
    ):
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        try:
            if multirun:  # what --multirun adds on the command line: jobs then know they are part of a sweep
                return hydra.multirun(
                    config_name=config_name, task_function=task, overrides=[*overrides, "hydra.mode=MULTIRUN"]
                )
            return hydra.run(config_name=config_name, task_function=task, overrides=list(overrides))
        except Exception as err:  # Hydra's composition errors: the command's one line (a misspelt key…)
            message = explain(err, config_name, list(overrides))
            if message is None:
                raise
            raise ConfigError(message) from None


def _record(run_dir: str | Path) -> dict[str, Any]:
    from mnistlab.core.record import STATUS, Status, read_record

    record = dict(read_record(Path(run_dir)) or {STATUS: Status.MISSING})
    record["run_dir"] = str(run_dir)
    return record


def _train_task(cfg: Any) -> Any:
    from mnistlab.training.pipeline import run_job

    return run_job(cfg)


def _train_argv(overrides: Sequence[str]) -> list[str]:
    """The checked command line of ``mnistlab-train *overrides``; under torchrun, in rank 0's run dir."""
    from mnistlab.training.multinode import follow_rank_zero

    return follow_rank_zero(prepare_train_overrides(["mnistlab-train", *_strings(overrides)]))


def train(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """One run, as ``mnistlab-train *overrides``; returns its metrics.json record plus ``run_dir``."""
    argv = _train_argv(overrides)
    job = _hydra("train", _train_task, argv[1:])
    return _record(job.hydra_cfg.hydra.runtime.output_dir)


def sweep(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """A sweep, as ``mnistlab-train -m *overrides`` (``optim=sgd,adam`` sweeps a key): every job runs even
    when one fails (its record says why). Returns ``sweep_dir``, the ``report`` path and ``runs`` (each job's
    record, in job order)."""
    from datetime import datetime

    from mnistlab.analysis.runs import job_dirs
    from mnistlab.core.errors import MnistlabError

    argv = _train_argv(overrides)
    given = [o for o in argv[1:] if o.startswith("hydra.sweep.dir=")]
    if given:
        sweep_dir = Path(given[-1].partition("=")[2])
    else:  # chosen here, as conf/hydra/default.yaml would, so that the runs can be read back whatever happens
        sweep_dir = Path("multirun", datetime.now().strftime("%Y-%m-%d"), datetime.now().strftime("%H-%M-%S-%f"))
        argv.append(f"hydra.sweep.dir={sweep_dir}")
    try:
        _hydra("train", _train_task, argv[1:], multirun=True)
    except SystemExit as stop:  # the command's exit status: 1 = some jobs failed (their records say why)
        if stop.code not in (None, 0, 1):
            raise MnistlabError(f"the sweep in {sweep_dir} could not run (see the error above)") from None
    sweep_dir = sweep_dir.resolve()
    jobs = sorted(job_dirs(sweep_dir), key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0))
    report = sweep_dir / "report.md"
    return {
        "sweep_dir": str(sweep_dir),
        "report": str(report) if report.is_file() else None,
        "runs": [_record(job) for job in jobs],
    }


def evaluate(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """``mnistlab-evaluate *overrides`` (``ckpt_path=…`` is required): the test metrics, the report written
    into a new run dir (``run_dir``)."""
    from mnistlab.training.retest import evaluate_checkpoint

    refuse_busy_dirs(_strings(overrides))
    job = _hydra("evaluate", evaluate_checkpoint, overrides)
    return {**job.return_value, "run_dir": job.hydra_cfg.hydra.runtime.output_dir}


def predict(overrides: Sequence[str] = ()) -> list[dict[str, Any]]:
    """``mnistlab-predict *overrides`` (``ckpt_path=… inputs=[a.png,digits/]``): one result per image, with an
    ``error`` key for an image that could not be read."""
    from mnistlab.serving.predict import predict_files

    return _hydra("predict", predict_files, overrides).return_value


def predictor(ckpt_path: str, backend: str = "torch", onnx_path: str | None = None, preprocess: str = "auto") -> Any:
    """A loaded model for images already in memory: ``predictor(ckpt).predict([PIL images])``."""
    from mnistlab.serving.inference import Predictor

    return Predictor(ckpt_path, backend, onnx_path, preprocess)


class _CommandModule(ModuleType):
    """A command module that is also its Python function: ``from mnistlab import train; train([...])`` calls
    ``mnistlab.api.train`` while ``python -m mnistlab.train`` stays the command."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return FUNCTIONS[self.__name__.rpartition(".")[2]](*args, **kwargs)


FUNCTIONS: dict[str, Callable[..., Any]] = {"train": train, "evaluate": evaluate, "predict": predict}


def callable_command(module_name: str) -> None:
    if module_name != "__main__":
        sys.modules[module_name].__class__ = _CommandModule
