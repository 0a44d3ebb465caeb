"""The few choices a sweep varies, logged as TensorBoard HParams and kept in metrics.json.

Every run logs the same keys with scalar values (no None, lists or ``_target_``): TensorBoard drops runs
whose key sets differ from the HParams tab.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnistlab.core.columns import HPARAM_COLUMNS, HPARAM_METRICS, HParamSource, scalar

# the HParams row: every run logs these keys (with these value types), then the keys its sweep varies that are
# not among them (a swept ``model.channels``, say)
BASE_TYPES: dict[str, type] = {column.name: column.type for column in HPARAM_COLUMNS}
# the columns a single run shows first in the HParams tab, after the keys set on its command line
FIRST = ("data", "model", "optim", "lr", "scheduler")


def sweep_hparams(
    cfg: DictConfig, choices: dict[str, Any], lr: float, extra_keys: Sequence[str] = ()
) -> dict[str, str | int | float | bool]:
    """The HParams row of a run. ``choices`` are Hydra's picked group options; ``lr`` is the one applied
    (after the LR finder, if it ran); ``extra_keys`` are swept override keys that have no column of their own."""
    source = HParamSource(cfg, choices, lr)
    row: dict[str, str | int | float | bool] = {column.name: column.value(source) for column in HPARAM_COLUMNS}
    for key in extra_keys:
        if key not in row:
            row[key] = scalar(choices[key] if key in choices else OmegaConf.select(cfg, key, default=None))
    return row


def _hparam_info(name: str, kind: type, differs: bool) -> Any:
    from tensorboard.plugins.hparams import api_pb2

    # booleans are numbers in the sessions torch writes (True → 1.0), so they are declared as numbers too
    kind_type = api_pb2.DATA_TYPE_STRING if kind is str else api_pb2.DATA_TYPE_FLOAT64
    return api_pb2.HParamInfo(name=name, type=kind_type, differs=differs)


def experiment_summary(columns: list[tuple[str, type, bool]]) -> Any:
    """The HParams tab's experiment: hparam columns ``(name, type, differs)`` in this order (TensorBoard shows
    the first five with ``differs`` set) and HPARAM_METRICS as the metric columns."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    experiment = api_pb2.Experiment(
        hparam_infos=[_hparam_info(*column) for column in columns],
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in HPARAM_METRICS],
    )
    content = plugin_data_pb2.HParamsPluginData(experiment=experiment, version=metadata.PLUGIN_DATA_VERSION)
    plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString())
    return Summary(value=[Summary.Value(tag=metadata.EXPERIMENT_TAG, metadata=SummaryMetadata(plugin_data=plugin))])


def _kind(values: list[Any]) -> type:
    if values and all(isinstance(v, bool) for v in values):
        return bool
    if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return float
    return str


def sweep_columns(swept: dict[str, list[Any]]) -> list[tuple[str, type, bool]]:
    """A sweep's experiment: the columns it varies (``differs``). TensorBoard shows the first five declared
    columns whatever they hold, so the constant ones are not declared: they stay in every session's row (the
    HParams API, metrics.json, the sweep report) without crowding the table."""
    from mnistlab.core.factors import hparam_name

    varying = {hparam_name(key): values for key, values in swept.items()}
    if not varying:
        return [(name, BASE_TYPES[name], False) for name in FIRST]
    return [(name, BASE_TYPES.get(name) or _kind(values), True) for name, values in varying.items()]


def single_run_columns(hparams: dict[str, Any], chosen: list[str]) -> list[tuple[str, type, bool]]:
    """A single run's experiment: the keys set on its command line, then the main choices, then the rest."""
    order = [*dict.fromkeys([*(c for c in chosen if c in hparams), *FIRST, *hparams])]
    return [(name, type(hparams[name]), name in chosen or name in FIRST) for name in order if name in hparams]


def write_sweep_experiment(sweep_dir: Any, swept: dict[str, list[Any]]) -> None:
    """One experiment summary per sweep, in the sweep dir itself: the HParams tab's columns for all its runs."""
    import time

    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(sweep_dir))
    writer.add_event(Event(wall_time=time.time(), summary=experiment_summary(sweep_columns(swept))))
    writer.close()


def log_hparams(loggers: list[Any], hparams: dict[str, Any], columns: list[tuple[str, type, bool]] | None) -> None:
    """The run's HParams session, declaring HPARAM_METRICS as its metrics; with ``columns`` (a single run) also
    its experiment. A job of a sweep writes no experiment: the sweep wrote one for all of its runs (when every
    run wrote its own, TensorBoard picked one at random and showed constant columns).

    Lightning's ``log_hyperparams(params, metrics)`` also writes the metrics as scalars at step 0; those
    placeholders can outlive the real values when a run has several event files (test opens a new one).
    Here only the session is written; the real metrics arrive under the same tags.
    """
    from lightning.pytorch.loggers import TensorBoardLogger
    from lightning.pytorch.utilities import rank_zero_only
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    if rank_zero_only.rank != 0:  # type: ignore[attr-defined]  # other ranks hold no writer (Lightning sets .rank)
        return
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment._get_file_writer()
            _, session_start, session_end = hparams_summary(hparams, dict.fromkeys(HPARAM_METRICS, 0.0))
            summaries = [session_start, session_end]
            if columns is not None:
                summaries.insert(0, experiment_summary(columns))
            for summary in summaries:
                writer.add_summary(summary)
            writer.flush()
        else:
            logger.log_hyperparams(hparams)
