# api/ and client/: the serving benchmark and soak (client/bench.py, HTTP clients of the server) and
# what the API tests need.
# Included by the main Makefile (which defines PY, STAMPS, the apt stamp rule and the `venv` target;
# `make serve` is defined there).
#
#   make bench-serve [PEER=plumber=http://127.0.0.1:8100/names] [BENCH_WIDTHS=800,4000,6000] [BENCH_ARGS=...]
#        throughput and p50/p99 at concurrency 1,4,8,16 on loopback for each payload width (the
#        smoke photos at most 800 px wide, or exactly 4000 / 6000 px: camera files) + the
#        in-process `limit` rows (forward alone; decode + forward) per width
#        -> reports/bench/serve.json (model: models/latest if it exists, else the tiny test model)
#   make bench-sweep      micro-batching settings at concurrency 8 and 16 -> reports/bench/serve_sweep.json
#   make soak [SOAK_REQUESTS=10000] [SOAK_CONCURRENCY=8]
#        0 errors and worker RSS growth < 10 % -> reports/bench/soak.json
#   make api-deps         Debian chromium + chromium-driver (the web page test) and the API's PyPI
#                         packages; `make test` pulls it in through test-deps

PEER ?=
BENCH_ARGS ?=
SOAK_REQUESTS ?= 10000
SOAK_CONCURRENCY ?= 8
API_PIP_SPECS := 'apispec>=6.6,<7' 'apispec-webframeworks>=1.2,<2' 'swagger-ui-bundle>=1.1,<2' \
	'openapi-spec-validator>=0.7,<0.10' 'schemathesis>=4,<5' 'selenium>=4.20,<5'
API_PIP_STAMP := .venv/.api-deps.stamp
APT_PKGS_api := chromium chromium-driver

.PHONY: bench-serve bench-sweep soak api-deps

# The R plumber reference server joins as a peer (same model, same POST loop) when R is installed
# (make r-deps); R_PEER=0 leaves it out.
R_PEER ?= $(if $(shell command -v Rscript 2>/dev/null),1,0)
bench-serve: venv
	$(PY) -m client bench --out reports/bench/serve.json $(foreach p,$(PEER),--peer "$(p)") \
	  --payload-width $(BENCH_WIDTHS) $(if $(filter 1,$(R_PEER)),--r-peer) $(BENCH_ARGS)

bench-sweep: venv
	$(PY) -m client bench-sweep --out reports/bench/serve_sweep.json

soak: venv
	$(PY) -m client soak --requests $(SOAK_REQUESTS) --concurrency $(SOAK_CONCURRENCY) --out reports/bench/soak.json

$(API_PIP_STAMP): | venv
	$(PY) -m pip install -q $(API_PIP_SPECS)
	@touch $@

api-deps: $(API_PIP_STAMP) $(STAMPS)/apt-api.stamp

test-deps: api-deps
