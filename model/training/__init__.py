"""Training: everything that makes a model version, and nothing that serves one.

- :mod:`.train`: ``python -m model train`` — read the datasets, run the localizer, fit both
  stages, calibrate, evaluate, export (:class:`~.train.TrainConfig`, :func:`~.train.train`);
  it dispatches to the three training paths:

  - :mod:`.joint`: both stages at once on cached features (the default; ``--fine-tune`` trains
    the backbone's upper part on cached feature maps),
  - :mod:`.full`: the whole backbone on augmented images (``--full``, ``make train-full``),
  - the compact CNN / VGG16 trained whole per stage (in :mod:`.train`);

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
