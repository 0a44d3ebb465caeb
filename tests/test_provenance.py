"""Every number traces back: each run records the code (commit, dirty flag, a patch that reproduces uncommitted
changes), the packages, the machine and the data; two runs can be diffed and many listed as one table."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import REPO
from helpers.cli import FAST, run_cli

from mnistlab.analysis.run_table import diff, format_diff, runs
from mnistlab.core import provenance
from mnistlab.core.readers import RecordError, read_yaml

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


def _repo(root: Path) -> Path:
    root.mkdir()
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "t@example.invalid")
    _git(root, "config", "user.name", "t")
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (root / ".gitignore").write_text("ignored/\n")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "first")
    return root


@needs_git
def test_the_patch_applied_to_the_commit_reproduces_the_code_that_ran(tmp_path):
    repo = _repo(tmp_path / "repo")
    (repo / "pkg" / "__init__.py").write_text("VALUE = 2  # changed, not committed\n")
    (repo / "pkg" / "new.py").write_text("NEW = True\n")  # untracked, not ignored
    (repo / "pkg" / "blob.bin").write_bytes(bytes(range(256)))
    (repo / "ignored").mkdir()
    (repo / "ignored" / "junk.txt").write_text("not code\n")

    assert provenance.code_checkout(repo / "pkg") == repo
    state = provenance.git_state(repo)
    assert state["commit"] == _git(repo, "rev-parse", "HEAD").strip() and state["dirty"] is True

    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(repo), str(clone))
    _git(clone, "checkout", "-q", state["commit"])
    (tmp_path / "run.patch").write_text(state["patch"])
    _git(clone, "apply", str(tmp_path / "run.patch"))
    for name in ("pkg/__init__.py", "pkg/new.py", "pkg/blob.bin"):
        assert (clone / name).read_bytes() == (repo / name).read_bytes()
    assert not (clone / "ignored").exists()

    clean = _repo(tmp_path / "clean")
    assert provenance.git_state(clean)["dirty"] is False and provenance.git_state(clean)["patch"] == ""


@needs_git
def test_a_package_that_git_does_not_track_has_no_commit(tmp_path):
    """An installed wheel: not a checkout, even inside a virtualenv that sits in some other repository."""
    repo = _repo(tmp_path / "repo")
    site = repo / "venv" / "site-packages" / "mnistlab"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    assert provenance.code_checkout(site) is None
    outside = tmp_path / "outside" / "mnistlab"
    outside.mkdir(parents=True)
    (outside / "__init__.py").write_text("")
    assert provenance.code_checkout(outside) is None


def test_records_are_read_as_plain_data(tmp_path):
    bomb = tmp_path / "config.yaml"
    bomb.write_text('a: &a ["x","x"]\nb: &b [*a,*a]\nc: [*b,*b]\n')
    with pytest.raises(RecordError, match="alias"):
        read_yaml(bomb)
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(RecordError, match="not valid YAML"):
        read_yaml(tagged)
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * 3_000_000 + "\n")
    with pytest.raises(RecordError, match="more than a record holds"):
        read_yaml(big)


@pytest.fixture(scope="module")
def two_runs(tiny_data, tmp_path_factory):
    """Two tiny runs of one sweep, differing in the seed."""
    cwd = tmp_path_factory.mktemp("provenance")
    run_cli(
        "mnistlab.train", "-m", "seed=1,2", "model=mlp", *FAST, "hydra.sweep.dir=sweep", data_dir=tiny_data, cwd=cwd
    )
    return cwd / "sweep" / "0", cwd / "sweep" / "1"


def test_each_run_records_its_provenance(two_runs):
    run, _ = two_runs
    record = json.loads((run / provenance.PROVENANCE_FILE).read_text())
    from mnistlab import __version__

    assert record["mnistlab"] == __version__ and record["command"][-1].startswith("hydra.sweep.dir=")
    machine = record["machine"]
    assert machine["torch"] and machine["python"] and machine["cpu_count"] >= 1 and machine["torch_threads"] >= 1
    assert len(record["data"]["fingerprint"]) == 32
    packages = (run / provenance.PACKAGES_FILE).read_text().splitlines()
    import torch

    assert f"torch=={torch.__version__.split('+')[0]}" in {p.split("+")[0] for p in packages}
    checkout = provenance.code_checkout()
    if checkout is None:  # the suite runs from an installed copy
        assert "git" not in record
        return
    assert record["git"]["commit"] == _git(REPO, "rev-parse", "HEAD").strip()
    dirty = bool(_git(REPO, "status", "--porcelain", "--untracked-files=normal").strip())
    assert record["git"]["dirty"] is dirty and (run / provenance.PATCH_FILE).is_file() is dirty


def test_the_data_fingerprint_is_the_same_for_the_same_data(two_runs):
    first, second = (json.loads((r / provenance.PROVENANCE_FILE).read_text())["data"] for r in two_runs)
    assert first["fingerprint"] == second["fingerprint"]


def test_diff_names_exactly_the_override_and_the_package_that_differ(two_runs, tmp_path):
    a, b = two_runs
    fake = tmp_path / "b"
    shutil.copytree(b, fake)  # the same run, from a machine with another numpy
    packages = (fake / provenance.PACKAGES_FILE).read_text().splitlines()
    packages = [f"numpy==0.0.{p}" if p.startswith("numpy==") else p for p in packages]
    (fake / provenance.PACKAGES_FILE).write_text("\n".join(packages) + "\n")
    result = diff(a, fake)
    assert [key for key, _, _ in result["config"]] == ["seed"]
    assert [name for name, _, _ in result["packages"]] == ["numpy"] and result["provenance"] == []
    text = format_diff(result)
    assert "seed: 1 → 2" in text and "numpy:" in text and "provenance: the same" in text
    # runs 0 and 1 are replicates of one configuration (seeds 1 and 2): the noise is measured, or said unmeasurable
    assert "2 replicate runs" in result["noise"]


def test_the_runs_table_lists_every_run_with_factors_metrics_and_provenance(two_runs):
    rows = runs(two_runs[0].parent.parent, frame=False)
    assert [r["seed"] for r in rows] == [1, 2] and {r["status"] for r in rows} == {"completed"}
    assert all(isinstance(r["test/acc"], float) and r["torch"] and r["data_fingerprint"] for r in rows)
    table = run_cli("mnistlab.report", "table", str(two_runs[0].parent), "--csv", "-")
    header, *lines = table.stdout.strip().splitlines()
    assert "seed" in header.split(",") and "test/acc" in header.split(",") and len(lines) == 2


def test_reports_show_the_environment_and_warn_when_jobs_ran_different_code(two_runs, tmp_path):
    from mnistlab.analysis.sweep.report import write_report

    run, _ = two_runs
    assert "## Environment" in (run / "report.md").read_text()
    sweep = tmp_path / "sweep"
    shutil.copytree(run.parent, sweep)
    assert "Warning" not in write_report(sweep).read_text()
    record = json.loads((sweep / "1" / provenance.PROVENANCE_FILE).read_text())
    record["git"] = {"commit": "0123456789abcdef", "dirty": False}
    record["data"]["fingerprint"] = "f" * 32
    (sweep / "1" / provenance.PROVENANCE_FILE).write_text(json.dumps(record))
    report = write_report(sweep).read_text()
    assert "ran with different code" in report and "commit 01234567: jobs 1" in report
    assert "ran with different data" in report and "installed packages" not in report


def test_a_rerun_trains_the_recorded_config_again_and_matches(tiny_data, tmp_path):
    """rerun=<run dir>: the same config in a new run dir; deterministic on one machine, the same metrics."""
    first = tmp_path / "first"
    args = ["model=mlp", "seed=3", "trainer.deterministic=true", *FAST]
    run_cli("mnistlab.train", *args, f"hydra.run.dir={first}", data_dir=tiny_data, cwd=tmp_path)
    again = run_cli("mnistlab.train", f"rerun={first}", data_dir=tiny_data, cwd=tmp_path)
    said = again.stdout + again.stderr
    # a checkout being edited between the two runs may differ in its uncommitted changes; nothing else may
    assert "same code, packages, machine and data" in said or "other uncommitted changes on the same commit" in said
    assert "other packages" not in said and "other data" not in said and "other torch" not in said
    (second,) = [p for p in tmp_path.glob("outputs/*/*") if (p / "metrics.json").is_file()]
    one, two = (json.loads((d / "metrics.json").read_text()) for d in (first, second))
    assert two["hparams"] == one["hparams"]
    for key in ("val/acc_best", "test/acc", "test/loss", "epochs"):
        assert two[key] == one[key], key
    # another package version and other data are named before training
    packages = (first / provenance.PACKAGES_FILE).read_text().replace("torch==", "torch==0.0.0+was", 1)
    (first / provenance.PACKAGES_FILE).write_text(packages)
    changed = run_cli("mnistlab.train", f"rerun={first}", "trainer.max_epochs=1", data_dir=tiny_data, cwd=tmp_path)
    assert (
        "rerun of" in changed.stderr + changed.stdout
        and "other packages: torch 0.0.0+was" in changed.stdout + changed.stderr
    )


def test_the_seed_noise_line_pools_the_replicates_as_an_independent_computation_does(tmp_path):
    """Two configurations × three seeds in one sweep: the diff's seed sd is the pooled within-configuration sd
    (numpy's, computed here), and the verdict follows the ±2√2·sd bound."""
    import numpy as np

    values = {"sgd": [0.951, 0.957, 0.949], "adam": [0.981, 0.975, 0.979]}
    (tmp_path / "sweep.json").write_text(json.dumps({"swept": {"optim": ["sgd", "adam"], "seed": [1, 2, 3]}}))
    job = 0
    for optim, accs in values.items():
        for seed, acc in enumerate(accs, start=1):
            run = tmp_path / str(job)
            (run / ".hydra").mkdir(parents=True)
            (run / ".hydra" / "config.yaml").write_text(f"optim:\n  name: {optim}\nseed: {seed}\n")
            record = {"status": "completed", "hparams": {"optim": optim, "seed": seed}, "test/acc": acc}
            (run / "metrics.json").write_text(json.dumps(record))
            job += 1
    pooled = np.sqrt((np.var(values["sgd"], ddof=1) * 2 + np.var(values["adam"], ddof=1) * 2) / 4)
    noise = diff(tmp_path / "0", tmp_path / "3")["noise"]
    assert f"seed sd {pooled:.4g} from 6 replicate runs" in noise
    assert "beyond seed noise" in noise  # 0.030 > 2√2 × 0.0032
    assert "within seed noise" in diff(tmp_path / "0", tmp_path / "1")["noise"]  # two seeds of one configuration
