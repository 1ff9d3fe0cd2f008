"""Importers that turn labelled photo collections into datasets of the shared schema.

``python -m ingest {csv,real-airliners,fgvc} ...`` (see ``--help``) writes ``<out>/metadata.csv``
with the columns of :data:`dataset.schema.COLUMNS`. Images are **referenced in place**:
``image_path`` is the path of the original file relative to ``<out>`` (POSIX), never a copy, so
photos whose licence forbids redistribution (``../shared/data/real-airliners``, FGVC-Aircraft)
stay where they are.

Modules:

* :mod:`ingest.core` — the pipeline every importer shares: label normalisation and validation,
  file checks (sha256, size, pHash, crop box) with a cache by sha256, near-duplicates, airframe
  groups, stratified group splits, the atomic write, the "up to date" check and the summary.
* :mod:`ingest.splits` — near-duplicate pairs, union-find groups, the stratified group split.
* :mod:`ingest.csvimport` — any folder + CSV, with column-name recognition.
* :mod:`ingest.real_airliners` — the preset for ``../shared/data/real-airliners``.
* :mod:`ingest.fgvc` — FGVC-Aircraft 2013b (its own splits; optional download).
"""
