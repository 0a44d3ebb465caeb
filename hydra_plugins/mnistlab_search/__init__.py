"""Hydra accepts sweepers defined in the ``hydra_plugins`` namespace only: mnistlab's Optuna sweeper
(``mnistlab.search.sweeper``) as Hydra sees it."""

from mnistlab.search import sweeper


class OptunaSweeper(sweeper.OptunaSweeper):
    __doc__ = sweeper.__doc__
