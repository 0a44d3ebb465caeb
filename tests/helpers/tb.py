"""Reading TensorBoard event files back, as the HParams tab would."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def events_dir(run_dir: Path) -> Path:
    """The run dir itself (a single run), or its one TensorBoard run folder (a sweep job: <job>/<choices>)."""
    if any(Path(run_dir).glob("events.out.tfevents.*")):
        return Path(run_dir)
    found = sorted({p.parent for p in Path(run_dir).glob("*/events.out.tfevents.*")})
    return found[0] if len(found) == 1 else Path(run_dir)


def load(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(events_dir(run_dir)), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def hparams_sessions(run_dir: Path) -> list[dict[str, object]]:
    """The HParams session(s) written in ``run_dir``: one dict of hparam values per session."""
    content = load(run_dir).PluginTagToContent("hparams")
    sessions = []
    for tag, raw in content.items():
        if tag.endswith("session_start_info"):
            info = plugin_data_pb2.HParamsPluginData.FromString(raw).session_start_info
            sessions.append({k: v.string_value or v.number_value or v.bool_value for k, v in info.hparams.items()})
    return sessions


def last_scalar(run_dir: Path, tag: str) -> float:
    return max(load(run_dir).Scalars(tag), key=lambda event: event.step).value
