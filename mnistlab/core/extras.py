"""Optional dependencies: a feature whose extra is not installed fails in one line that names the install."""

from __future__ import annotations

from importlib.util import find_spec

from mnistlab.core.errors import MnistlabError

# import name → the extra of pyproject.toml that brings it
EXTRA_OF = {
    "datasets": "hf",
    "pycocotools": "detection",
    "fastapi": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "fastapi_offline": "serve",
    "onnx": "export",
    "onnxscript": "export",
    "onnxruntime": "export",
    "hydra_plugins.hydra_submitit_launcher": "slurm",
    "psycopg": "postgres",
    "optuna": "optuna",
    "mlflow": "mlflow",
    "sqlalchemy": "mlflow",
    "alembic": "mlflow",
    "wandb": "wandb",
    "trackio": "trackio",
}


class MissingExtraError(MnistlabError):
    """A feature was asked for whose optional dependencies are not installed."""


def installed(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing or half-installed
        return False


def require(feature: str, *modules: str) -> None:
    """Raise MissingExtraError naming ``pip install 'mnistlab[<extra>]'`` when any of ``modules`` is absent."""
    missing = [m for m in modules if not installed(m)]
    if missing:
        extras = sorted({EXTRA_OF.get(m, "all") for m in missing})
        names = ", ".join(m.rsplit(".", 1)[-1] for m in missing)
        install = " ".join(f"'mnistlab[{e}]'" for e in extras)
        verb = "is" if len(missing) == 1 else "are"
        raise MissingExtraError(f"{feature} needs {names}, which {verb} not installed: pip install {install}")
