"""Comparing the runs of a sweep as a researcher does: TensorBoard's HParams tab (its HTTP API and the page in
Chromium), run names, the console of the sweep, and per-job numbers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.cli import FAST, free_port, run_cli

SWEPT = ["optim=sgd,adam", "model.norm=none,batch"]
METRICS = ["val/acc_best", "test/acc", "test/f1", "test/loss"]


@pytest.fixture(scope="module")
def sweep(tiny_data, tmp_path_factory):
    """A 4-run sweep on tiny data; its sweep dir and console output."""
    cwd = tmp_path_factory.mktemp("compare")
    # the model summary and the progress lines (plain, into a pipe) are part of what is checked
    fast = [o for o in FAST if not o.startswith(("trainer.enable_model_summary", "callbacks.progress_bar"))]
    result = run_cli("mnistlab.train", "-m", *SWEPT, *fast, data_dir=tiny_data, cwd=cwd)
    (sweep_dir,) = cwd.glob("multirun/*/*")
    return sweep_dir, result.stdout + result.stderr


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def tensorboard(sweep):
    sweep_dir, _ = sweep
    port = free_port()
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep_dir), "--host", "127.0.0.1"]
    process = subprocess.Popen([*command, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            if _post(f"{url}/data/plugin/hparams/experiment", {"experimentName": ""}).get("hparamInfos"):
                break
        except OSError:
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise RuntimeError(f"TensorBoard did not answer:\n{process.stdout.read().decode()[-3000:]}")
        time.sleep(0.5)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_hparams_api_shows_what_was_swept_with_real_metrics(sweep, tensorboard):
    sweep_dir, _ = sweep
    experiment = _post(f"{tensorboard}/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = {h["name"]: h.get("differs", False) for h in experiment["hparamInfos"]}
    assert infos == {"optim": True, "norm": True}  # the swept factors, and no constant columns to crowd them
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == METRICS
    body = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [],
        "startIndex": 0,
        "sliceSize": 100,
    }
    groups = _post(f"{tensorboard}/data/plugin/hparams/session_groups", body)["sessionGroups"]
    assert len(groups) == 4
    for group in groups:
        job, label = group["name"].split("/", 1)
        record = json.loads((sweep_dir / job / "metrics.json").read_text())
        hparams = record["hparams"]
        assert label == f"optim={hparams['optim']},model.norm={hparams['norm']}"  # the run is named by its choices
        assert {"activation", "batch_size", "seed", "lr"} <= set(group["hparams"])  # constants are still recorded
        values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        for tag in METRICS:
            assert values[tag] == pytest.approx(record[tag], rel=1e-5)


def test_the_hparams_table_shows_the_swept_factors_in_chromium(tensorboard, tmp_path):
    from helpers.browser import CHROMIUM, FLAGS

    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: install Debian's `chromium` package (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.goto(f"{tensorboard}/#hparams")
            cells = page.locator("vaadin-grid-cell-content")
            cells.filter(has_text="test/loss").first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "hparams.png"))
            header = {}
            for index in range(cells.count()):
                box = cells.nth(index).bounding_box()
                text = cells.nth(index).inner_text().strip()
                if box and text and box["y"] < 250:  # the table's header row
                    header[text] = box
        finally:
            browser.close()
    assert {"norm", "optim", *METRICS} <= set(header), header
    assert not {"activation", "batch_size", "data"} & set(header)
    assert all(box["x"] + box["width"] <= 1920 for box in header.values())  # nothing falls off the edge


def test_a_sweep_prints_each_event_once_and_names_the_winner(sweep):
    sweep_dir, output = sweep
    for noise in ("💡", "litlogger", "litmodels", "deprecated", "DeprecationWarning", "FLOPs", "categorical units"):
        assert noise not in output
    jobs = re.split(r"\[HYDRA\]\s+#\d+ : ", output)
    assert len(jobs) == 5
    for job in jobs[1:]:
        # log lines without their time stamp; the config tree (printed once) and table borders left out
        kept = [line for line in job.splitlines() if line.strip() and line[0] not in "│├└┃┏┡┗ " and line != "config"]
        kept = [line for line in kept if not set(line) <= set("─━═-+| ")]  # borders of Lightning's test table
        lines = [re.sub(r"^\[[^]]*\]", "", line).strip() for line in kept]
        repeated = {line for line in lines if lines.count(line) > 1}
        assert not repeated, repeated
        assert sum("parameters (" in line for line in lines) == 1  # the one-line model summary
    tail = output.strip().splitlines()[-6:]
    assert any(line.startswith("best: ") and "optim=" in line and "test/acc" in line for line in tail), tail
    assert any(str(sweep_dir / "report.md") in line for line in tail), tail


def test_each_job_measures_its_own_peak_memory_and_counts_epochs_from_one(sweep):
    sweep_dir, output = sweep
    records = [json.loads((sweep_dir / str(n) / "metrics.json").read_text()) for n in range(4)]
    assert all("this job" in r["peak_memory"] for r in records)
    assert all(1 <= r["best_epoch"] <= r["epochs"] == 2 for r in records)
    assert "epoch 1/2" in output and "epoch 2/2" in output and "epoch 0" not in output.lower()
    assert all(Path(sweep_dir, str(n)).glob("optim=*,model.norm=*/events.out.tfevents.*") for n in range(4))


def test_the_first_groups_tensorboard_opens_are_train_and_val(sweep):
    """TensorBoard's Time Series opens the first two tag groups alphabetically: with the learning rate under
    train/ and no epoch scalar, those are train and val while a run trains (test joins at the end)."""
    from helpers.tb import load

    sweep_dir, _ = sweep
    tags = load(sweep_dir / "0").Tags()
    groups = sorted({tag.split("/", 1)[0] for tag in [*tags["scalars"], *tags["images"]]})
    assert groups == ["test", "train", "val"], groups
    assert "train/lr" in tags["scalars"] and not [t for t in tags["scalars"] if t.startswith("lr")]
