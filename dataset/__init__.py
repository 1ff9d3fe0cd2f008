"""The data contract shared by every part of planespotter (the ground floor of the layers).

* :mod:`dataset.schema` — the metadata CSV columns, splits, manufacturers and the family table;
* :mod:`dataset.labels` — the label taxonomy (type strings → manufacturer / ICAO type / sub-model,
  ``type_rules.json``, also read by ``r/scrape.R``);
* :mod:`dataset.metadata` — reading and atomically writing ``metadata.csv`` (:class:`~dataset.metadata.SchemaError`);
* :mod:`dataset.images` — content hashes (sha256, pHash), metadata stripping of stored photos;
* :mod:`dataset.duplicates` — near-duplicate pairs (pHash Hamming distance) and their groups;
* :mod:`dataset.decode` — the project's one image decoder (JPEG/PNG/WebP → RGB, DCT-scaled JPEG
  decoding, crop boxes);
* :mod:`dataset.eda` — the EDA report of a metadata CSV.

The sources (``scrape``, ``synth``, ``ingest``) write datasets with it, ``model`` and ``api`` read
them; ``dataset`` itself imports none of those packages (``pyproject.toml``'s import contracts).
"""
