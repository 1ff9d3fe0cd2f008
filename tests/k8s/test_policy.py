"""Policy tests over the rendered manifests: what a JSON schema cannot say.

Each check_* function returns a list of violations (empty = compliant). The test_* functions run
them on every rendered kustomization, and test_policy_detects_violation runs each on deliberately
broken copies to show that it does fail.
"""

from __future__ import annotations

import posixpath
import re
from decimal import Decimal

import pytest

GPU = "nvidia.com/gpu"
IMAGES = {"cpu": "planespotter/api:0.1.0", "gpu": "planespotter/api-gpu:0.1.0"}
SERVING_CONTAINERS = {"api", "kserve-container"}
# PVCs and ServiceAccounts a kustomization uses but another one creates (see k8s/README.md).
EXTERNAL = {
    "batch/overlays/cpu": {"PersistentVolumeClaim/planespotter-models"},
    "batch/overlays/gpu": {"PersistentVolumeClaim/planespotter-models"},
    "batch/merge": {"PersistentVolumeClaim/planespotter-scores", "ServiceAccount/planespotter-score"},
}
MIN_STARTUP_BUDGET_S = 300  # slow model loads: the startup probe must wait at least this long

# Kubernetes resource.Quantity suffixes (k8s.io/apimachinery/pkg/api/resource/suffix.go).
_SUFFIX = {"": 1, "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": 10**3,
           "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def quantity(value) -> Decimal:
    """A Kubernetes quantity ("500m", "2Gi", 1) as a Decimal in base units (cores, bytes).

    Raises:
        ValueError: not a quantity with a known suffix.
    """
    m = _QUANTITY.match(str(value))
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return Decimal(m.group(1)) * _SUFFIX[m.group(2)]


# --------------------------------------------------------------------------- accessors

def workloads(docs):
    """(object, pod spec) of every Deployment, Job and InferenceService predictor."""
    for obj in docs:
        if obj["kind"] in ("Deployment", "Job"):
            yield obj, obj["spec"]["template"]["spec"]
        elif obj["kind"] == "InferenceService":
            yield obj, obj["spec"]["predictor"]


def containers(podspec, init=True):
    return list(podspec.get("containers", [])) + (list(podspec.get("initContainers", [])) if init else [])


def pod_labels(obj) -> dict:
    return obj["spec"]["template"]["metadata"].get("labels", {})


def selects(selector: dict, labels: dict) -> bool:
    """True when a non-empty label selector selects `labels`.

    `selector` is a LabelSelector ({matchLabels: ...}) or a plain map (Service selectors).
    matchExpressions are not used in k8s/ and count as no match, so that a new one gets a test.
    """
    if "matchLabels" in selector or "matchExpressions" in selector:
        if selector.get("matchExpressions"):
            return False
        selector = selector.get("matchLabels", {})
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def by_kind(docs, kind):
    return [o for o in docs if o["kind"] == kind]


def configmap(docs, name):
    found = [o for o in by_kind(docs, "ConfigMap") if o["metadata"]["name"] == name]
    return found[0] if found else None


def container_env(docs, container) -> dict:
    """The container's environment as the kubelet builds it: envFrom ConfigMaps, then env values."""
    env = {}
    for src in container.get("envFrom", []):
        cm = configmap(docs, src.get("configMapRef", {}).get("name"))
        if cm:
            env.update(cm.get("data", {}))
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", var.get("valueFrom"))
    return env


def named(obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


# --------------------------------------------------------------------------- checks

def check_gpu(docs, variant):
    """GPUs only in limits, exactly 1 per serving/scoring container, only in the GPU variant, with a
    GPU nodeSelector and the nvidia.com/gpu toleration there and neither elsewhere."""
    bad = []
    for obj, pod in workloads(docs):
        gpu_pod = False
        for c in containers(pod):
            res = c.get("resources", {})
            where = f"{named(obj)} container {c['name']}"
            if GPU in res.get("requests", {}):
                bad.append(f"{where}: {GPU} in requests (extended resources belong in limits)")
            gpus = res.get("limits", {}).get(GPU)
            if variant == "cpu" and gpus is not None:
                bad.append(f"{where}: {GPU} in a CPU variant")
            if variant == "gpu":
                is_main = c in pod.get("containers", []) and c["name"] in SERVING_CONTAINERS | {"score"}
                if is_main and str(gpus) != "1":
                    bad.append(f"{where}: limits {GPU} is {gpus!r}, expected 1")
                if not is_main and gpus is not None:
                    bad.append(f"{where}: {GPU} on a helper container")
                gpu_pod |= gpus is not None
        tolerates = any(t.get("key") == GPU and t.get("effect") == "NoSchedule"
                        and t.get("operator") == "Exists" for t in pod.get("tolerations", []))
        selector = pod.get("nodeSelector", {}).get(f"{GPU}.present") == "true"
        if gpu_pod and not (tolerates and selector):
            bad.append(f"{named(obj)}: GPU pod without the {GPU} toleration and GPU nodeSelector")
        if not gpu_pod and (tolerates or selector):
            bad.append(f"{named(obj)}: GPU toleration/nodeSelector on a pod without GPUs")
    return bad


def check_images(docs, variant):
    """Every image pinned by tag (not latest) or digest, and the variant's image."""
    bad = []
    for obj, pod in workloads(docs):
        for c in containers(pod):
            image = c.get("image", "")
            name = image.split("@")[0]
            tag = name.rsplit("/", 1)[-1].partition(":")[2]
            if "@sha256:" not in image and tag in ("", "latest"):
                bad.append(f"{named(obj)} container {c['name']}: image {image!r} not pinned")
            elif image != IMAGES[variant]:
                bad.append(f"{named(obj)} container {c['name']}: image {image!r}, expected {IMAGES[variant]!r}")
    return bad


def check_probes(docs):
    """Serving containers: startup and readiness probes on /readyz, liveness on /healthz (a
    different route), all on the container's HTTP port 8000; startup budget >= 5 minutes."""
    bad = []
    for obj, pod in workloads(docs):
        if obj["kind"] == "Job":
            continue
        for c in pod["containers"]:
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            paths = {}
            for kind, want in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"),
                               ("livenessProbe", "/healthz")):
                probe = c.get(kind)
                if not probe or "httpGet" not in probe:
                    bad.append(f"{named(obj)} container {c['name']}: no HTTP {kind}")
                    continue
                paths[kind] = probe["httpGet"].get("path")
                if paths[kind] != want:
                    bad.append(f"{named(obj)}: {kind} path {paths[kind]!r}, expected {want!r}")
                port = probe["httpGet"]["port"]
                if ports.get(port, port) != 8000 or (isinstance(port, str) and port not in ports):
                    bad.append(f"{named(obj)}: {kind} port {port!r} is not the container port 8000")
            if paths.get("readinessProbe") == paths.get("livenessProbe"):
                bad.append(f"{named(obj)}: readiness and liveness probe the same route")
            startup = c.get("startupProbe", {})
            budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
            if budget < MIN_STARTUP_BUDGET_S:
                bad.append(f"{named(obj)}: startup probe gives up after {budget} s")
    return bad


def check_availability(docs):
    """>= 2 replicas, RollingUpdate, pod anti-affinity on the pods' labels, a PDB allowing one
    disruption while keeping pods up, an autoscaling/v2 HPA on CPU and requests in flight."""
    bad = []
    for obj in by_kind(docs, "InferenceService"):
        if obj["spec"]["predictor"].get("minReplicas", 1) < 2:
            bad.append(f"{named(obj)}: minReplicas < 2")
    for dep in by_kind(docs, "Deployment"):
        replicas = dep["spec"].get("replicas", 1)
        labels = pod_labels(dep)
        if replicas < 2:
            bad.append(f"{named(dep)}: replicas {replicas} < 2")
        if dep["spec"].get("strategy", {}).get("type", "RollingUpdate") != "RollingUpdate":
            bad.append(f"{named(dep)}: strategy is not RollingUpdate")
        anti = dep["spec"]["template"]["spec"].get("affinity", {}).get("podAntiAffinity", {})
        terms = [t.get("podAffinityTerm", t) for t in
                 anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])
                 + anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])]
        if not any(selects(t.get("labelSelector", {}), labels) for t in terms):
            bad.append(f"{named(dep)}: no pod anti-affinity term selecting its own pods")
        pdbs = [p for p in by_kind(docs, "PodDisruptionBudget") if selects(p["spec"]["selector"], labels)]
        if not pdbs:
            bad.append(f"{named(dep)}: no PodDisruptionBudget selects its pods")
        for pdb in pdbs:
            spec = pdb["spec"]
            if "maxUnavailable" in spec and not (1 <= int(spec["maxUnavailable"]) < replicas):
                bad.append(f"{named(pdb)}: maxUnavailable {spec['maxUnavailable']} with {replicas} replicas")
            if "minAvailable" in spec and not (1 <= int(spec["minAvailable"]) < replicas):
                bad.append(f"{named(pdb)}: minAvailable {spec['minAvailable']} with {replicas} replicas")
        hpas = [h for h in by_kind(docs, "HorizontalPodAutoscaler")
                if h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                   "name": dep["metadata"]["name"]}]
        if len(hpas) != 1:
            bad.append(f"{named(dep)}: {len(hpas)} HPAs target it, expected 1")
        for hpa in hpas:
            spec = hpa["spec"]
            if hpa["apiVersion"] != "autoscaling/v2" or spec.get("minReplicas", 1) < 2 \
                    or spec["maxReplicas"] < spec.get("minReplicas", 1):
                bad.append(f"{named(hpa)}: needs autoscaling/v2 and 2 <= minReplicas <= maxReplicas")
            metrics = {(m["type"], (m.get("resource") or m.get("pods", {}).get("metric", {})).get("name"))
                       for m in spec.get("metrics", [])}
            for want in (("Resource", "cpu"), ("Pods", "planespotter_requests_in_flight")):
                if want not in metrics:
                    bad.append(f"{named(hpa)}: no {want[0]} metric {want[1]}")
    return bad


def check_security(docs):
    """Non-root, read-only root filesystem with an emptyDir /tmp, no privilege escalation, all
    capabilities dropped, no service account token, for every container including init containers."""
    bad = []
    accounts = {o["metadata"]["name"]: o for o in by_kind(docs, "ServiceAccount")}
    for obj, pod in workloads(docs):
        pod_sc = pod.get("securityContext", {})
        empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        if pod.get("automountServiceAccountToken") is not False:
            bad.append(f"{named(obj)}: pod mounts a service account token")
        sa = accounts.get(pod.get("serviceAccountName"))
        if sa is not None and sa.get("automountServiceAccountToken") is not False:
            bad.append(f"{named(sa)}: automountServiceAccountToken is not false")
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(key):
                bad.append(f"{named(obj)}: {key}")
        for c in containers(pod):
            sc = c.get("securityContext", {})
            where = f"{named(obj)} container {c['name']}"
            if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
                bad.append(f"{where}: runAsNonRoot is not true")
            if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
                bad.append(f"{where}: runAsUser 0")
            if sc.get("readOnlyRootFilesystem") is not True:
                bad.append(f"{where}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                bad.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                bad.append(f"{where}: privileged")
            caps = sc.get("capabilities", {})
            if "ALL" not in caps.get("drop", []) or caps.get("add"):
                bad.append(f"{where}: capabilities not dropped (drop: [ALL], no add)")
            if not any(m["mountPath"] == "/tmp" and m["name"] in empty_dirs for m in c.get("volumeMounts", [])):
                bad.append(f"{where}: no emptyDir at /tmp")
    return bad


def check_resources(docs):
    """CPU and memory requests and limits on every container, requests <= limits."""
    bad = []
    for obj, pod in workloads(docs):
        for c in containers(pod):
            res = c.get("resources", {})
            for res_name in ("cpu", "memory"):
                req = res.get("requests", {}).get(res_name)
                lim = res.get("limits", {}).get(res_name)
                if req is None or lim is None:
                    bad.append(f"{named(obj)} container {c['name']}: {res_name} request or limit missing")
                elif quantity(req) > quantity(lim):
                    bad.append(f"{named(obj)} container {c['name']}: {res_name} request {req} > limit {lim}")
    return bad


def check_selectors(docs):
    """Deployment, Service, PDB and NetworkPolicy selectors match the API pods' labels; the Service
    targets the container port named http (8000); the NetworkPolicy admits that port."""
    bad = []
    deps = by_kind(docs, "Deployment")
    for dep in deps:
        if not selects(dep["spec"]["selector"], pod_labels(dep)):
            bad.append(f"{named(dep)}: selector does not match its pod template labels")
    for svc in by_kind(docs, "Service"):
        targets = [d for d in deps if selects(svc["spec"].get("selector", {}), pod_labels(d))]
        if not targets:
            bad.append(f"{named(svc)}: selector matches no Deployment's pods")
        for dep in targets:
            ports = [p for c in dep["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])]
            for sp in svc["spec"]["ports"]:
                tp = sp.get("targetPort", sp["port"])
                hit = [p for p in ports if tp in (p.get("name"), p["containerPort"])]
                if not hit or hit[0]["containerPort"] != 8000 or hit[0].get("name") != "http":
                    bad.append(f"{named(svc)}: targetPort {tp!r} is not the container port http/8000")
    for pol in by_kind(docs, "NetworkPolicy"):
        targets = [d for d in deps if selects(pol["spec"]["podSelector"], pod_labels(d))]
        if not targets:
            bad.append(f"{named(pol)}: podSelector matches no Deployment's pods")
        ingress_ports = {p.get("port") for rule in pol["spec"].get("ingress", []) for p in rule.get("ports", [])}
        if not ingress_ports & {"http", 8000}:
            bad.append(f"{named(pol)}: ingress does not admit the http port")
    return bad


def check_references(docs, kustomization):
    """ConfigMaps, PVCs, ServiceAccounts and volumes that pods refer to exist (in the render, or
    created by another kustomization as listed in EXTERNAL)."""
    bad = []
    have = {named(o) for o in docs} | EXTERNAL.get(kustomization, set())
    for obj, pod in workloads(docs):
        sa = pod.get("serviceAccountName")
        if sa and f"ServiceAccount/{sa}" not in have:
            bad.append(f"{named(obj)}: ServiceAccount {sa} does not exist")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for v in volumes.values():
            if "configMap" in v and f"ConfigMap/{v['configMap']['name']}" not in have:
                bad.append(f"{named(obj)}: ConfigMap {v['configMap']['name']} does not exist")
            claim = v.get("persistentVolumeClaim", {}).get("claimName")
            if claim and f"PersistentVolumeClaim/{claim}" not in have:
                bad.append(f"{named(obj)}: PVC {claim} does not exist")
        for c in containers(pod):
            for src in c.get("envFrom", []):
                ref = src.get("configMapRef", {}).get("name")
                if f"ConfigMap/{ref}" not in have:
                    bad.append(f"{named(obj)} container {c['name']}: ConfigMap {ref} does not exist")
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    bad.append(f"{named(obj)} container {c['name']}: volume {m['name']} not declared")
    return bad


def check_config(docs, variant):
    """Settings reach the containers as env: the model at <mounted folder>/latest, TensorFlow's GPU
    memory growth on GPU only, one gunicorn worker per GPU and at most one per CPU core otherwise."""
    bad = []
    for obj, pod in workloads(docs):
        for c in pod["containers"]:
            if c["name"] not in SERVING_CONTAINERS | {"score"}:
                continue
            env = container_env(docs, c)
            where = f"{named(obj)} container {c['name']}"
            model_dir = env.get("PLANESPOTTER_MODEL_DIR")
            if not isinstance(model_dir, str) or posixpath.basename(model_dir) != "latest":
                bad.append(f"{where}: PLANESPOTTER_MODEL_DIR {model_dir!r} is not <models>/latest")
            elif obj["kind"] != "InferenceService" and not any(
                    model_dir.startswith(m["mountPath"].rstrip("/") + "/") for m in c.get("volumeMounts", [])):
                bad.append(f"{where}: PLANESPOTTER_MODEL_DIR {model_dir} is on no mounted volume")
            if env.get("HOME") != "/tmp":
                bad.append(f"{where}: HOME is not the writable /tmp")
            growth = env.get("TF_FORCE_GPU_ALLOW_GROWTH")
            if (variant == "gpu") != (growth == "true"):
                bad.append(f"{where}: TF_FORCE_GPU_ALLOW_GROWTH={growth!r} in a {variant} variant")
            if c["name"] in SERVING_CONTAINERS:
                workers = int(env.get("WEB_CONCURRENCY", 1))
                gpus = int(c["resources"]["limits"].get(GPU, 0))
                cpus = quantity(c["resources"]["limits"]["cpu"])
                if variant == "gpu" and workers != gpus:
                    bad.append(f"{where}: WEB_CONCURRENCY {workers} != {gpus} GPU(s)")
                if not 1 <= workers <= cpus:
                    bad.append(f"{where}: WEB_CONCURRENCY {workers} outside 1..{cpus} CPUs")
                if env.get("PORT") != "8000":
                    bad.append(f"{where}: PORT is not 8000")
    return bad


def check_indexed_job(docs):
    """The scoring Job is Indexed; --num-shards equals completions; pod I passes --shard-index I via
    $(JOB_COMPLETION_INDEX) and writes its own part-I-of-N.csv on a writable volume."""
    bad = []
    jobs = [j for j in by_kind(docs, "Job") if j["metadata"]["name"] == "planespotter-score"]
    if len(jobs) != 1:
        return [f"{len(jobs)} Jobs planespotter-score, expected 1"]
    job = jobs[0]
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    n = spec.get("completions")
    if spec.get("completionMode") != "Indexed" or not isinstance(n, int) or n < 1:
        bad.append("Job is not Indexed with completions >= 1")
    if not 1 <= spec.get("parallelism", 1) <= (n or 0):
        bad.append("parallelism outside 1..completions")
    if pod.get("restartPolicy") != "Never":
        bad.append("restartPolicy is not Never (needed for per-index backoff)")
    (c,) = pod["containers"]
    if c.get("command") != ["python", "-m", "model", "score"]:
        bad.append(f"command {c.get('command')} is not python -m model score")
    args = c.get("args", [])
    opts = dict(zip(args[::2], args[1::2]))
    if len(args) % 2 or set(opts) != {"--images", "--model-dir", "--out", "--num-shards", "--shard-index"}:
        bad.append(f"unexpected args {args}")
    if opts.get("--num-shards") != str(n):
        bad.append(f"--num-shards {opts.get('--num-shards')} != completions {n}")
    if opts.get("--shard-index") != "$(JOB_COMPLETION_INDEX)":
        bad.append("--shard-index is not $(JOB_COMPLETION_INDEX)")
    if posixpath.basename(opts.get("--out", "")) != f"part-$(JOB_COMPLETION_INDEX)-of-{n}.csv":
        bad.append(f"--out {opts.get('--out')} is not <dir>/part-$(JOB_COMPLETION_INDEX)-of-{n}.csv")
    env = {e["name"]: e for e in c.get("env", [])}
    ref = env.get("JOB_COMPLETION_INDEX", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    if ref != "metadata.annotations['batch.kubernetes.io/job-completion-index']":
        bad.append("JOB_COMPLETION_INDEX not taken from the completion-index annotation")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    out_dir = posixpath.dirname(opts.get("--out", ""))
    if out_dir not in mounts or mounts[out_dir].get("readOnly"):
        bad.append(f"output folder {out_dir} is not a writable volume mount")
    if opts.get("--images") not in mounts:
        bad.append(f"--images {opts.get('--images')} is not a volume mount")
    return bad


# --------------------------------------------------------------------------- tests

def test_gpu_policy(kustomization, k8s):
    assert check_gpu(k8s.render(kustomization), k8s.variant(kustomization)) == []


def test_images_pinned(kustomization, k8s):
    assert check_images(k8s.render(kustomization), k8s.variant(kustomization)) == []


def test_security(kustomization, k8s):
    assert check_security(k8s.render(kustomization)) == []


def test_resources(kustomization, k8s):
    assert check_resources(k8s.render(kustomization)) == []


def test_references(kustomization, k8s):
    assert check_references(k8s.render(kustomization), kustomization) == []


def test_config(kustomization, k8s):
    assert check_config(k8s.render(kustomization), k8s.variant(kustomization)) == []


def test_probes(serving_kustomization, k8s):
    assert check_probes(k8s.render(serving_kustomization)) == []


def test_availability(serving_kustomization, k8s):
    assert check_availability(k8s.render(serving_kustomization)) == []


def test_selectors(server_kustomization, k8s):
    assert check_selectors(k8s.render(server_kustomization)) == []


def test_indexed_job(batch_kustomization, k8s):
    assert check_indexed_job(k8s.render(batch_kustomization)) == []


def test_merge_job_reads_what_the_scoring_job_writes(k8s):
    """The merge Job lists the folder, on the same PVC, that the shard pods write to."""
    def volume_at(pod, container, path):
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == path]
        (vol,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        return vol["persistentVolumeClaim"]["claimName"]

    (score,) = by_kind(k8s.render("batch/overlays/cpu"), "Job")
    (merge,) = by_kind(k8s.render("batch/merge"), "Job")
    s_pod, m_pod = score["spec"]["template"]["spec"], merge["spec"]["template"]["spec"]
    s_args, m_args = s_pod["containers"][0]["args"], m_pod["containers"][0]["args"]
    out_dir = posixpath.dirname(s_args[s_args.index("--out") + 1])
    shards_dir = m_args[m_args.index("--shards-dir") + 1]
    assert shards_dir == out_dir
    assert volume_at(m_pod, m_pod["containers"][0], shards_dir) == volume_at(s_pod, s_pod["containers"][0], out_dir)


def test_cpu_and_gpu_overlays_render_the_same_objects(k8s):
    """Same kinds in the same order and the same replicas; node selection only on GPU."""
    cpu, gpu = k8s.render("overlays/cpu"), k8s.render("overlays/gpu")
    assert [o["kind"] for o in cpu] == [o["kind"] for o in gpu]
    (dc,), (dg,) = by_kind(cpu, "Deployment"), by_kind(gpu, "Deployment")
    assert dc["spec"]["replicas"] == dg["spec"]["replicas"]
    assert "nodeSelector" not in dc["spec"]["template"]["spec"]


# --------------------------------------------------------------------------- the checks can fail

def _deploy(docs):
    return by_kind(docs, "Deployment")[0]


def _api(docs):
    return _deploy(docs)["spec"]["template"]["spec"]["containers"][0]


def _set_image(docs, image):
    _api(docs)["image"] = image


def _score_args(docs):
    return by_kind(docs, "Job")[0]["spec"]["template"]["spec"]["containers"][0]["args"]


MUTATIONS = {
    "image tag latest": ("overlays/cpu", "images", lambda d: _set_image(d, "planespotter/api:latest"), "not pinned"),
    "image untagged": ("overlays/gpu", "images", lambda d: _set_image(d, "registry:5000/planespotter/api-gpu"), "not pinned"),
    "cpu image on gpu": ("overlays/gpu", "images", lambda d: _set_image(d, "planespotter/api:0.1.0"), "expected"),
    "gpu in requests": ("overlays/gpu", "gpu", lambda d: _api(d)["resources"]["requests"].update({GPU: 1}), "in requests"),
    "gpu in cpu overlay": ("overlays/cpu", "gpu", lambda d: _api(d)["resources"]["limits"].update({GPU: 1}), "CPU variant"),
    "two gpus": ("batch/overlays/gpu", "gpu", lambda d: by_kind(d, "Job")[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].update({GPU: 2}), "expected 1"),
    "no gpu toleration": ("overlays/gpu", "gpu", lambda d: _deploy(d)["spec"]["template"]["spec"].pop("tolerations"), "toleration"),
    "liveness on readyz": ("overlays/cpu", "probes", lambda d: _api(d)["livenessProbe"]["httpGet"].update(path="/readyz"), "same route"),
    "no startup probe": ("overlays/gpu", "probes", lambda d: _api(d).pop("startupProbe"), "no HTTP startupProbe"),
    "probe on wrong port": ("overlays/cpu", "probes", lambda d: _api(d)["readinessProbe"]["httpGet"].update(port=8080), "port"),
    "one replica": ("overlays/cpu", "availability", lambda d: _deploy(d)["spec"].update(replicas=1), "replicas 1 < 2"),
    "no pdb": ("overlays/gpu", "availability", lambda d: d.remove(by_kind(d, "PodDisruptionBudget")[0]), "no PodDisruptionBudget"),
    "hpa without custom metric": ("overlays/cpu", "availability", lambda d: by_kind(d, "HorizontalPodAutoscaler")[0]["spec"]["metrics"].pop(), "planespotter_requests_in_flight"),
    "runs as root": ("overlays/cpu", "security", lambda d: _api(d)["securityContext"].update(runAsNonRoot=False), "runAsNonRoot"),
    "writable root fs": ("examples/model-from-url", "security", lambda d: _deploy(d)["spec"]["template"]["spec"]["initContainers"][0]["securityContext"].pop("readOnlyRootFilesystem"), "readOnlyRootFilesystem"),
    "token mounted": ("batch/overlays/cpu", "security", lambda d: by_kind(d, "ServiceAccount")[0].pop("automountServiceAccountToken"), "automountServiceAccountToken"),
    "no memory limit": ("overlays/gpu", "resources", lambda d: _api(d)["resources"]["limits"].pop("memory"), "memory request or limit missing"),
    "request above limit": ("overlays/cpu", "resources", lambda d: _api(d)["resources"]["requests"].update(cpu="2500m"), "cpu request 2500m > limit"),
    "service selector typo": ("overlays/cpu", "selectors", lambda d: by_kind(d, "Service")[0]["spec"]["selector"].update({"app.kubernetes.io/component": "apl"}), "matches no Deployment"),
    "service wrong targetPort": ("overlays/gpu", "selectors", lambda d: by_kind(d, "Service")[0]["spec"]["ports"][0].update(targetPort=8080), "targetPort 8080"),
    "pdb selector typo": ("overlays/cpu", "availability", lambda d: by_kind(d, "PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "x"}), "no PodDisruptionBudget"),
    "missing configmap": ("overlays/cpu", "references", lambda d: d.remove(by_kind(d, "ConfigMap")[0]), "does not exist"),
    "two workers per gpu": ("overlays/gpu", "config", lambda d: by_kind(d, "ConfigMap")[0]["data"].update(WEB_CONCURRENCY="2"), "!= 1 GPU"),
    "tf growth on cpu": ("overlays/cpu", "config", lambda d: by_kind(d, "ConfigMap")[0]["data"].update(TF_FORCE_GPU_ALLOW_GROWTH="true"), "TF_FORCE_GPU_ALLOW_GROWTH"),
    "shards disagree": ("batch/overlays/cpu", "indexed_job", lambda d: by_kind(d, "Job")[0]["spec"].update(completions=8), "--num-shards 4 != completions 8"),
    "fixed shard index": ("batch/overlays/gpu", "indexed_job", lambda d: _score_args(d).__setitem__(-1, "0"), "--shard-index"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_policy_detects_violation(mutation, k8s):
    kustomization, check, mutate, expected = MUTATIONS[mutation]
    fn = globals()[f"check_{check}"]
    args = {"gpu": (k8s.variant(kustomization),), "images": (k8s.variant(kustomization),),
            "config": (k8s.variant(kustomization),), "references": (kustomization,)}.get(check, ())
    docs = k8s.render(kustomization)
    assert fn(docs, *args) == [], "the unmodified render must pass"
    mutate(docs)
    violations = fn(docs, *args)
    assert any(expected in v for v in violations), violations


def test_quantity():
    assert quantity("500m") == Decimal("0.5")
    assert quantity("2Gi") == 2 * 2**30
    assert quantity(1) == 1
    assert quantity("1e3") == 1000
    with pytest.raises(ValueError):
        quantity("2GB")


def test_monitoring_files_match_the_deployment_and_hpa(k8s):
    """The PodMonitor scrapes the API pods' /metrics on the http port, and prometheus-adapter's
    rule exports exactly the metric the HPA asks for."""
    import yaml

    docs = k8s.render("overlays/cpu")
    (dep,), (hpa,) = by_kind(docs, "Deployment"), by_kind(docs, "HorizontalPodAutoscaler")
    monitor = yaml.safe_load((k8s.K8S / "monitoring" / "podmonitor.yaml").read_text())
    assert selects(monitor["spec"]["selector"], pod_labels(dep))
    ports = {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert [(e["port"], e["path"]) for e in monitor["spec"]["podMetricsEndpoints"]] == [("http", "/metrics")]
    assert "http" in ports
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == ("8000", "/metrics")

    values = yaml.safe_load((k8s.K8S / "monitoring" / "prometheus-adapter-values.yaml").read_text())
    (rule,) = values["rules"]["custom"]
    (pods_metric,) = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert rule["name"]["as"] == pods_metric
    assert re.fullmatch(rule["name"]["matches"], pods_metric)
    assert rule["seriesQuery"].startswith(pods_metric + "{")
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
