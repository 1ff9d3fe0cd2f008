# scrape/: the polite, resumable planespotters.net crawler and the EDA report.
# Included by the main Makefile (which defines PY and the `venv` target).
#   make scrape CONTACT=you@example.org [BASE_URL=https://www.planespotters.net/] [PAGES=1]
#               [LISTING="/photos/aircraft/Airbus/A220-100 /photos/latest"] [SCRAPE_OUT=data/raw/planespotters]
#   make eda [CSV=path/metadata.csv] [EDA_OUT=reports/eda.md]
CONTACT ?=
BASE_URL ?=
PAGES ?= 1
LISTING ?=
SCRAPE_OUT ?= data/raw/planespotters
CSV ?= $(if $(wildcard data/raw/synth/metadata.csv),data/raw/synth/metadata.csv,$(SCRAPE_OUT)/metadata.csv)
EDA_OUT ?= reports/eda.md

.PHONY: scrape eda

scrape: venv
	@test -n "$(CONTACT)" || { echo "make scrape: set CONTACT=you@example.org (a contact for the User-Agent; the crawler refuses to run without one)" >&2; exit 2; }
	$(PY) -m scrape crawl --contact "$(CONTACT)" $(if $(BASE_URL),--base-url "$(BASE_URL)") \
	  --pages $(PAGES) --out "$(SCRAPE_OUT)" $(foreach l,$(LISTING),--listing "$(l)")

eda: venv
	$(PY) -m scrape eda "$(CSV)" --out "$(EDA_OUT)"
