"""The helper scripts of docker/: requirements swap, argument checks, the engine's idempotence;
and what `make test` and `make clean-docker` do with the engine (on a second, private engine)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "docker"
PYPROJECT = REPO / "pyproject.toml"


def requirements(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DOCKER_DIR / "requirements.py"), *args],
                          capture_output=True, text=True)


def test_requirements_swap_tensorflow_cpu_for_the_gpu_build():
    cpu = requirements(str(PYPROJECT)).stdout.splitlines()
    gpu = requirements(str(PYPROJECT), "--tensorflow", "tensorflow[and-cuda]==2.21.*").stdout.splitlines()
    assert any(r.startswith("tensorflow-cpu") for r in cpu)
    assert "tensorflow[and-cuda]==2.21.*" in gpu
    assert not any(r.lower().replace("_", "-").startswith("tensorflow-cpu") for r in gpu)
    assert [r for r in cpu if not r.startswith("tensorflow-cpu")] == [r for r in gpu if not r.startswith("tensorflow[")]


def test_requirements_errors_are_clear(tmp_path: Path):
    empty = tmp_path / "pyproject.toml"
    empty.write_text('[project]\nname = "x"\n')
    proc = requirements(str(empty))
    assert proc.returncode == 2 and "no [project].dependencies" in proc.stderr
    no_tf = tmp_path / "other.toml"
    no_tf.write_text('[project]\nname = "x"\ndependencies = ["flask>=3"]\n')
    proc = requirements(str(no_tf), "--tensorflow", "tensorflow==2.21.*")
    assert proc.returncode == 2 and "no tensorflow-cpu requirement" in proc.stderr


def test_build_model_rejects_a_folder_that_is_not_a_model_version(tmp_path: Path):
    proc = subprocess.run([str(DOCKER_DIR / "build.sh"), "model", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "not a model version folder" in proc.stderr


@pytest.mark.docker
def test_engine_start_is_idempotent(engine):
    pidfile = Path(engine["DOCKER_HOST"].removeprefix("unix://")).with_name("dockerd.pid")
    pid = pidfile.read_text().strip()
    again = subprocess.run([str(DOCKER_DIR / "engine.sh"), "start"], capture_output=True, text=True, check=True)
    assert f"export DOCKER_HOST={engine['DOCKER_HOST']}" in again.stdout
    assert "reusing the running engine" in again.stderr
    assert pidfile.read_text().strip() == pid
    assert subprocess.run([str(DOCKER_DIR / "engine.sh"), "status"]).returncode == 0


# ---- `make test` and `make clean-docker` with the engine ------------------------------------
# They run against a private engine (its own data root, socket and client config; no bridge and
# no iptables rules, so it can run beside the main engine that the other container tests use).

@pytest.fixture
def private_engine(tmp_path):
    """Environment for a private engine under a fresh /var/tmp/ps-eng-* root (short: the socket
    path must fit in 108 bytes); the engine is stopped and its root removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="ps-eng-", dir="/var/tmp"))
    env = {**os.environ, "PLANESPOTTER_DOCKER_ROOT": str(root),
           "PLANESPOTTER_DOCKER_CONFIG": str(tmp_path / "docker-config"),
           "PLANESPOTTER_DOCKERD_ARGS": "--bridge=none --iptables=false",
           "PLANESPOTTER_DOCKER_ENGINE": "local"}
    yield env, root
    subprocess.run([str(DOCKER_DIR / "engine.sh"), "clean"], env=env, capture_output=True, timeout=120)
    shutil.rmtree(root, ignore_errors=True)


def engine(env: dict, command: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(DOCKER_DIR / "engine.sh"), command], env=env, capture_output=True, text=True,
                          timeout=300)


def dockerd_pids(root: Path) -> list[int]:
    """Process ids of every dockerd whose command line names ``root`` (its data root)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and argv and argv[0].endswith(b"dockerd") and any(str(root).encode() in a for a in argv):
            pids.append(int(proc.name))
    return pids


def make_test(env: dict, tmp_path: Path, *variables: str) -> subprocess.CompletedProcess:
    """The real `make test` recipe on one quick container test that starts the engine (its set-up
    targets -o'd: the outer run installed them; its reports in tmp_path)."""
    cmd = ["make", "-s", "-C", str(REPO), "-o", "venv", "-o", "test-deps", "test", "TEST_AREAS=docker",
           "PYTEST_ARGS=-q -p no:cacheprovider -m docker -k test_engine_start_is_idempotent",
           f"REPORTS={tmp_path / 'reports'}", *variables]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.docker
def test_make_test_stops_the_engine_it_started(private_engine, tmp_path):
    env, root = private_engine
    assert engine(env, "status").returncode != 0
    proc = make_test(env, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "tests: 1 passed, 0 failed" in proc.stdout  # the engine was started and used
    assert engine(env, "status").returncode != 0
    assert dockerd_pids(root) == [] and not (root / "dockerd.pid").exists()
    assert f"docker data root {root}: " in proc.stdout  # its size, printed at the end


@pytest.mark.docker
def test_keep_docker_and_an_engine_already_running_are_left_alone(private_engine, tmp_path):
    env, root = private_engine
    kept = make_test(env, tmp_path, "KEEP_DOCKER=1")
    assert kept.returncode == 0, (kept.stdout + kept.stderr)[-4000:]
    assert "KEEP_DOCKER=1" in kept.stdout
    assert engine(env, "status").returncode == 0
    pid = int((root / "dockerd.pid").read_text())
    assert dockerd_pids(root) == [pid]
    # the engine now runs before `make test` starts: it is left running, same process
    again = make_test(env, tmp_path)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert "was running before: left running" in again.stdout
    assert engine(env, "status").returncode == 0 and dockerd_pids(root) == [pid]
    assert f"docker data root {root}: " in again.stdout


@pytest.mark.docker
def test_make_clean_docker_removes_images_and_data_root(private_engine, tmp_path):
    env, root = private_engine
    assert "clean-docker" in subprocess.run(["make", "-s", "-C", str(REPO), "help"], capture_output=True,
                                            text=True, timeout=60).stdout
    started = engine(env, "start")
    assert started.returncode == 0, started.stderr
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "hello").write_text("hi\n")
    tar = subprocess.run(["tar", "-C", str(tmp_path / "rootfs"), "-cf", "-", "."], capture_output=True, check=True)
    client = {**env, "DOCKER_HOST": f"unix://{root}/docker.sock", "DOCKER_CONFIG": str(tmp_path / "docker-config")}
    subprocess.run(["docker", "import", "-", "planespotter/clean-test:1"], input=tar.stdout, env=client,
                   capture_output=True, check=True, timeout=120)
    assert (root / "data").is_dir() and dockerd_pids(root)
    proc = subprocess.run(["make", "-s", "-C", str(REPO), "clean-docker"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not root.exists()  # images, containers and build cache went with it
    assert dockerd_pids(root) == [] and engine(env, "status").returncode != 0
