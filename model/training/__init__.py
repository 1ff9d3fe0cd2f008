"""Training: everything that makes a model version, and nothing that serves one.

- :mod:`.train`: ``python -m model train`` — read the datasets, run the localizer, fit both
  stages, calibrate, evaluate, export (:func:`~.train.train`), in steps of their own:

  - :mod:`.config`: the settings (:class:`~.config.TrainConfig`) and the log line,
  - :mod:`.prepare`: rows, splits, pixels and the localizer's outputs; stage-2 leaves and targets,
  - :mod:`.fit`: the networks, by one of three paths:
    :mod:`.joint` (both stages at once on cached features, the default; ``--fine-tune`` trains
    the backbone's upper part on cached feature maps), :mod:`.full` (the whole backbone on
    augmented images, ``--full``, ``make train-full``), or the compact CNN / VGG16 trained whole
    per stage,
  - :mod:`.export`: calibration, the reference image (a test render the version recognises),
    the version folder,
  - :mod:`.card`: the model card, one function per section,
  - :mod:`.report`: the test-split report (``reports/metrics.json``, shared with ``python -m model evaluate``);

- :mod:`.recipe_r`: the R original's recipe exactly (``--recipe r-original``);
- :mod:`.sources`: leave-one-source-out evaluation of a recipe (``make eval-sources``);
- :mod:`.features`: the on-disk cache of frozen backbone features;
- :mod:`.augment`: photo-like views (Pillow) and Keras-layer augmentation;
- :mod:`.weighting`: class, family, domain and source weights;
- :mod:`.calibration`: temperature scaling;
- :mod:`.tracking`: every run logged to MLflow's local store (``mlruns/``, ``make runs``).

The networks are :mod:`model.backbones`; what serving and scoring import lives at :mod:`model`
itself and never imports this package (``pyproject.toml``'s import-linter contracts).
"""
