"""A sweep on ``hydra/launcher=joblib`` (jobs in worker processes) interrupted by Ctrl-C: the same summary and
exit status as with the basic launcher, every job recorded, the report written once, by the sweep's process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from helpers import REPO
from helpers.cli import FAST


def test_ctrl_c_on_a_joblib_sweep_records_every_job_and_prints_the_summary(tiny_data, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *FAST, "model=mlp", "data=mnist"]
    args += ["trainer.max_epochs=1", "seed=1,2", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(tiny_data), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mnistlab.train", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while len(list(sweep.glob("*/.hydra"))) < 2:  # both jobs started in their workers
        assert process.poll() is None and time.time() < deadline, "the jobs never started"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)  # to the sweep's process only, as `kill -INT` does
    output = process.communicate(timeout=90)[0]
    assert process.returncode == 128 + signal.SIGINT, output[-3000:]
    assert "Traceback" not in output and output.rstrip().endswith("interrupted by SIGINT"), output[-3000:]
    summary = re.findall(r"^(\d) of 2 runs completed, (\d) failed; in (.+)$", output, re.MULTILINE)
    assert len(summary) == 1 and summary[0][2] == str(sweep), output[-3000:]
    statuses = [(sweep / str(job) / "metrics.json").read_text() for job in (0, 1)]
    interrupted = sum('"status": "interrupted"' in s for s in statuses)
    completed = sum('"status": "completed"' in s for s in statuses)
    assert interrupted + completed == 2 and summary[0][:2] == (str(completed), str(interrupted))
    assert output.count(f"report: {sweep / 'report.md'}") == 1 and (sweep / "report.md").is_file()
    assert not list(sweep.glob("**/.*.tmp")) and not (sweep / ".mnistlab.lock").exists()


def test_a_joblib_worker_leaves_the_report_and_the_sweep_dir_to_the_sweeps_process(tmp_path, monkeypatch):
    from mnistlab.core.files import acquire_dir, dir_busy, release_dir
    from mnistlab.training.sweep import SWEEP_PID, close_sweep

    acquire_dir(tmp_path)
    monkeypatch.setenv(SWEEP_PID, str(os.getppid()))  # this process as one of the sweep's workers
    close_sweep(tmp_path)
    assert not (tmp_path / "report.md").exists() and (tmp_path / ".mnistlab.lock").exists()
    monkeypatch.setenv(SWEEP_PID, str(os.getpid()))  # …and as the sweep's own process
    close_sweep(tmp_path)
    assert (tmp_path / "report.md").is_file() and not (tmp_path / ".mnistlab.lock").exists()
    release_dir(tmp_path)
    assert dir_busy(tmp_path) is None
