# ingest/: labelled photo collections → datasets of the shared schema, images referenced in place
# (never copied: image_path is relative to the dataset folder). Included by the main Makefile
# (which defines PY, SHARED and the `venv` target).
#
#   make import-real [REAL_DATA=../shared/data/real-airliners]
#        the 4,661 real photos -> data/raw/real-airliners/metadata.csv (idempotent: an unchanged
#        input is not rewritten; pHashes cached by sha256 in data/processed/)
#   make import-other [OTHER_DATA=../shared/data/other-aircraft]
#        932 photos of other makers' aircraft -> data/raw/other-aircraft/metadata.csv (manufacturer Other)
#   make import-fgvc [FGVC_ROOT=data/external/fgvc-aircraft] [DOWNLOAD=1]
#        FGVC-Aircraft 2013b -> data/raw/fgvc/metadata.csv (DOWNLOAD=1 fetches the 2.75 GB archive)
FGVC_ROOT ?= data/external/fgvc-aircraft
FGVC_OUT  ?= data/raw/fgvc
DOWNLOAD  ?= 0

.PHONY: import-real import-other import-fgvc

import-real: venv  ## import ../shared/data/real-airliners in place -> data/raw/real-airliners/metadata.csv
	time $(PY) -m ingest real-airliners --root "$(REAL_DATA)" --out "$(REAL_OUT)"

import-other: venv  ## import ../shared/data/other-aircraft in place -> data/raw/other-aircraft/metadata.csv (manufacturer Other)
	time $(PY) -m ingest other-aircraft --root "$(OTHER_DATA)" --out "$(OTHER_OUT)"

$(OTHER_OUT)/metadata.csv: | venv
	$(PY) -m ingest other-aircraft --root "$(OTHER_DATA)" --out "$(OTHER_OUT)"

import-fgvc: venv  ## import FGVC-Aircraft in place -> data/raw/fgvc/metadata.csv (DOWNLOAD=1 to fetch it)
	$(PY) -m ingest fgvc --root "$(FGVC_ROOT)" --out "$(FGVC_OUT)" $(if $(filter 1,$(DOWNLOAD)),--download)
