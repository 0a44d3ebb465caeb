"""mnistlab: a Hydra + PyTorch Lightning experiment framework for image classification.

Nothing heavy is imported here so that ``python -m mnistlab.train --help`` stays fast. From Python::

    from mnistlab import train, sweep, evaluate, predict, predictor   # see mnistlab.api
"""

from mnistlab.core.lazy import lazy_exports

# train, evaluate and predict are the command modules, callable as the functions of mnistlab.api
__getattr__ = lazy_exports("mnistlab", {"sweep": "api", "predictor": "api"})

__version__ = "0.1.0"
