"""Container test harness: a local Docker engine, the images built for real, pytest-docker compose.

The engine is Debian's docker.io started by ``docker/engine.sh`` (no systemd, no registry here);
the base image comes from ``docker/base.sh`` and the images from ``docker/build.sh`` — the same
scripts ``make docker-base`` / ``make docker-build`` run. Tests that need the engine carry the
``docker`` marker (``pytest -m docker`` selects them, ``-m "not docker"`` skips them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
from pytest_docker.plugin import get_docker_services

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "docker"
COMPOSE_PROJECT = "planespotter-test"
# Labels every container started here, so a test run can clean up after itself (by label).
TEST_LABEL = "org.planespotter.test=1"


def pytest_configure(config):
    config.addinivalue_line("markers", "docker: needs the local Docker engine (docker/engine.sh); builds images")


def run(cmd: list[str], timeout: float = 900, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """subprocess.run with text output captured; on failure the error carries stdout/stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
                             f"\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def engine() -> dict[str, str]:
    """Start (or reuse) the engine; put its DOCKER_HOST/DOCKER_CONFIG/DOCKER in os.environ."""
    out = run([str(DOCKER_DIR / "engine.sh"), "start"], timeout=300).stdout
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if line.startswith("export "))
    assert "DOCKER" in env, out
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        # containers an interrupted earlier run left behind
        leftovers = _docker("ps", "-aq", "--filter", f"label={TEST_LABEL}").stdout.split()
        if leftovers:
            _docker("rm", "-f", "-v", *leftovers, check=False)
        yield env


def _docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``$DOCKER args...`` (after the ``engine`` fixture has set the environment)."""
    return run([os.environ["DOCKER"], *args], timeout=timeout, check=check)


@pytest.fixture(scope="session")
def docker(engine):
    """``docker(*args, timeout=600, check=True)``: run the engine's docker CLI, output captured."""
    return _docker


@pytest.fixture(scope="session")
def base_image(engine) -> str:
    run([str(DOCKER_DIR / "base.sh")], timeout=900)
    return "python:3.11-slim"


def _build(*args: str) -> str:
    return run([str(DOCKER_DIR / "build.sh"), *args], timeout=1800).stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def cpu_image(base_image) -> str:
    """planespotter/api:<version>, built by docker/build.sh cpu (layers cached between runs)."""
    return _build("cpu")


@pytest.fixture(scope="session")
def gpu_image(base_image) -> str:
    """planespotter/api-gpu:<version> (CUDA TensorFlow; several GB; cached between runs)."""
    return _build("gpu")


@pytest.fixture(scope="session")
def container_models(tiny_model_dir) -> Path:
    """A models folder (``<version>/`` + relative ``latest`` symlink) that the image's non-root
    user can read: pytest's temporary folders are 0700, so the tiny model is copied out to a
    world-readable temporary folder (removed at the end of the session)."""
    root = Path(tempfile.mkdtemp(prefix="planespotter-container-models-"))
    shutil.copytree(tiny_model_dir, root / tiny_model_dir.name)
    (root / "latest").symlink_to(tiny_model_dir.name)
    for p in [root, *root.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def baked_image(cpu_image, tiny_model_dir) -> str:
    """The CPU image with the tiny model baked in (docker/Dockerfile.model via build.sh model),
    from the version folder as model/io.py wrote it (private modes: the bake must fix them)."""
    return _build("model", str(tiny_model_dir), cpu_image)


class Container:
    """A detached container publishing port 8000 on a random loopback port.

    Args: image; args: extra ``docker run`` options; command: arguments after the image.
    """

    def __init__(self, image: str, args: tuple[str, ...] = (), command: tuple[str, ...] = ()):
        self.id = _docker("run", "-d", "--label", TEST_LABEL, "-p", "127.0.0.1::8000", *args, image,
                         *command).stdout.strip()
        self.started = time.monotonic()
        host_port = _docker("port", self.id, "8000/tcp").stdout.split()[0]
        self.url = "http://" + host_port.replace("0.0.0.0", "127.0.0.1")

    def state(self) -> dict:
        import json

        return json.loads(_docker("inspect", "--format", "{{json .State}}", self.id).stdout)

    def logs(self) -> str:
        proc = _docker("logs", self.id, check=False)
        return proc.stdout + proc.stderr

    def wait_ready(self, timeout: float = 240) -> float:
        """Poll /readyz until 200; returns seconds since ``docker run``. Raises with the logs."""
        while time.monotonic() - self.started < timeout:
            if not self.state()["Running"]:
                raise AssertionError(f"container exited: {self.state()}\n{self.logs()[-4000:]}")
            try:
                if requests.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - self.started
            except requests.RequestException:  # refused, reset or slow while starting
                pass
            time.sleep(0.25)
        raise AssertionError(f"{self.url}/readyz not 200 within {timeout}s\n{self.logs()[-4000:]}")

    def remove(self) -> None:
        _docker("rm", "-f", "-v", self.id, check=False)


@pytest.fixture
def container_factory(engine):
    """Start containers with :class:`Container`; all removed at the end of the test."""
    started: list[Container] = []

    def start(*a, **kw) -> Container:
        c = Container(*a, **kw)
        started.append(c)
        return c

    yield start
    for c in started:
        c.remove()


# ---- pytest-docker: docker/compose.yaml, started once per session ----------------------------

@pytest.fixture(scope="session")
def docker_compose_command(engine) -> str:
    return f'"{engine["DOCKER"]}" compose'


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(DOCKER_DIR / "compose.yaml")


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return COMPOSE_PROJECT


@pytest.fixture(scope="session")
def docker_setup(cpu_image, container_models):
    """Compose reads these: the freshly built image, the tiny model volume, a random port."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"PLANESPOTTER_IMAGE": cpu_image, "PLANESPOTTER_MODELS": str(container_models),
                           "PLANESPOTTER_BIND": "127.0.0.1", "PLANESPOTTER_PORT": ""}.items():
            mp.setenv(key, value)
        # `down` first clears what an interrupted run left; `up --wait` returns once /readyz is
        # 200 (the compose health check) or fails.
        yield ["down -v --remove-orphans", "up -d --wait api"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    return ["down -v --remove-orphans"]


@pytest.fixture(scope="session")
def docker_services(docker_compose_command, docker_compose_file, docker_compose_project_name,
                    docker_setup, docker_cleanup):
    """pytest-docker's fixture, plus the compose logs in the error when the stack fails to start."""
    try:
        with get_docker_services(docker_compose_command, docker_compose_file, docker_compose_project_name,
                                 docker_setup, docker_cleanup) as services:
            yield services
    except Exception as error:
        logs = compose(docker_compose_command, "logs", "--no-color", "--tail", "80", check=False)
        compose(docker_compose_command, "down", "-v", check=False)
        raise AssertionError(f"{error}\n--- compose logs\n{logs.stdout[-6000:]}") from error


@pytest.fixture(scope="session")
def compose_url(docker_services) -> str:
    """Base URL of the compose ``api`` service once /readyz answers 200."""
    url = f"http://127.0.0.1:{docker_services.port_for('api', 8000)}"

    def ready() -> bool:
        try:
            return requests.get(url + "/readyz", timeout=2).status_code == 200
        except requests.RequestException:  # refused, reset or slow while starting
            return False

    docker_services.wait_until_responsive(check=ready, timeout=120, pause=0.5)
    return url


def compose(command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``<docker compose> -f docker/compose.yaml -p planespotter-test args...``."""
    return run(["sh", "-c", f'{command} -f "{DOCKER_DIR / "compose.yaml"}" -p {COMPOSE_PROJECT} '
                + " ".join(args)], check=check)


@pytest.fixture(scope="session")
def compose_container(docker_services, docker_compose_command) -> str:
    """Container id of the compose ``api`` service."""
    return compose(docker_compose_command, "ps", "-q", "api").stdout.split()[-1]


@pytest.fixture(scope="session")
def r_image(cpu_image) -> str:
    """planespotter/r-plumber:<version>: the R reference server on top of the CPU image."""
    if not (REPO / "r" / "plumber.R").is_file():
        pytest.skip("no r/plumber.R")
    return _build("r")
