"""Hydra's own test suites for sweepers and launchers (``hydra.test_utils.launcher_common_tests``), run against
mnistlab's Optuna sweeper on Hydra's test app (``hydra.test_utils.a_module``, configs ``compose.yaml``): a
grid of categorical values is the search space, so that the trials and their order are those of Hydra's
basic sweeper."""

from __future__ import annotations

import pytest
from helpers import REPO, needs

pytestmark = needs("optuna")

try:
    from hydra.test_utils.launcher_common_tests import BatchedSweeperTestSuite, LauncherTestSuite
except ImportError:  # hydra-core without its test utilities
    BatchedSweeperTestSuite = LauncherTestSuite = object  # type: ignore[assignment,misc]


@pytest.fixture(autouse=True)
def mnistlab_sweeper() -> None:
    """``hydra/sweeper=mnistlab_optuna`` for an app other than mnistlab (Hydra finds it in its ConfigStore)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    node = OmegaConf.load(REPO / "conf" / "hydra" / "sweeper" / "mnistlab_optuna.yaml")
    ConfigStore.instance().store(group="hydra/sweeper", name="mnistlab_optuna", node=node, provider="mnistlab")


@pytest.fixture(autouse=True)
def hydras_compat_version_base():
    """The suites expect the version base of an app that names none (Hydra 1.3: 1.1's, jobs run in their output
    dir; Hydra 1.4: its own); mnistlab's commands, run earlier in the same process, set 1.3 on Hydra 1.3, and
    Hydra keeps it process-wide."""
    import hydra
    from hydra.version import _UNSPECIFIED_, VersionBase, _get_version

    from mnistlab.core.hydra_compat import HYDRA_1_4

    before = VersionBase.instance().getbase()
    VersionBase.instance().version_base = _get_version(hydra.__version__) if HYDRA_1_4 else _UNSPECIFIED_
    yield
    VersionBase.instance().version_base = before


GRID = ["hydra/sweeper=mnistlab_optuna", "hydra.sweeper.sampler.name=grid", "hydra.sweeper.pruner.name=none"]


@pytest.mark.parametrize(("launcher_name", "overrides"), [("basic", [*GRID, "hydra.sweeper.n_jobs=2"])])
class TestBatchedSweeper(BatchedSweeperTestSuite):
    """Six trials (the grid group1=file1,file2 × bar=100,200,300) in three batches of two."""


@pytest.mark.parametrize(("launcher_name", "overrides"), [("basic", [*GRID, "hydra.sweeper.n_jobs=100"])])
class TestLauncher(LauncherTestSuite):
    """The launcher suite's sweeps, each trial launched by Hydra's basic launcher through this sweeper."""


@pytest.mark.skip(
    reason="IntegrationTestSuite runs Hydra's sample apps in new processes, where hydra/sweeper=mnistlab_optuna "
    "is not in the ConfigStore (this file stores it in-process) and each app takes ~2 s to start: a dozen "
    "processes for what the in-process suites above already check of a sweeper (its jobs' dirs and names)"
)
def test_integration_suite() -> None:
    """hydra.test_utils.launcher_common_tests.IntegrationTestSuite: not run here (see the reason)."""
