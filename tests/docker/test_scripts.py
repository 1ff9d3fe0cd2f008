"""The helper scripts of docker/: requirements swap, argument checks, the engine's idempotence."""

from __future__ import annotations

import subprocess
import sys
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
