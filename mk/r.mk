# r/: the R side as a living parity oracle (plumber reference server, rvest scraper, R client).
# Included by the main Makefile (which defines PY, PIP, STAMPS, PORT, the `venv` target and the
# `$(STAMPS)/apt-%.stamp` rule that installs APT_PKGS_<name> from Debian).
#   make r-deps                 R 4.2 from Debian + rpy2 3.5.17 in .venv (idempotent, stamped)
#   make r-serve PORT=8100      the R plumber server in the foreground (model: models/latest,
#                               or PLANESPOTTER_MODEL_DIR; bind host R_HOST, default 127.0.0.1)
#   make parity                 the parity suite (tests/r): writes reports/parity.json, exits 0
#                               only when every check holds (PARITY_MODEL_DIR=models/latest to
#                               use the trained model instead of the tiny test cascade)

# R from Debian only (no CRAN): reticulate reaches Keras in the venv, as R keras does underneath.
APT_PKGS_r := r-base-core r-cran-plumber r-cran-rvest r-cran-xml2 r-cran-reticulate r-cran-httr \
              r-cran-jsonlite r-cran-testthat r-cran-jpeg r-cran-png
RPY2_PIN := rpy2==3.5.17
R_HOST ?= 127.0.0.1
PARITY_ARGS ?=

.PHONY: r-deps r-serve parity

$(STAMPS)/r-deps.stamp: $(STAMPS)/apt-r.stamp $(VENV)/.installed
	$(PIP) install -q '$(RPY2_PIN)'
	$(PY) -c 'import rpy2.robjects as ro; print("rpy2 OK:", ro.r("R.version.string")[0])' 2>/dev/null
	Rscript -e 'for (p in c("plumber", "rvest", "reticulate", "httr", "jsonlite", "testthat", "jpeg", "png")) if (!requireNamespace(p, quietly = TRUE)) stop("R package missing: ", p)'
	@touch $@

r-deps: $(STAMPS)/r-deps.stamp  ## install R (Debian) and rpy2 for the R parity oracle

r-serve: r-deps  ## run the R plumber reference server in the foreground: make r-serve PORT=8100
	RETICULATE_PYTHON=$(abspath $(PY)) PLANESPOTTER_MODEL_DIR=$${PLANESPOTTER_MODEL_DIR:-$(LATEST)} \
	  Rscript r/serve.R --port $(PORT) --host $(R_HOST)

parity: venv r-deps  ## R vs Python parity suite (scraper, tensors, predictions, HTTP, R client): reports/parity.json
	RETICULATE_PYTHON=$(abspath $(PY)) $(PY) -m pytest tests/r -q $(PARITY_ARGS)
