"""The experiment side of stnkit: everything that reproduces the paper, built on the core library.

* :mod:`stnkit.experiments.data`: digit sources (IDX, download, embedded sample), distortions, data sets;
* :mod:`stnkit.experiments.models`: the paper's models (registry);
* :mod:`stnkit.experiments.tasks`: the experiments as plug-ins (data, step, evaluation, metrics,
  recipe, pictures, the paper's numbers), one registry;
* :mod:`stnkit.experiments.train`: config, the trainer (generic over tasks), checkpoints, evaluation, DDP;
* :mod:`stnkit.experiments.viz`: panels, training animation, reports;
* :mod:`stnkit.experiments.listing` and :mod:`stnkit.experiments.cli`: the ``stnkit`` command.

Layering: this package imports the core (``stnkit.coords``, ``stnkit.transforms``, ``stnkit.sample``,
``stnkit.warp``, ``stnkit.SpatialTransformer``, ...); the core never imports this package
(``tests/test_layering.py``; ``docs/design.md`` says what may import what inside it).
"""
