"""``-m hparams_search=optuna``: a Hydra sweeper that asks Optuna (≥ 4, ask/tell) for trials and launches them
with whatever launcher the sweep uses (basic, joblib, SLURM).

- The study lives in ``storage`` (default: SQLite ``optuna.db`` in the sweep dir; ``postgresql://…`` or a
  journal file, ``journal:///shared/path/study.log`` (``mnistlab.search.journal``), lets several processes or
  machines work on one study). Running the same command again continues until ``n_trials`` trials have finished
  **in total**; each trial runs in ``<sweep dir>/<trial number>``, so no run dir is ever reused.
- A trial that was running when its worker died (SIGKILL, a lost node) is failed and queued again, once: at
  once for a SQLite study in a sweep dir this process holds, after ``heartbeat_interval`` × 2 without a
  heartbeat on a shared database or journal.
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
# TPE as mnistlab runs it, whatever Optuna's defaults are (Optuna 5 turned multivariate and constant_liar on; 4.x
# had both off): conf/hydra/sweeper/mnistlab_optuna.yaml and conf/hparams_search/optuna.yaml write these out, and
# a sampler block that leaves one out gets it from here, never from the installed Optuna.
#   multivariate + group: one joint model of the parameters that are searched together (lr and weight decay
#     interact), with conditional ones (momentum only for SGD) in their own group rather than sampled apart
#   constant_liar: trials still running count as bad results, so parallel workers are not sent to the same spot
#   n_startup_trials: random trials before TPE's model is used (the study's, shared by all its workers)
TPE_DEFAULTS: dict[str, Any] = {"multivariate": True, "group": True, "constant_liar": True, "n_startup_trials": 10}
# what each value must be: (in words, check)
_KINDS: dict[str, tuple[str, Any]] = {
    "seed": ("null or an integer from 0 to 2**32 - 1", lambda v: v is None or (type(v) is int and 0 <= v < 2**32)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "count": ("an integer ≥ 0", lambda v: type(v) is int and v >= 0),
    "size": ("an integer ≥ 1", lambda v: type(v) is int and v >= 1),
    "size_or_null": ("null or an integer ≥ 1", lambda v: v is None or (type(v) is int and v >= 1)),
    "scale": ("null or a number > 0", lambda v: v is None or (type(v) in (int, float) and v > 0)),
}
# the settings passed through to each Optuna sampler (anything else is refused in one line), and their kinds
SAMPLER_SETTINGS: dict[str, dict[str, str]] = {
    "tpe": {
        "seed": "seed",
        "multivariate": "bool",
        "group": "bool",
        "constant_liar": "bool",
        "n_startup_trials": "count",
        "n_ei_candidates": "size",
    },
    "random": {"seed": "seed"},
    "grid": {"seed": "seed"},
    "cmaes": {
        "seed": "seed",
        "n_startup_trials": "count",
        "sigma0": "scale",
        "popsize": "size_or_null",
        "use_separable_cma": "bool",
        "with_margin": "bool",
        "lr_adapt": "bool",
        "consider_pruned_trials": "bool",
    },
}
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
        self.journal = str(storage or "").startswith("journal:")  # mnistlab.search.journal (imports Optuna)
        self.sampler_cfg = dict(_plain(sampler) or {"name": "tpe"})
        sampler_settings(self.sampler_cfg)  # a setting no sampler takes, or a value of the wrong kind: one line now
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

        name, kwargs, ignored = sampler_settings(self.sampler_cfg)
        if ignored:
            log.warning("hydra.sweeper.sampler: %s does not take %s, left out", name, ", ".join(ignored))
        seed = kwargs.pop("seed", None)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, **kwargs)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, **kwargs)
        if any(p.type != "categorical" or p.when for p in space):  # grid
            raise ConfigError("sampler grid takes categorical parameters without 'when' only (a,b,c or choices)")
        grid = {p.key: p.choices for p in space}
        size = math.prod(len(v) for v in grid.values())
        if self.n_trials > size:
            log.info("the grid has %d points: n_trials %d → %d", size, self.n_trials, size)
            self.n_trials = size
        return grid_sampler(grid, seed=seed)

    def _pruner(self) -> Any:
        return make_pruner(self.pruner_cfg)

    def _open_study(self, space: list[Any]) -> Any:
        import optuna
        from optuna.storages import RDBStorage

        from mnistlab.search.journal import open_journal

        url = str(self.storage_url) if self.journal else study_url(self.storage_url, self.sweep_dir)
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
        seed = self.sampler_cfg.get("seed")
        if not self.local and seed is not None:
            log.warning(
                "hydra.sweeper.sampler.seed=%s on a shared study: give every worker its own seed (workers with "
                "the same seed draw the same random points)",
                seed,
            )
        for attempt in range(2):  # workers starting together race to create the tables and the study: once more
            try:
                if self.journal:
                    self.storage = open_journal(url, self.sweep_dir, self.heartbeat_interval)
                else:
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
            except MnistlabError:  # ours, one line already: a setting, a journal file this search cannot use
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
            where: object = self.sweep_dir / "optuna.db" if self.storage_url is None else "hydra.sweeper.storage"
            if self.journal:
                from mnistlab.search.journal import journal_path

                where = journal_path(str(self.storage_url), self.sweep_dir)
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
        if self.journal:
            from mnistlab.search.journal import journal_path, not_a_journal

            path = journal_path(str(self.storage_url), self.sweep_dir)
            if isinstance(err, OSError):
                return f"hydra.sweeper.storage: cannot use the journal {path} ({first_line(err)})"
            return not_a_journal(path, first_line(err))
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
        elif self.journal:  # JournalStorage has no heartbeats of Optuna's: ours (mnistlab.search.journal)
            self.storage.fail_stale_trials(study._study_id)
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

        batch: list[tuple[Any, dict[str, Any]]] = []
        while len(batch) < size:
            trial = study.ask()
            if not self.local:  # from the first moment: a worker that dies now leaves a trial others can see is dead
                self.storage.record_heartbeat(trial._trial_id)
            if self._another_retry(study, trial):  # two workers queued the same dead trial again: one runs it
                trial.set_user_attr("surplus", True)
                study.tell(trial, state=TrialState.FAIL)
                continue
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

    @staticmethod
    def _another_retry(study: Any, trial: Any) -> bool:
        """Whether ``trial`` re-runs a dead trial that an earlier trial already re-runs. Workers that see the same
        dead trial at once may each queue it again; queued trials are taken oldest first, so the earliest such
        retry is the one that runs and any later one is surplus."""
        retry_of = trial.user_attrs.get("retry_of")
        if retry_of is None:
            return False
        return any(
            t.number < trial.number and t.user_attrs.get("retry_of") == retry_of and not t.user_attrs.get("surplus")
            for t in study.get_trials(deepcopy=False)
        )

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


MIN_IMPORTANCE_TRIALS = 3
FANOVA_TREES, FANOVA_SEED = 64, 0
# how the report names each of Optuna's evaluators (the label of its importance column)
IMPORTANCE_LABELS = {
    "FanovaImportanceEvaluator": "fANOVA",
    "PedAnovaImportanceEvaluator": "PED-ANOVA",
    "MeanDecreaseImpurityImportanceEvaluator": "MDI",
}


def importance_evaluator() -> Any:
    """The evaluator of the report's importances, named here rather than left to Optuna, whose default changed
    (fANOVA until 4.x, PED-ANOVA in 5). fANOVA, because it fits every completed trial: PED-ANOVA compares the best
    10 % of the trials with the rest, and a search of 20 trials has two such, so its ranking would turn on two
    runs. fANOVA's forest shares out the variance of the objective, as the report says, and with a seed it gives
    the same numbers each time the report is written."""
    import optuna

    return optuna.importance.FanovaImportanceEvaluator(n_trees=FANOVA_TREES, seed=FANOVA_SEED)


def importance_method(evaluator: Any) -> str:
    """The evaluator's name as the report prints it, from the evaluator object itself (so a label can never
    name another method than the one computed), with its settings: ``fANOVA (Optuna's …: …)``."""
    name = type(evaluator).__name__
    label = IMPORTANCE_LABELS.get(name, name)
    if name == "FanovaImportanceEvaluator":
        return f"{label} (Optuna's {name}: a random forest of {FANOVA_TREES} trees, seed {FANOVA_SEED})"
    return f"{label} (Optuna's {name})"


def param_importances(study: Any) -> tuple[dict[str, float], str] | None:
    """Importances (``importance_evaluator``) of the parameters searched in every completed trial (a conditional
    one such as momentum drops out), with the method's name for the report. From MIN_IMPORTANCE_TRIALS
    completed trials; None when there is too little to say."""
    import optuna

    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(completed) < MIN_IMPORTANCE_TRIALS or len({t.value for t in completed}) < 2:
        return None
    evaluator = importance_evaluator()
    try:
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as err:  # no parameter common to every trial, or none that varies
        log.info("no parameter importances yet (%s)", first_line(err))
        return None
    return ({k: float(v) for k, v in found.items()}, importance_method(evaluator)) if found else None


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


def sampler_settings(spec: dict[str, Any] | None) -> tuple[str, dict[str, Any], list[str]]:
    """(the sampler's name, the keyword arguments mnistlab passes to it, the settings it leaves out) from
    ``hydra.sweeper.sampler``: only the settings of SAMPLER_SETTINGS, each checked, TPE's filled from
    TPE_DEFAULTS. The preset's TPE settings stay in the config when another sampler is chosen: that sampler
    leaves out those it does not take (named when they differ from the preset's)."""
    cfg = dict(spec or {})
    name = cfg.pop("name", "tpe")
    if name not in SAMPLER_SETTINGS:
        raise ConfigError(f"hydra.sweeper.sampler.name={name!r} is not one of {', '.join(SAMPLERS)}")
    taken = SAMPLER_SETTINGS[name]
    known = {key for settings in SAMPLER_SETTINGS.values() for key in settings}
    unknown = sorted(str(key) for key in cfg if key not in known)
    if unknown:
        raise ConfigError(
            f"hydra.sweeper.sampler.{unknown[0]} is not a setting mnistlab passes to an Optuna sampler; {name} takes "
            f"{', '.join(taken)}"
        )
    ignored = sorted(k for k, v in cfg.items() if k not in taken and (k not in TPE_DEFAULTS or TPE_DEFAULTS[k] != v))
    kwargs = {**(TPE_DEFAULTS if name == "tpe" else {}), **{k: v for k, v in cfg.items() if k in taken}}
    for key, value in kwargs.items():
        words, valid = _KINDS[taken[key]]
        if not valid(value):
            raise ConfigError(f"hydra.sweeper.sampler.{key}={value!r} must be {words}")
    if kwargs.get("group") and not kwargs.get("multivariate"):
        raise ConfigError("hydra.sweeper.sampler.group=true needs multivariate=true (groups are modelled jointly)")
    return name, kwargs, ignored


def open_storage(storage: str | None, sweep_dir: Path) -> Any:
    """The study's storage as a trial opens it (``hydra.sweeper.storage``, the sweeper's own settings)."""
    from mnistlab.search.journal import is_journal, open_journal

    if is_journal(storage):
        return open_journal(str(storage), sweep_dir)
    import optuna

    return optuna.storages.get_storage(study_url(storage, sweep_dir))


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
