"""mnistlab: a Hydra + PyTorch Lightning experiment framework for image classification.

Nothing heavy is imported here so that ``python -m mnistlab.train --help`` stays fast.
"""

__version__ = "0.1.0"
