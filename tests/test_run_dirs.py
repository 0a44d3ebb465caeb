"""A run dir is data: what a crafted one holds is never replayed as a path, a logger or callback setting, or a
Hydra key, so resuming it cannot write anywhere else or drop its own checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnistlab.core.config import expand_resume

CRAFTED = [
    "callbacks.model_checkpoint.dirpath=/tmp/another-run/checkpoints",
    "logger.tensorboard.save_dir=/tmp/anywhere",
    "callbacks.model_checkpoint.filename=../../x",
    "logger.tensorboard.name=../../x",
    "callbacks.model_checkpoint=null",
    "callbacks=null",
    "logger=null",
    "+logger.evil.save_dir=/tmp/x",
    "data.data_dir=/tmp/elsewhere",
    "trainer.default_root_dir=/tmp/elsewhere",
    "trainer.logger=false",
    "trainer.enable_checkpointing=false",
    "trainer.callbacks=[]",
    "++trainer.plugins=[]",
    "logger/tensorboard=csv",
    "~callbacks",
    "~callbacks.model_checkpoint",
    "~logger",
    "hydra.run.dir=/tmp/elsewhere",
    "++hydra.output_subdir=../../x",
]


def _run_dir(tmp_path: Path, overrides: list[str]) -> Path:
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- '{o}'\n" for o in overrides))
    return run_dir


@pytest.mark.parametrize("override", CRAFTED)
def test_a_crafted_run_dir_cannot_choose_paths_loggers_or_callbacks(override, tmp_path, capsys):
    run_dir = _run_dir(tmp_path, ["model=cnn", override, "optim.lr=0.01"])
    argv = expand_resume(["train.py", f"resume={run_dir}"])
    replayed = [a for a in argv[1:] if not a.startswith(("resume=", "ckpt_path=", "hydra.run.dir="))]
    assert "model=cnn" in replayed and "optim.lr=0.01" in replayed and override not in replayed
    assert not any(a.startswith(("callbacks", "logger", "data.data_dir", "trainer.default_root")) for a in replayed)
    assert "note: resume does not replay" in capsys.readouterr().err


def test_logger_and_callback_presets_are_replayed_by_name(tmp_path):
    run_dir = _run_dir(tmp_path, ["logger=many", "callbacks=diagnostics", "callbacks=nonexistent"])
    argv = expand_resume(["train.py", f"resume={run_dir}"])
    assert "logger=many" in argv and "callbacks=diagnostics" in argv and "callbacks=nonexistent" not in argv


def test_reports_never_write_through_a_planted_link_and_escape_record_text(tmp_path):
    """A received sweep dir with report.md linked to a file of the user's and a failure reason that tries to add
    lines of its own: the link is refused, the target untouched, and the reason stays inside its table cell."""
    import json

    from mnistlab.analysis.sweep.report import write_report

    victim = tmp_path / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA mine\n")
    sweep = tmp_path / "sweep"
    for job, status in (("0", "completed"), ("1", "failed")):
        (sweep / job / ".hydra").mkdir(parents=True)
        (sweep / job / ".hydra" / "overrides.yaml").write_text("- optim=sgd\n")
        record = {"status": status, "hparams": {"optim": "sgd"}, "val/acc_best": 0.9, "test/acc": 0.9}
        if status == "failed":
            record = {"status": "failed", "reason": "boom |\nssh-ed25519 AAAA attacker\n| x", "hparams": {}}
        (sweep / job / "metrics.json").write_text(json.dumps(record))
    (sweep / "report.md").symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        write_report(sweep)
    assert victim.read_text() == "ssh-ed25519 AAAA mine\n"
    (sweep / "report.md").unlink()
    report = write_report(sweep).read_text()
    assert not any(line.startswith("ssh-ed25519") for line in report.splitlines())
    assert "boom \\|<br>ssh-ed25519 AAAA attacker<br>\\| x" in report


def test_a_yaml_alias_bomb_in_a_run_dir_is_refused_at_once(tmp_path):
    from mnistlab.core.errors import ConfigError

    run_dir = _run_dir(tmp_path, [])
    pairs = zip("abcdefgh", "bcdefghi", strict=True)
    levels = [f"{child}: &{child} [{','.join(['*' + parent] * 9)}]\n" for parent, child in pairs]
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(levels)
    (run_dir / ".hydra" / "overrides.yaml").write_text(bomb)
    with pytest.raises(ConfigError, match="alias"):
        expand_resume(["train.py", f"resume={run_dir}"])


def test_an_oversized_overrides_file_is_refused_in_one_line(tmp_path):
    from mnistlab.core.errors import ConfigError

    run_dir = _run_dir(tmp_path, ["model=cnn"])
    (run_dir / ".hydra" / "overrides.yaml").write_text("- optim.lr=" + "1" * 3_000_000 + "\n")
    with pytest.raises(ConfigError, match="more than a record holds") as raised:
        expand_resume(["train.py", f"resume={run_dir}"])
    assert "\n" not in str(raised.value)


def test_non_finite_scores_in_a_record_are_never_ranked(tmp_path):
    from mnistlab.core.record import read_record

    (tmp_path / "metrics.json").write_text('{"status": "completed", "val/acc_best": NaN, "test/acc": Infinity}')
    record = read_record(tmp_path)
    assert record["val/acc_best"] is None and record["test/acc"] is None


def test_a_record_of_lists_or_beyond_the_size_cap_is_unreadable_not_read(tmp_path):
    from mnistlab.core.record import MAX_RECORD_BYTES, read_record

    (tmp_path / "metrics.json").write_text('{"status": "completed", "val/acc_best": [0.99, 1.0]}')
    assert read_record(tmp_path)["status"] == "unreadable"
    (tmp_path / "metrics.json").write_text('{"status": "completed", "pad": "' + "x" * MAX_RECORD_BYTES + '"}')
    record = read_record(tmp_path)
    assert record["status"] == "unreadable" and "larger than a run record can be" in record["reason"]


def test_no_sweep_writes_over_another_sweeps_runs(tiny_data, tmp_path):
    """A grid's sweep dir: the same grid again is refused unless skip_completed=true finishes it; a search or
    another grid into it is refused in one line; nothing of the completed runs changes."""
    import subprocess
    import sys

    from helpers.cli import run_cli

    fast = ["model=linear", "trainer.max_epochs=1", "data.val_size=100", "trainer.limit_train_batches=2"]
    grid = ["-m", "optim=sgd,adam", *fast, f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    run_cli("mnistlab.train", *grid, data_dir=tiny_data, cwd=tmp_path)
    record = (tmp_path / "sweep" / "0" / "metrics.json").read_text()
    hydra_files = {p.name: p.read_bytes() for p in (tmp_path / "sweep" / "0" / ".hydra").iterdir()}
    attempts = {
        "would write over": grid,
        "another sweep": ["-m", "optim=sgd,rmsprop", *fast, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        "another search": ["-m", "hparams_search=optuna", *fast, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
    }
    sweep_file = tmp_path / "sweep" / "sweep.json"
    attempts["completed runs this search would write over"] = attempts["another search"]  # no sweep.json, empty db
    for expected, args in attempts.items():
        if expected == "another search":
            expected = "another sweep"  # the dir was made by a grid; a search asks something else
        if "this search" in expected:
            sweep_file.rename(tmp_path / "sweep.json")
            (tmp_path / "sweep" / "optuna.db").touch()  # an empty file is no study to continue
        done = subprocess.run(
            [sys.executable, "-m", "mnistlab.train", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={**__import__("os").environ, "MNISTLAB_DATA_DIR": str(tiny_data)},
        )
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert done.returncode == 2 and len(errors) == 1 and expected in errors[0], done.stderr[-2000:]
        assert "Traceback" not in done.stderr
    (tmp_path / "sweep.json").rename(sweep_file)
    (tmp_path / "sweep" / "optuna.db").unlink()
    assert (tmp_path / "sweep" / "0" / "metrics.json").read_text() == record
    finished = run_cli("mnistlab.train", *grid, "skip_completed=true", data_dir=tiny_data, cwd=tmp_path)
    assert "2 of 2 runs completed" in finished.stdout
    # a skipped job's record still names what ran it: its .hydra files are not rewritten with skip_completed=true
    assert {p.name: p.read_bytes() for p in (tmp_path / "sweep" / "0" / ".hydra").iterdir()} == hydra_files
