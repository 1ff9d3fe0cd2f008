# synth/: labelled airliner images rendered on the CPU from Debian's FlightGear AI fleet.
# Included by the top-level Makefile, which defines PY, FLEET, SYNTH_DIR, PER_CLASS, RENDER_SIZE,
# SEED and the targets `venv`, `apt` (libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1) and `synth`.
#
#   make synth-fetch     apt-get download + unpack flightgear-data-ai into data/external (idempotent)
#   make synth-list      renderable (model, livery) pairs per manufacturer and ICAO type
#   make synth-other     like `synth`, plus the "Other" class (Embraer, CRJ, ATR, Dash 8, ...)
#                        into $(SYNTH_DIR)-other
#   make synth-sheet     contact sheet of 24 random renders: reports/figures/synth_contact_sheet.png
#   make synth-composite the renders (with their masks) pasted onto backgrounds cut from the TRAIN
#                        photos of data/raw/real-airliners (`make import-real`) into
#                        $(SYNTH_DIR)-composite [PER_RENDER=1]; internal training only (the photos'
#                        licence restrictions carry over); then a contact sheet of 48 composites:
#                        reports/figures/synth_composite_contact_sheet.png
#   make test-synth      tests/synth (real package, tiny renders; about 20-40 s)

SYNTH_WORKERS ?= 2
PER_RENDER    ?= 1

.PHONY: synth-fetch synth-list synth-other synth-sheet synth-composite test-synth

synth-fetch: venv apt
	$(PY) -m synth fetch --dest data/external

synth-list: synth-fetch
	$(PY) -m synth list --fleet $(FLEET) --include-other

synth-other: synth-fetch
	$(PY) -m synth render --fleet $(FLEET) --out $(SYNTH_DIR)-other --include-other \
	  --per-class $(PER_CLASS) --size $(RENDER_SIZE) --seed $(SEED) --workers $(SYNTH_WORKERS)

synth-sheet: venv
	$(PY) -m synth sheet --data $(SYNTH_DIR) --out reports/figures/synth_contact_sheet.png --n 24 --seed $(SEED)

# `synth` (the main Makefile's idempotent render) also adds the masks to a render made without them.
synth-composite: synth $(REAL_OUT)/metadata.csv  ## renders pasted onto real TRAIN-photo backgrounds -> data/raw/synth-composite
	time $(PY) -m synth composite --renders $(SYNTH_DIR) --backgrounds $(REAL_OUT) --out $(COMPOSITE_DIR) \
	  --per-render $(PER_RENDER) --size $(RENDER_SIZE) --seed $(SEED) --workers $(SYNTH_WORKERS)
	$(PY) -m synth sheet --data $(COMPOSITE_DIR) --out reports/figures/synth_composite_contact_sheet.png --n 48 --seed $(SEED)

$(REAL_OUT)/metadata.csv: | venv
	$(MAKE) --no-print-directory import-real

test-synth: venv apt
	$(PY) -m pytest tests/synth -q

$(COMPOSITE_DIR)/metadata.csv: | venv
	$(MAKE) --no-print-directory synth-composite
