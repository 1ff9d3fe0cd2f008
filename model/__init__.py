"""The two-stage airliner cascade, laid out by stage (README, "The pieces, briefly").

At this level: what serving and scoring import — :mod:`.preprocessing`, :mod:`.cascade`,
:mod:`.localize`, :mod:`.io`, :mod:`.data`, :mod:`.score`, :mod:`.evaluate`, :mod:`.metrics`,
:mod:`.negatives`, :mod:`.suspects` — and the command line (``python -m model``). Below it:
:mod:`.backbones` (every network), :mod:`.training` (everything that makes a version, tracked in
MLflow) and :mod:`.bench` (benchmarks). The import rules between them are import-linter contracts
in ``pyproject.toml``.
"""
