"""mnistlab as an installed library: the wheel in a fresh venv, commands on the PATH with tab completion, the
Python API and the quickstart notebook, one-line errors for missing extras, and the MLflow tracker."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from helpers import REPO
from helpers.cli import FAST, run_cli

BIN = Path(sys.executable).parent
COMMANDS = ("train", "evaluate", "predict", "serve", "export", "report", "scratch")


def test_python_api_runs_a_sweep_and_raises_config_errors(tiny_data, tmp_path, monkeypatch):
    from mnistlab import sweep, train
    from mnistlab.core.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tiny_data))
    with pytest.raises(ConfigError, match=r"optim.lr=-1 must be > 0"):
        train(["optim.lr=-1"])
    with pytest.raises(ConfigError, match=r"did you mean trainer\.limit_train_batches\?$"):  # Hydra's own error
        train(["trainer.limit_train_batchs=5"])
    result = sweep(["optim=sgd,adam", "optim.lr=0.01,-1", "trainer.max_epochs=1", *FAST[1:]])
    runs = result["runs"]  # a failed job does not end the sweep, nor the call: its record says why
    assert [r["status"] for r in runs] == ["completed", "failed", "completed", "failed"]
    assert "optim.lr=-1 must be > 0" in runs[1]["reason"]
    runs = [runs[0], runs[2]]
    assert [r["hparams"]["optim"] for r in runs] == ["sgd", "adam"]
    assert all(r["test/acc"] > 0.5 for r in runs)
    sweep_dir = Path(result["sweep_dir"])
    assert sweep_dir.parent.parent == tmp_path / "multirun" and Path(result["report"]).is_file()
    assert json.loads((sweep_dir / "sweep.json").read_text())["swept"] == {
        "optim": ["sgd", "adam"],
        "optim.lr": [0.01, -1],
    }
    assert [json.loads((sweep_dir / str(n) / "metrics.json").read_text())["test/acc"] for n in (0, 2)] == [
        r["test/acc"] for r in runs
    ]


def test_quickstart_notebook_runs(tiny_data, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tiny_data))
    notebook = nbformat.read(REPO / "examples" / "quickstart.ipynb", as_version=4)
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source += f"\noverrides += {FAST[1:]!r}"  # tiny data: a smaller validation split
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    assert "test accuracy" in text and "label:" in text and "top 3:" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the confusion matrix and the drawing
    assert list((tmp_path / "outputs").glob("*/*/confusion_matrix.png"))


def test_tab_completion_lists_the_optimizers():
    script = BIN / "mnistlab-train"
    assert script.is_file(), "mnistlab-train is not installed: pip install -e ."
    line = f"{script} optim="
    bash = (
        f'eval "$({script} -sc install=bash)"; COMP_LINE="{line}"; COMP_POINT={len(line)}; COMP_CWORD=1; '
        'hydra_bash_completion; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(["bash", "-c", bash], capture_output=True, text=True, timeout=60)
    completions = set(result.stdout.split())
    assert {"optim=sgd", "optim=adam", "optim=adamw", "optim=rmsprop"} <= completions, result.stderr[-2000:]


@pytest.mark.parametrize(
    ("args", "feature", "extra"),
    [
        (["-m", "hparams_search=optuna"], "hparams_search=optuna", "optuna"),
        (["logger=mlflow"], "logger=mlflow", "mlflow"),
        (["logger=wandb"], "logger=wandb", "wandb"),
        (["logger=trackio"], "logger=trackio", "trackio"),
        (["logger=[tensorboard,trackio]"], "logger=trackio", "trackio"),  # Hydra's list of a group's options
    ],
)
def test_a_missing_extra_is_one_line_naming_the_install(args, feature, extra, tmp_path):
    hidden = ("optuna", "mlflow", "wandb", "trackio")
    hide = "import sys; " + "; ".join(f"sys.modules[{name!r}] = None" for name in hidden)
    code = f"{hide}; sys.argv = ['mnistlab-train', *{args!r}]; from mnistlab.train import cli; cli()"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    needs = rf"error: {feature} needs (\w+, )*{extra}(, \w+)*, which (is|are) not installed"
    pattern = rf"{needs}: pip install 'mnistlab\[{extra}\]'"
    assert re.fullmatch(pattern, result.stderr.strip()), result.stderr


def test_serving_without_its_extra_is_one_line(monkeypatch):
    from omegaconf import OmegaConf

    from mnistlab.core.config import CONFIG_DIR
    from mnistlab.core.extras import MissingExtraError
    from mnistlab.serving.server import build_app

    monkeypatch.setitem(sys.modules, "fastapi", None)
    cfg = OmegaConf.load(Path(CONFIG_DIR) / "serve.yaml")
    cfg.ckpt_path = "model.ckpt"
    message = r"^mnistlab-serve needs fastapi(, \w+)*, which (is|are) not installed: pip install 'mnistlab\[serve\]'$"
    with pytest.raises(MissingExtraError, match=message):
        build_app(cfg)


def test_mlflow_gets_the_hparams_row_and_metrics(tiny_data, tmp_path):
    pytest.importorskip("mlflow", reason="the [mlflow] extra is not installed")
    from mlflow.tracking import MlflowClient

    run_cli("mnistlab.train", "logger=mlflow", *FAST, data_dir=tiny_data, cwd=tmp_path)
    (metrics_file,) = tmp_path.glob("outputs/*/*/metrics.json")
    record = json.loads(metrics_file.read_text())
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("mnistlab").experiment_id])
    assert run.data.params == {k: str(v) for k, v in record["hparams"].items()}
    for key in ("val/acc_best", "test/acc", "test/f1", "test/loss"):
        assert run.data.metrics[key] == pytest.approx(record[key], rel=1e-6)
    assert run.data.tags["run_dir"] == str(metrics_file.parent)
    assert run.info.run_name == metrics_file.parent.name  # a single run: its run dir's name


def test_mlflow_names_each_sweep_run_by_its_choices(tiny_data, tmp_path):
    pytest.importorskip("mlflow", reason="the [mlflow] extra is not installed")
    from mlflow.tracking import MlflowClient

    sweep = ["-m", "logger=mlflow", "optim=sgd,adam", "seed=1,2", *FAST, "trainer.max_epochs=1"]
    run_cli("mnistlab.train", *sweep, f"hydra.sweep.dir={tmp_path / 'sweep'}", data_dir=tiny_data, cwd=tmp_path)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("mnistlab").experiment_id])
    names = {run.data.tags["run_dir"]: run.info.run_name for run in runs}
    assert names == {
        str(tmp_path / "sweep" / "0"): "optim=sgd,seed=1",
        str(tmp_path / "sweep" / "1"): "optim=sgd,seed=2",
        str(tmp_path / "sweep" / "2"): "optim=adam,seed=1",
        str(tmp_path / "sweep" / "3"): "optim=adam,seed=2",
    }


@pytest.mark.slow
def test_the_wheel_works_from_any_directory(tiny_data, tmp_path):
    """Build the wheel, install it into a fresh venv (the heavy dependencies come from this environment, which
    is only appended to the new venv's path), and use every command from an unrelated directory."""
    dist, source = tmp_path / "dist", tmp_path / "source"  # built from a copy: setuptools writes build/ beside it
    top = {".venv", ".git", "outputs", "multirun", "data", "build", "mnistlab.egg-info"}  # the checkout's own
    top |= {".venv-floors", ".venv-hydra14", ".venv-uv"}  # the venvs of make test-floors, test-hydra14, lock

    def junk(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n == "__pycache__" or (Path(folder) == REPO and n in top)}

    shutil.copytree(REPO, source, symlinks=True, ignore=junk)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, source],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("mnistlab-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = subprocess.run(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "zz_reuse_dependencies.pth").write_text(ours + "\n")  # after the venv's own site-packages
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-index", wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(tiny_data), "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)

    def run(*cmd: str | Path) -> subprocess.CompletedProcess:
        result = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{cmd}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        return result

    located = run(python, "-c", "import mnistlab, mnistlab.core.config as c; print(mnistlab.__file__, c.CONFIG_DIR)")
    assert located.stdout.startswith(site) and str(REPO) not in located.stdout
    for command in COMMANDS:
        helped = run(env_dir / "bin" / f"mnistlab-{command}", "--help")
        assert "mnistlab" in helped.stdout + helped.stderr
    run(env_dir / "bin" / "mnistlab-train", "model=cnn", *FAST)
    (best,) = work.glob("outputs/*/*/checkpoints/best.ckpt")
    # an installed wheel outside any checkout: the version and packages are recorded, no commit, no error
    recorded = json.loads((best.parents[1] / "provenance.json").read_text())
    assert recorded["mnistlab"] and "git" not in recorded and (best.parents[1] / "packages.txt").is_file()
    from PIL import Image, ImageDraw

    digit = work / "digit.png"
    image = Image.new("L", (28, 28))
    ImageDraw.Draw(image).line([(8, 6), (20, 6), (12, 22)], fill=255, width=3)
    image.save(digit)
    predicted = run(python, "-m", "mnistlab.predict", f"ckpt_path={best}", f"inputs=[{digit}]")
    assert "digit.png" in predicted.stdout
    assert not list(Path(site).glob("mnistlab/**/outputs")) and not (Path(site) / "data").exists()
