# synth/: labelled airliner images rendered on the CPU from Debian's FlightGear AI fleet.
# Included by the top-level Makefile, which defines PY, FLEET, SYNTH_DIR, PER_CLASS, RENDER_SIZE,
# SEED and the targets `venv`, `apt` (libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1) and `synth`.
#
#   make synth-fetch     apt-get download + unpack flightgear-data-ai into data/external (idempotent)
#   make synth-list      renderable (model, livery) pairs per manufacturer and ICAO type
#   make synth-other     like `synth`, plus the "Other" class (Embraer, CRJ, ATR, Dash 8, ...)
#                        into $(SYNTH_DIR)-other
#   make synth-sheet     contact sheet of 24 random renders: reports/figures/synth_contact_sheet.png
#   make test-synth      tests/synth (real package, tiny renders; about 20-40 s)

SYNTH_WORKERS ?= 2

.PHONY: synth-fetch synth-list synth-other synth-sheet test-synth

synth-fetch: venv apt
	$(PY) -m synth fetch --dest data/external

synth-list: synth-fetch
	$(PY) -m synth list --fleet $(FLEET) --include-other

synth-other: synth-fetch
	$(PY) -m synth render --fleet $(FLEET) --out $(SYNTH_DIR)-other --include-other \
	  --per-class $(PER_CLASS) --size $(RENDER_SIZE) --seed $(SEED) --workers $(SYNTH_WORKERS)

synth-sheet: venv
	$(PY) -m synth sheet --data $(SYNTH_DIR) --out reports/figures/synth_contact_sheet.png --n 24 --seed $(SEED)

test-synth: venv apt
	$(PY) -m pytest tests/synth -q
