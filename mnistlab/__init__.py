"""mnistlab: a Hydra + PyTorch Lightning experiment framework for image classification.

Nothing heavy is imported here so that ``python -m mnistlab.train --help`` stays fast. From Python::

    from mnistlab import train, sweep, evaluate, predict, predictor   # see mnistlab.api
    from mnistlab import runs, diff   # every run under a folder as a table; two runs side by side
"""

from mnistlab.core.lazy import lazy_exports

# train, evaluate and predict are the command modules, callable as the functions of mnistlab.api
# runs and diff compare recorded runs (mnistlab.analysis.run_table)
__getattr__ = lazy_exports(
    "mnistlab", {"sweep": "api", "predictor": "api", "runs": "analysis.run_table", "diff": "analysis.run_table"}
)

__version__ = "0.1.0"
