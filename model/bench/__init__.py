"""The model's benchmarks; each writes its figures to a JSON file (never timed tests):

- :mod:`.score`: ``make score``'s images/s against the forward-pass and decode limits
  (``make bench-score``; ``python -m model.bench`` runs it);
- :mod:`.backbones`: each backbone's pooled-feature forward pass (``make bench-backbones``).

The HTTP server's benchmark and soak test are HTTP clients (``client/bench.py``: ``make bench-serve``,
``make soak``); they reuse :mod:`.score`'s payloads and limits.
"""
