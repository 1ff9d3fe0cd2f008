"""HTTP clients of the planespotter service: ``python -m client smoke|bench|bench-sweep|soak``.

- :mod:`client.server`: a real gunicorn server on a free loopback port (also the tests' fixture);
- :mod:`client.smoke`: classify a folder of photos through it and print a table (``make serve-smoke``);
- :mod:`client.bench`: throughput and latency, micro-batching sweep, soak (``make bench-serve``,
  ``make bench-sweep``, ``make soak``).

The service runs in its own process, named by a string (``"api:create_app()"``): this package
never imports :mod:`api` (an import-linter contract). It may import :mod:`model` for the
in-process ``limit`` rows of the benchmark.
"""
