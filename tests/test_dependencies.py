"""What pyproject.toml promises about versions is what was tested: each lower bound is the pin of
``.ci/floors.txt`` (which ``make test-floors`` installs and tests), the lock file pins versions pyproject.toml
allows, and the Hydra under test (1.3, or 1.4 with ``make test-hydra14``) runs mnistlab without its migration
warnings. Also the two extras no other quick test reaches: the detector's mAP (pycocotools) and the submitit
launcher."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import warnings
from importlib import metadata
from pathlib import Path

import pytest
from helpers import REPO, needs
from helpers.cli import FAST, run_cli
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

FLOORS = REPO / ".ci" / "floors.txt"
LOCK = REPO / "requirements.lock"
# pinned by a floor's extra rather than named in pyproject.toml: psycopg[binary]==X needs psycopg-binary==X
PINNED_BY_AN_EXTRA = {"psycopg-binary": "psycopg"}
# upper bounds only where the next release is known to break something (pyproject.toml says what)
CAPPED = {"hydra-core", "optuna", "ruff", "mypy", "mkdocs"}


def _direct_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for requirements in project["optional-dependencies"].values():
        lines += [r for r in requirements if not r.startswith("mnistlab[")]  # extras that name other extras
    return [Requirement(line) for line in lines]


def _pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file, by canonical name (comments and options left out)."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        assert sep and re.fullmatch(r"[A-Za-z0-9_.\-]+", name.strip()), f"{path.name}: {line!r} is not name==version"
        pins[canonicalize_name(name.strip())] = version.split(";")[0].strip()
    return pins


def _lower_bound(requirement: Requirement) -> str | None:
    bounds = [s.version for s in requirement.specifier if s.operator in (">=", "==")]
    assert len(bounds) <= 1, f"{requirement}: more than one lower bound"
    return bounds[0] if bounds else None


# the main suite covers these paths on the newest versions (test_joblib_sweep, test_detection, test_slurm); here they
# run only where the versions differ: make test-floors (MNISTLAB_FLOORS=1) and make test-hydra14
other_versions_only = pytest.mark.skipif(
    os.environ.get("MNISTLAB_FLOORS") != "1" and os.environ.get("MNISTLAB_EXPECT_HYDRA", "1.3") == "1.3",
    reason="run by make test-floors and make test-hydra14 (the main suite covers it on the newest versions)",
)


def test_every_lower_bound_is_the_floor_that_is_tested():
    floors = _pins(FLOORS)
    bounds: dict[str, set[str | None]] = {}
    for requirement in _direct_requirements():
        bounds.setdefault(canonicalize_name(requirement.name), set()).add(_lower_bound(requirement))
    for name, found in bounds.items():
        assert None not in found, f"{name} has no lower bound in pyproject.toml"
        assert len(found) == 1, f"{name} has different lower bounds in different extras: {sorted(found)}"
        bound, floor = found.pop(), floors.get(name)
        assert floor is not None and Version(floor) == Version(bound), f"{name}: >={bound} but .ci/floors.txt: {floor}"
    assert set(floors) - set(bounds) == set(PINNED_BY_AN_EXTRA)
    for name, by in PINNED_BY_AN_EXTRA.items():
        assert floors[name] == floors[by]


def test_upper_bounds_only_where_a_next_release_is_known_to_break():
    capped = {canonicalize_name(r.name) for r in _direct_requirements() if any(s.operator == "<" for s in r.specifier)}
    assert capped == CAPPED


@pytest.mark.skipif(os.environ.get("MNISTLAB_FLOORS") != "1", reason="make test-floors' venv only")
def test_the_installed_versions_are_the_floors():
    """Under ``make test-floors``: every direct dependency is installed at its floor, not a newer release."""
    installed = {name: metadata.version(name) for name in _pins(FLOORS)}
    wrong = {name: version for name, version in installed.items() if Version(version) != Version(_pins(FLOORS)[name])}
    assert wrong == {}


def test_the_lock_pins_a_version_that_pyproject_allows_for_every_dependency():
    locked = _pins(LOCK)
    for requirement in _direct_requirements():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in requirements.lock"
        assert requirement.specifier.contains(Version(locked[name]), prereleases=True), (name, locked[name])
    for name, by in PINNED_BY_AN_EXTRA.items():
        assert locked[name] == locked[by]
    assert locked["torch"] == "2.14.1" and locked["torchvision"] == "0.29.1"
    text = LOCK.read_text()
    assert "file:" not in text and "/opt/" not in text and "--index-url" not in text  # installable anywhere


def _expected_hydra() -> str:
    return os.environ.get("MNISTLAB_EXPECT_HYDRA", "1.3")


def test_the_hydra_under_test_is_the_one_asked_for():
    """``make test-hydra14`` sets MNISTLAB_EXPECT_HYDRA=1.4: the commands it starts run that Hydra too."""
    import hydra

    code = "import hydra, omegaconf; print(hydra.__version__, omegaconf.__version__)"
    started = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    hydra_version, omegaconf_version = started.stdout.split()
    assert hydra.__version__ == hydra_version and hydra_version.startswith(_expected_hydra() + ".")
    assert omegaconf_version.startswith("2.4." if _expected_hydra() == "1.4" else "2.3.")


@other_versions_only
def test_a_parallel_sweep_gives_no_hydra_warning_and_one_table_row_per_job(tiny_data, tmp_path):
    """Hydra 1.4 deprecates version_base and instantiating without an execution whitelist; mnistlab passes each
    Hydra what it needs, so that neither warns (a warning on every command would hide the ones that matter).
    The sweep runs on the joblib launcher, and ``mnistlab.runs`` (pandas) tabulates what its jobs recorded."""
    from mnistlab.analysis.run_table import runs

    sweep = tmp_path / "sweep"
    overrides = [
        "trainer.max_epochs=1",
        "model=linear",
        "seed=1,2",
        "hydra/launcher=joblib",
        f"hydra.sweep.dir={sweep}",
    ]
    result = run_cli(
        "mnistlab.train", "-m", *FAST, *overrides, data_dir=tiny_data, env={"PYTHONWARNINGS": "always::UserWarning"}
    )
    assert not re.search(r"version_base|execution.whitelist|Hydra\d+MigrationWarning", result.stderr), result.stderr
    recorded = {job: json.loads((sweep / job / "metrics.json").read_text()) for job in ("0", "1")}
    assert {r["status"] for r in recorded.values()} == {"completed"}
    table = runs(sweep).sort_values("job")
    assert list(table["job"]) == ["0", "1"] and list(table["seed"]) == [1, 2]
    assert list(table["test/acc"]) == [recorded["0"]["test/acc"], recorded["1"]["test/acc"]]


def test_build_instantiates_a_callback_without_a_hydra_warning():
    from omegaconf import OmegaConf

    from mnistlab.core.config import build

    section = OmegaConf.create({"_target_": "lightning.pytorch.callbacks.EarlyStopping", "monitor": "val/loss"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback = build(section, patience=7)
    assert type(callback).__name__ == "EarlyStopping" and callback.monitor == "val/loss" and callback.patience == 7
    assert [str(w.message) for w in caught if "hydra" in w.filename.replace("\\", "/")] == []


@needs("pycocotools")
@other_versions_only
def test_the_detectors_map_scores_a_known_ranking():
    """torchmetrics' MeanAveragePrecision as the detector builds it (pycocotools' COCO evaluation): two digits
    of class 0 in two images, found by the best and the worst of three boxes with the middle one wrong. Ranked
    by score: hit (precision 1, recall 1/2), miss (1/2, 1/2), hit (2/3, 1). COCO interpolates precision at the
    101 recalls 0, 0.01, …, 1: 1 up to recall 0.5 (51 points), 2/3 above (50 points), at every IoU threshold
    since the boxes are exact."""
    import torch
    from torchmetrics.detection import MeanAveragePrecision

    box = torch.tensor([[2.0, 2.0, 20.0, 20.0]])
    far = torch.tensor([[40.0, 40.0, 60.0, 60.0]])
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
    targets = [{"boxes": box, "labels": torch.tensor([0])}, {"boxes": box, "labels": torch.tensor([0])}]
    predictions = [
        {"boxes": torch.cat([box, far]), "scores": torch.tensor([0.9, 0.6]), "labels": torch.tensor([0, 0])},
        {"boxes": box, "scores": torch.tensor([0.3]), "labels": torch.tensor([0])},
    ]
    metric.update(predictions, targets)
    assert metric.compute()["map"].item() == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-4)


@needs("hydra_plugins.hydra_submitit_launcher")
@other_versions_only
def test_a_sweep_runs_its_jobs_through_submitit(tiny_data, tmp_path):
    """hydra/launcher=submitit_local: the [slurm] extra's launcher (the slurm preset's, on this machine's own
    processes) runs the job of a sweep, which records its metrics as with the basic launcher."""
    result = run_cli(
        "mnistlab.train",
        "-m",
        *FAST,
        "trainer.max_epochs=1",
        "model=linear",
        "seed=1",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        data_dir=tiny_data,
    )
    record = json.loads((tmp_path / "sweep" / "0" / "metrics.json").read_text())
    assert record["status"] == "completed", result.stderr[-3000:]
    assert any((tmp_path / "sweep" / ".submitit").iterdir()), "the jobs did not go through submitit"
