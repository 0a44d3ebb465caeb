"""The sweep report, one module per job: ``factors`` (what the sweep varied), ``aggregate`` (the numbers),
``markdown`` (the sections of report.md), ``plots`` (the PNGs), ``search`` (the section of an
``hparams_search``) and ``report`` (``write_report``: every file of it in the sweep dir).

The report ranks every run of a sweep by val/acc_best and shows the factors the sweep varied (a value that only
came with a preset is shown with its factor: ``optim (lr)``); with seeds or folds, each configuration's mean ± sd
and 95 % interval, main effects with intervals, pairwise comparisons with Holm's correction and a verdict in
words; the interaction of two factors; plots. Output in the sweep dir: ``report.md``, ``runs.csv``,
``main_effects.png``, ``interaction.png``, ``val_curves.png`` (and for a search ``searched_parameters.png``,
``search_history.png``).
"""
