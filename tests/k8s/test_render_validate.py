"""Every kustomization under k8s/ renders with `kubectl kustomize` and passes kubernetes-validate's
strict JSON-schema validation (unknown fields rejected) for two Kubernetes versions."""

from __future__ import annotations

import re

import pytest

# kind/name of what each kustomization renders (generated ConfigMaps without their hash suffix).
EXPECTED_OBJECTS = {
    "overlays/cpu": {
        "ServiceAccount/planespotter-api", "ConfigMap/planespotter-config", "Service/planespotter-api",
        "Deployment/planespotter-api", "PodDisruptionBudget/planespotter-api",
        "HorizontalPodAutoscaler/planespotter-api", "NetworkPolicy/planespotter-api",
        "PersistentVolumeClaim/planespotter-models",
    },
    "batch/overlays/cpu": {
        "ServiceAccount/planespotter-score", "ConfigMap/planespotter-config",
        "PersistentVolumeClaim/planespotter-images", "PersistentVolumeClaim/planespotter-scores",
        "Job/planespotter-score",
    },
    "batch/merge": {"ConfigMap/planespotter-merge-shards", "Job/planespotter-score-merge"},
    "kserve": {"InferenceService/planespotter"},
}
EXPECTED_OBJECTS["overlays/gpu"] = EXPECTED_OBJECTS["overlays/cpu"]
EXPECTED_OBJECTS["batch/overlays/gpu"] = EXPECTED_OBJECTS["batch/overlays/cpu"]
EXPECTED_OBJECTS["examples/model-from-url"] = (
    EXPECTED_OBJECTS["overlays/cpu"] - {"PersistentVolumeClaim/planespotter-models"}
    | {"ConfigMap/planespotter-fetch-model"})

HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


def kind_name(obj: dict) -> str:
    name = obj["metadata"]["name"]
    if obj["kind"] == "ConfigMap":
        name = HASH_SUFFIX.sub("", name)
    return f"{obj['kind']}/{name}"


def test_every_kustomization_is_rendered_and_validated(k8s):
    import yaml  # installed with kubernetes-validate by the k8s fixture if missing

    found = {}
    for path in k8s.K8S.rglob("kustomization.yaml"):
        found[path.parent.relative_to(k8s.K8S).as_posix()] = yaml.safe_load(path.read_text())["kind"]
    entry_points = {k for k, kind in found.items() if kind == "Kustomization"} - k8s.BASES
    assert entry_points == set(k8s.KUSTOMIZATIONS), "tests/k8s/conftest.py KUSTOMIZATIONS is out of date"
    assert k8s.BASES <= set(found)
    # `make k8s-validate` runs the CLI over the same set (less the KServe CRD object).
    mk = (k8s.REPO / "mk" / "k8s.mk").read_text().replace("\\\n", " ")
    listed = re.search(r"^K8S_KUSTOMIZATIONS\s*:=\s*(.*)$", mk, re.M).group(1).split()
    assert set(listed) == set(k8s.KUSTOMIZATIONS) - {"kserve"}


def test_renders_expected_objects(kustomization, k8s):
    objs = k8s.render(kustomization)
    names = [kind_name(o) for o in objs]
    assert len(names) == len(set(names)), f"duplicate objects: {names}"
    assert set(names) == EXPECTED_OBJECTS[kustomization]


def test_strict_schema_validation(validated_kustomization, k8s_version, k8s):
    kv = k8s.validator
    for obj in k8s.render(validated_kustomization):
        try:
            used = kv.validate(obj, k8s_version, strict=True)
        except kv.SchemaNotFoundError as exc:
            pytest.fail(f"{kind_name(obj)}: {exc.message}")
        except kv.ValidationError as exc:
            pytest.fail(f"{kind_name(obj)} invalid for Kubernetes {k8s_version} at "
                        f"{'.'.join(map(str, exc.path))}: {exc.message}")
        assert used == k8s_version


def test_kserve_predictor_matches_core_schemas(k8s_version, k8s):
    """No schema for the KServe CRD is bundled: check its pod-level parts against the core ones."""
    (isvc,) = k8s.render("kserve")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    predictor = isvc["spec"]["predictor"]
    for container in predictor["containers"]:
        k8s.validate_definition(container, "container-v1", k8s_version)
    for volume in predictor.get("volumes", []):
        k8s.validate_definition(volume, "volume-v1", k8s_version)
    k8s.validate_definition(predictor["securityContext"], "podsecuritycontext-v1", k8s_version)
    # The rest of the predictor is PodSpec fields plus KServe's component extension fields.
    podspec_fields = set(k8s.validator.schema_contents(
        f"kubernetes-json-schema/v{k8s_version}.0-local-strict/podspec-v1.json", k8s_version)["properties"])
    kserve_fields = {"minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "containerConcurrency",
                     "timeout", "canaryTrafficPercent", "logger", "batcher"}
    assert set(predictor) - podspec_fields - kserve_fields == set()


def test_strict_validation_rejects_typos_and_wrong_types(k8s):
    """The schema check can fail: a misspelt field and a wrong type are both rejected."""
    import jsonschema

    kv = k8s.validator
    (deploy,) = [o for o in k8s.render("overlays/gpu") if o["kind"] == "Deployment"]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    container["resource"] = container.pop("resources")  # typo
    with pytest.raises(kv.ValidationError, match="resource"):
        kv.validate(deploy, "1.30", strict=True)
    (deploy,) = [o for o in k8s.render("overlays/gpu") if o["kind"] == "Deployment"]
    deploy["spec"]["replicas"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(deploy, "1.37", strict=True)
    with pytest.raises(jsonschema.ValidationError):
        k8s.validate_definition({"name": "x", "imagePullPolicy": "IfNotPresent", "port": 1},
                                "container-v1", "1.30")
