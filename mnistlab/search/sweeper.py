"""``-m hparams_search=optuna``: a Hydra sweeper that asks Optuna (≥ 4, ask/tell) for trials and launches them
with whatever launcher the sweep uses (basic, joblib, SLURM).

- The study lives in ``storage`` (default: SQLite ``optuna.db`` in the sweep dir; ``postgresql://…`` lets
  several processes or machines work on one study). Running the same command again continues until
  ``n_trials`` trials have finished **in total**; each trial runs in ``<sweep dir>/<trial number>``, so no run
  dir is ever reused.
- A trial that was running when its worker died (SIGKILL, a lost node) is failed and queued again: at once for
  a SQLite study in a sweep dir this process holds, after ``heartbeat_interval`` × 2 without a heartbeat on a
  shared database.
- A trial that raises, diverges or returns NaN is FAIL with its reason (in its metrics.json and the study);
  the search goes on until ``max_failures`` trials have failed (default: no limit).
- Each trial reports ``val/acc`` every epoch; the pruner stops hopeless ones (PRUNED, with their last value).
"""

from __future__ import annotations

import logging
import math
import random
import shlex
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from mnistlab.core.errors import ConfigError, Interrupted, MnistlabError, first_line
from mnistlab.core.extras import require
from mnistlab.core.files import write_json_atomic, write_text_atomic
from mnistlab.core.record import RANK_BY, REASON, STATUS, Status, not_completed, read_record, write_record

if TYPE_CHECKING:
    from hydra.plugins.launcher import Launcher

log = logging.getLogger("mnistlab.search")
SEARCH_FILE = "search.json"  # the trials and importances, for the sweep report
OVERRIDES_ATTR = "overrides"  # a trial's user attribute: the overrides it was launched with
TERMINATED = "terminated"  # a trial's user attribute: the signal that stopped it (it is run again)
SAMPLERS = ("tpe", "random", "grid", "cmaes")
CONNECT_TIMEOUT_S = 10  # a database server that does not answer within this long is an error


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


class OptunaSweeper(Sweeper):
    config: DictConfig  # Sweeper's Optional attributes, set by setup() before sweep()
    launcher: Launcher

    def __init__(
        self,
        objective: str = RANK_BY,
        direction: str = "maximize",
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failures: int | None = None,
        study_name: str = "mnistlab",
        storage: str | None = None,
        sampler: Any = None,
        pruner: Any = None,
        heartbeat_interval: int = 60,
        enqueue: Any = None,
        params: Any = None,
    ) -> None:
        if direction not in ("maximize", "minimize"):
            raise ConfigError(f"hydra.sweeper.direction={direction!r} must be maximize or minimize")
        try:
            counts = [int(n) for n in (n_trials, n_jobs, 1 if max_failures is None else max_failures)]
        except (TypeError, ValueError):  # n_trials=abc
            counts = [0]
        if min(counts) < 1:
            raise ConfigError("hydra.sweeper.n_trials, n_jobs and max_failures must be positive integers")
        self.objective, self.direction = objective, direction
        self.n_trials, self.n_jobs = int(n_trials), int(n_jobs)
        self.max_failures = None if max_failures is None else int(max_failures)
        self.study_name, self.storage_url = study_name, storage
        self.sampler_cfg = dict(_plain(sampler) or {"name": "tpe"})
        self.pruner_cfg = dict(_plain(pruner) or {"name": "none"})
        self.heartbeat_interval = int(heartbeat_interval)
        self.enqueue = list(_plain(enqueue) or [])
        self.params = _plain(params) or {}

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    # -- the study -------------------------------------------------------------------------------------------
    def _sampler(self, space: list[Any]) -> Any:
        import optuna

        cfg = dict(self.sampler_cfg)
        name, seed = cfg.pop("name", "tpe"), cfg.pop("seed", None)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, **cfg)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, **cfg)
        if name == "grid":
            if any(p.type != "categorical" or p.when for p in space):
                raise ConfigError("sampler grid takes categorical parameters without 'when' only (a,b,c or choices)")
            grid = {p.key: p.choices for p in space}
            size = math.prod(len(v) for v in grid.values())
            if self.n_trials > size:
                log.info("the grid has %d points: n_trials %d → %d", size, self.n_trials, size)
                self.n_trials = size
            return grid_sampler(grid, seed=seed)
        raise ConfigError(f"hydra.sweeper.sampler.name={name!r} is not one of {', '.join(SAMPLERS)}")

    def _pruner(self) -> Any:
        return make_pruner(self.pruner_cfg)

    def _open_study(self, space: list[Any]) -> Any:
        import optuna
        from optuna.storages import RDBStorage

        url = study_url(self.storage_url, self.sweep_dir)
        # the default SQLite file in a sweep dir this process holds (its lock): no other worker can be running
        self.local = self.storage_url is None and not self.config.get("skip_completed")
        heartbeat: dict[str, Any] = {} if self.local else {"heartbeat_interval": self.heartbeat_interval}
        if url.startswith("postgresql"):  # a host that does not answer: an error, not a wait of minutes
            heartbeat["engine_kwargs"] = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
        try:  # before the database: an argument the sampler refuses is no fault of the study's file
            sampler = self._sampler(space)
        except ConfigError:
            raise
        except (TypeError, ValueError) as err:
            raise ConfigError(f"hydra.sweeper.sampler ({self.sampler_cfg.get('name')}): {first_line(err)}") from None
        pruner = self._pruner()
        for attempt in range(2):  # workers starting together race to create the tables and the study: once more
            try:
                self.storage = RDBStorage(url, **heartbeat)
                study = optuna.create_study(
                    study_name=self.study_name,
                    storage=self.storage,
                    sampler=sampler,
                    pruner=pruner,
                    direction=self.direction,  # type: ignore[arg-type]  # "maximize" or "minimize": __init__ checks
                    load_if_exists=True,
                )
                study.get_trials(deepcopy=False)  # a damaged database shows here, not in the middle of the search
                try:
                    self._check_goal(study)
                except ConfigError:
                    from mnistlab.core.factors import withdraw_sweep_file

                    withdraw_sweep_file(self.sweep_dir)
                    raise
                return study
            except ConfigError:
                raise
            except Exception as err:  # a server that does not answer, a driver that is not installed, a race
                if attempt == 1 or not _a_race(err):
                    raise MnistlabError(self._storage_error(url, err)) from None
                time.sleep(0.2 + 0.3 * random.random())
        raise AssertionError("unreachable")

    def _check_goal(self, study: Any) -> None:
        """A study that exists keeps the direction and objective it was made for (Optuna loads it whatever
        direction is asked): trials that scored another metric, or the other way, are never ranked together."""
        made = study.direction.name.lower()
        objective = study.user_attrs.get("objective")
        if objective is None:
            study.set_user_attr("objective", self.objective)
            objective = self.objective
        if (made, objective) != (self.direction, self.objective):
            where = self.sweep_dir / "optuna.db" if self.storage_url is None else "hydra.sweeper.storage"
            raise ConfigError(
                f"study {self.study_name!r} in {where} was made to {made} {objective}, not to {self.direction} "
                f"{self.objective}: continue it with hydra.sweeper.objective={objective} hydra.sweeper.direction="
                f"{made}, or give this search a new hydra.sweep.dir=… or hydra.sweeper.study_name=…"
            )

    def _storage_error(self, url: str, err: Exception) -> str:
        """One line that says what is wrong with the study's database and what to do."""
        if self.storage_url is None:
            db = self.sweep_dir.resolve() / "optuna.db"
            return (
                f"{db} is not a readable Optuna study ({first_line(err)}): move it away to start the search anew "
                "there, or give this one a new hydra.sweep.dir=…"
            )
        return (
            f"hydra.sweeper.storage: cannot open the study ({first_line(err)}); check the URL, that the database "
            "server is up, and its user and password"
        )

    def _requeue_dead(self, study: Any) -> None:
        """Trials a dead worker left RUNNING are failed and queued again (a retry is not retried again). For a
        SQLite study in the sweep dir this process holds (its lock), every RUNNING trial is such a trial; on a
        shared database, those whose heartbeat stopped."""
        import optuna
        from optuna.trial import TrialState

        if self.local:
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                self.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        else:
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        retried = {t.user_attrs.get("retry_of") for t in trials}
        for trial in trials:
            attrs = trial.user_attrs
            # failed by a dead worker above, or marked terminated when a signal stopped its search
            dead = trial.state == TrialState.FAIL and "reason" not in attrs and not attrs.get("surplus")
            if dead and trial.number not in retried and attrs.get("retry_of") is None:
                log.warning("trial %d stopped with its worker: queued again", trial.number)
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
                self._mark_requeued(trial.number)

    def _mark_requeued(self, number: int) -> None:
        """The dead trial's run dir says what became of it (it is kept, and never reused)."""
        run_dir = self.sweep_dir / str(number)
        record = read_record(run_dir)
        stopped = (Status.RUNNING, Status.UNREADABLE, Status.INTERRUPTED)
        if run_dir.is_dir() and (record is None or record.get(STATUS) in stopped):
            reason = "its search process stopped during the trial; the trial was queued again with the same values"
            write_record(run_dir, {**(record or {}), **not_completed(Status.REQUEUED, reason)})

    # -- counting --------------------------------------------------------------------------------------------
    @staticmethod
    def _tally(study: Any) -> tuple[list[Any], list[Any]]:
        """(finished trials that count toward n_trials, trials running now). A trial failed by a dead worker
        and run again counts once, as its retry; surplus trials asked in a race between workers not at all."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        superseded = {t.user_attrs.get("retry_of") for t in trials} - {None}
        live = [t for t in trials if t.number not in superseded and not t.user_attrs.get("surplus")]
        finished = [t for t in live if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
        return finished, [t for t in live if t.state == TrialState.RUNNING]

    def _within_budget(self, study: Any, trial: Any) -> bool:
        finished, running = self._tally(study)
        first = sorted(t.number for t in [*finished, *running])[: self.n_trials]
        return trial.number in first

    # -- the loop --------------------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> list[Any]:
        require("hparams_search=optuna", "optuna")
        import optuna

        from mnistlab.search.space import parse_space

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats
        space, fixed = parse_space(self.params, arguments)
        self.argument_keys = [a.partition("=")[0] for a in arguments]  # a job's overrides in the command line's order
        if not space and self.n_trials > 1:
            log.info("nothing is searched (no hydra.sweeper.params, no a=1,2 sweep): one trial")
            self.n_trials = 1
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        # the sweep's config, as Hydra's own sweeper writes it (unresolved, as composed)
        write_text_atomic(self.sweep_dir / "multirun.yaml", OmegaConf.to_yaml(self.config))
        study = self._open_study(space)
        for values in self.enqueue:
            study.enqueue_trial(dict(values), skip_if_exists=True)
        self._requeue_dead(study)
        returns: list[Any] = []
        failures = 0
        while True:
            if not self.local:
                self._requeue_dead(study)
            finished, running = self._tally(study)
            budget = self.n_trials - len(finished) - len(running)
            if budget <= 0:
                break
            batch = self._ask(study, space, min(self.n_jobs, budget))
            if not batch:
                break
            returns.append(self._run(study, batch, fixed))
            failures += sum(1 for trial, _ in batch if self.storage.get_trial(trial._trial_id).state.name == "FAIL")
            self._write_search_file(study, fixed)
            if self.max_failures is not None and failures >= self.max_failures:
                self._stop(
                    f"the search stopped: {failures} trials failed (max_failures={self.max_failures}); their reasons "
                    f"are in {self.sweep_dir}/<trial>/metrics.json"
                )
        self._write_search_file(study, fixed)
        finished, _ = self._tally(study)
        log.info("search: %d of %d trials finished in study %r", len(finished), self.n_trials, self.study_name)
        if finished and all(str(t.user_attrs.get("reason")).startswith(UNLAUNCHED) for t in finished):
            self._stop(  # no trial was even composed: a command line or space that cannot run, not a search
                f"the search ended with none of its {len(finished)} trials completed (trial {finished[-1].number}: "
                f"{finished[-1].user_attrs.get('reason')}); fix the command line or hydra.sweeper.params"
            )
        return returns

    def _stop(self, message: str) -> None:
        """End the search in one line (exit status 2), with its report written and its dir released."""
        from mnistlab.analysis.sweep.report import write_report
        from mnistlab.core.errors import exit_with
        from mnistlab.core.files import release_dir

        try:
            print(f"report: {write_report(self.sweep_dir).resolve()}", flush=True)
        finally:
            release_dir(self.sweep_dir)
        exit_with(message)

    def _ask(self, study: Any, space: list[Any], size: int) -> list[tuple[Any, dict[str, Any]]]:
        from optuna.trial import TrialState

        from mnistlab.search.space import sample

        batch = []
        for _ in range(size):
            trial = study.ask()
            if not self.local:  # from the first moment: a worker that dies now leaves a trial others can see is dead
                self.storage.record_heartbeat(trial._trial_id)
            if not self._within_budget(study, trial):  # another worker took the last places meanwhile
                trial.set_user_attr("surplus", True)
                study.tell(trial, state=TrialState.FAIL)
                break
            try:
                values = sample(space, trial)
            except ValueError as err:  # Optuna: an enqueued value, or earlier trials, outside today's space
                trial.set_user_attr("surplus", True)  # no trial of the search: it takes no place of n_trials
                study.tell(trial, state=TrialState.FAIL)
                raise ConfigError(
                    f"trial {trial.number} does not fit hydra.sweeper.params ({first_line(err)}): give enqueued "
                    f"values inside the space, or continue study {self.study_name!r} with its own params, or give "
                    "this search a new hydra.sweep.dir=… or hydra.sweeper.study_name=…"
                ) from None
            batch.append((trial, values))
        return batch

    def _run(self, study: Any, batch: list[tuple[Any, dict[str, Any]]], fixed: list[str]) -> Any:
        from mnistlab.search.space import as_overrides

        # a trial runs in <sweep dir>/<trial number>: the job number that Hydra's default subdir names it by when
        # the batch's trial numbers follow each other (another worker of a shared study may have taken one between)
        numbers = [t.number for t, _ in batch]
        by_job_num = OmegaConf.to_container(self.config.hydra.sweep).get("subdir") == "${hydra.job.num}"  # type: ignore[union-attr]
        own_subdir = not by_job_num or numbers != list(range(numbers[0], numbers[0] + len(numbers)))
        # the app's own search node (mnistlab's train.yaml) tells each trial its study; another app has none
        searched = isinstance(self.config.get("search"), DictConfig)
        jobs = []
        for trial, values in batch:
            trial.set_user_attr("run_dir", str(self.sweep_dir / str(trial.number)))
            job = self._in_order([*fixed, *as_overrides(values)])
            trial.set_user_attr(OVERRIDES_ATTR, job)  # what "train it again" runs
            job = list(job)
            if own_subdir:
                job.append(f"hydra.sweep.subdir={trial.number}")
            if searched:
                job += [
                    f"search.trial={trial.number}",  # the study itself: hydra.sweeper.storage/study_name
                    f"search.monitor={self.objective.removesuffix('_best')}",
                ]
            jobs.append(job)
        results, unlaunched = None, None
        with _Heartbeats(self.storage, [t for t, _ in batch], None if self.local else self.heartbeat_interval):
            try:
                results = self.launcher.launch(jobs, initial_job_idx=batch[0][0].number)
            except Exception as err:  # a launcher or compose error: these trials failed, the search goes on
                unlaunched = f"{UNLAUNCHED}{first_line(err)}"
                log.error("trials %s %s", [t.number for t, _ in batch], unlaunched)
            except (Interrupted, SystemExit) as stop:  # SIGTERM (preemption) or Ctrl-C during a trial
                self._terminated(study, batch, stop)
                raise
        returned = list(results or [])
        for i, (trial, _) in enumerate(batch):
            self._tell(study, trial, returned[i] if i < len(returned) else None, unlaunched)
        return results

    def _in_order(self, overrides: list[str]) -> list[str]:
        """As Hydra's basic sweeper gives them: in the order of the command line, the space's own keys after."""
        keys = getattr(self, "argument_keys", [])
        place = {key: i for i, key in enumerate(keys)}
        return sorted(overrides, key=lambda o: place.get(o.partition("=")[0], len(keys)))

    def _terminated(self, study: Any, batch: list[tuple[Any, dict[str, Any]]], stop: BaseException) -> None:
        """A signal ended the search during these trials: those that finished are told as usual; the others are
        failed with the mark ``terminated`` (not a failure of their values: the next run of the search queues
        them again with the same values, without waiting for a heartbeat to go stale)."""
        import signal

        from optuna.trial import TrialState

        name: str | None = stop.name if isinstance(stop, Interrupted) else None
        code = stop.code if isinstance(stop, SystemExit) and isinstance(stop.code, int) else 0
        if code > 128 and code - 128 in {s.value for s in signal.Signals}:  # how mnistlab-train ends on a signal
            name = signal.Signals(code - 128).name
        for trial, _ in batch:
            record = read_record(self.sweep_dir / str(trial.number)) or {}
            if name is None or record.get(STATUS) in (Status.COMPLETED, Status.PRUNED):
                self._tell(study, trial)
            elif self.storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                trial.set_user_attr(TERMINATED, name)
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                log.warning("trial %d stopped by %s: the next run of the search runs it again", trial.number, name)

    def _tell(self, study: Any, trial: Any, returned: Any = None, unlaunched: str | None = None) -> None:
        from optuna.trial import TrialState

        record = read_record(self.sweep_dir / str(trial.number)) or (
            not_completed(Status.FAILED, unlaunched) if unlaunched else _returned_record(returned, self.objective)
        )
        status = record.get(STATUS)
        value = record.get(self.objective)
        if status == Status.COMPLETED and isinstance(value, int | float) and math.isfinite(value):
            study.tell(trial, float(value), skip_if_finished=True)
        elif status == Status.PRUNED:
            trial.set_user_attr("reason", str(record.get(REASON, Status.PRUNED)))
            study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            if status == Status.COMPLETED:
                reason = f"{self.objective} is {value!r}, not a number"
            else:
                reason = str(record.get(REASON) or status)
            trial.set_user_attr("reason", reason)
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            log.error("trial %d failed: %s", trial.number, reason)

    def _ran(self, trial: Any, otherwise: list[str]) -> list[str]:
        """The overrides the trial ran with (its job's ``.hydra/overrides.yaml``, else those recorded in the study
        when it was launched), less the sweeper's own; ``otherwise`` for a trial that recorded none."""
        from mnistlab.core.config import read_overrides

        run_dir = Path(str(trial.user_attrs.get("run_dir") or self.sweep_dir / str(trial.number)))
        try:
            ran = read_overrides(run_dir)
        except ConfigError:
            recorded = trial.user_attrs.get(OVERRIDES_ATTR)
            ran = recorded if isinstance(recorded, list) and all(isinstance(o, str) for o in recorded) else otherwise
        return [o for o in ran if o.partition("=")[0].lstrip("+~").split(".")[0] not in ("search", "hydra")]

    def _write_search_file(self, study: Any, fixed: list[str]) -> None:
        """The study as data for the sweep report: trials, importances, the best trial's command line."""

        from mnistlab.search.space import as_overrides

        trials = [
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": t.params,
                "reason": t.user_attrs.get("reason"),
                "retry_of": t.user_attrs.get("retry_of"),
                "surplus": bool(t.user_attrs.get("surplus")),
                "terminated": t.user_attrs.get(TERMINATED),
            }
            for t in study.get_trials(deepcopy=False)
        ]
        completed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        data: dict[str, Any] = {"objective": self.objective, "direction": self.direction, "trials": trials}
        if completed:
            best = study.best_trial
            data["best"] = {
                "number": best.number,
                "value": best.value,
                "command": shlex.join(["mnistlab-train", *self._ran(best, [*fixed, *as_overrides(best.params)])]),
            }
        found = param_importances(study)
        if found:
            data["importances"], data["importance_method"] = found
            data["importance_trials"] = len(completed)
        write_json_atomic(self.sweep_dir / SEARCH_FILE, data)


UNLAUNCHED = "could not be launched: "  # the reason of a trial Hydra could not compose or launch


def _returned_record(returned: Any, objective: str) -> dict[str, Any]:
    """A job that wrote no metrics.json (an app other than mnistlab's): its task function's return value is
    the objective, as for Hydra's own sweepers."""
    from hydra.core.utils import JobStatus

    if returned is None:
        return not_completed(Status.FAILED, "no metrics.json")
    if returned.status != JobStatus.COMPLETED:
        return not_completed(Status.FAILED, first_line(returned._return_value))
    value = returned.return_value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {STATUS: Status.COMPLETED, objective: float(value)}
    return not_completed(Status.FAILED, f"no metrics.json, and the job returned {type(value).__name__}, not a number")


IMPORTANCE_METHOD = "fANOVA (Optuna's FanovaImportanceEvaluator: a random forest of 64 trees, seed 0)"
MIN_IMPORTANCE_TRIALS = 3


def param_importances(study: Any) -> tuple[dict[str, float], str] | None:
    """fANOVA importances of the parameters searched in every completed trial (a conditional one such as
    momentum drops out), named explicitly: Optuna 5's default evaluator is PED-ANOVA, another method whose
    numbers differ. From MIN_IMPORTANCE_TRIALS completed trials; None when there is too little to say."""
    import optuna

    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(completed) < MIN_IMPORTANCE_TRIALS or len({t.value for t in completed}) < 2:
        return None
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as err:  # no parameter common to every trial, or none that varies
        log.info("no parameter importances yet (%s)", first_line(err))
        return None
    return ({k: float(v) for k, v in found.items()}, IMPORTANCE_METHOD) if found else None


def grid_sampler(grid: dict[str, list[Any]], seed: Any) -> Any:
    """Optuna's grid sampler without its ``study.stop()`` when the grid is used up, which raises outside
    ``study.optimize`` (the sweeper stops at n_trials, capped at the grid's size). Without a seed the points
    come in the order Hydra's basic sweeper runs them (the grid's keys as declared, the last varying fastest)
    rather than shuffled."""
    import itertools

    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    sampler = GridSampler(grid, seed=seed)
    if seed is None:  # Optuna's grid points are tuples of the values of its sorted parameter names
        keys = list(grid)
        names = sorted(keys)
        points = [dict(zip(keys, point, strict=True)) for point in itertools.product(*grid.values())]
        sampler._all_grids = [tuple(point[name] for name in names) for point in points]
    return sampler


def study_url(storage: str | None, sweep_dir: Path) -> str:
    """The study's database: hydra.sweeper.storage, else optuna.db (SQLite) in the sweep dir. A plain
    ``postgresql://`` (SQLAlchemy's psycopg2) uses psycopg 3, the driver of the [postgres] extra, when psycopg2
    is not installed."""
    if storage and storage.startswith("postgresql://"):
        from mnistlab.core.extras import installed

        if not installed("psycopg2") and installed("psycopg"):
            storage = "postgresql+psycopg://" + storage.removeprefix("postgresql://")
    return storage or f"sqlite:///{Path(sweep_dir).resolve()}/optuna.db"


def _a_race(err: Exception) -> bool:
    """Whether opening the study failed because another worker was creating the same tables or study at that
    moment (worth one more try), rather than for a reason that another try would meet again."""
    import optuna
    from sqlalchemy.exc import IntegrityError

    text = str(err).lower()
    raced = ("already exists", "database is locked", "deadlock", "duplicate")
    return isinstance(err, IntegrityError | optuna.exceptions.DuplicatedStudyError) or any(w in text for w in raced)


def make_pruner(spec: dict[str, Any] | None) -> Any:
    """An Optuna pruner from ``{name: median, n_startup_trials: 3, …}``: built by the sweeper and by each trial
    (a study's pruner is not stored in its database)."""
    import inspect

    import optuna

    cfg = dict(spec or {})
    name = cfg.pop("name", "none")
    pruners = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "threshold": optuna.pruners.ThresholdPruner,
    }
    if name not in pruners:
        raise ConfigError(f"hydra.sweeper.pruner.name={name!r} is not one of {', '.join(pruners)}")
    # the defaults carry the median pruner's arguments: another pruner takes only those it has
    accepted = inspect.signature(pruners[name]).parameters
    cfg = {k: v for k, v in cfg.items() if k in accepted or k not in ("n_startup_trials", "n_warmup_steps")}
    try:
        return pruners[name](**cfg)
    except (TypeError, ValueError) as err:  # an unknown or a negative argument
        raise ConfigError(f"hydra.sweeper.pruner ({name}): {first_line(err)}") from None


class _Heartbeats:
    """Record a heartbeat for each running trial every ``interval`` seconds (shared databases only), so that
    another worker can tell when this one died."""

    def __init__(self, storage: Any, trials: list[Any], interval: int | None) -> None:
        self.storage, self.trials, self.interval = storage, trials, interval
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _beat(self) -> None:
        while True:
            for trial in self.trials:
                try:
                    self.storage.record_heartbeat(trial._trial_id)
                except Exception as err:  # a database hiccup must not stop the heartbeats for good
                    log.warning("heartbeat of trial %d not recorded: %s", trial.number, first_line(err))
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> _Heartbeats:
        if self.interval:
            self.thread = threading.Thread(target=self._beat, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
