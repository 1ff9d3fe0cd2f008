"""The two helper scripts the manifests ship in ConfigMaps, run as the pods run them (CLI, real
files, a real HTTP server on loopback): k8s/batch/merge/merge_shards.py and
k8s/components/model-from-url/fetch_model.py."""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import io
import subprocess
import sys
import tarfile
import threading

import pytest

HEADER = ["image_path", "manufacturer", "aircraft_type", "probability"]


def run(k8s, script, *args):
    return subprocess.run([sys.executable, str(k8s.K8S / script), *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False)


def write_part(folder, index, n, rows, header=HEADER):
    with open(folder / f"part-{index}-of-{n}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


MERGE = "batch/merge/merge_shards.py"
FETCH = "components/model-from-url/fetch_model.py"


def test_merge_joins_shards_in_order(tmp_path, k8s):
    shards = {i: [[f"img/{j:03d}.jpg", "Airbus", "A320", f"0.{i}{j}"] for j in range(i, 12, 3)] for i in range(3)}
    # A quoted field with a comma and a newline survives the merge verbatim.
    shards[1].append(["img/with,comma\nand newline.jpg", "Boeing", "B738", "0.5"])
    for i, rows in shards.items():
        write_part(tmp_path, i, 3, rows)
    (tmp_path / "scores.csv").write_text("old\n")
    (tmp_path / "notes.txt").write_text("ignored")
    proc = run(k8s, MERGE, "--shards-dir", tmp_path, "--out", tmp_path / "scores.csv")
    assert proc.returncode == 0, proc.stderr
    assert "13 rows from 3 shards" in proc.stderr
    with open(tmp_path / "scores.csv", newline="", encoding="utf-8") as f:
        merged = list(csv.reader(f))
    assert merged == [HEADER] + shards[0] + shards[1] + shards[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt", "part-0-of-3.csv", "part-1-of-3.csv", "part-2-of-3.csv", "scores.csv"]


def test_merge_orders_shards_numerically(tmp_path, k8s):
    """part-10-of-11 sorts before part-2-of-11 as text; the merge orders by index."""
    for i in range(11):
        write_part(tmp_path, i, 11, [[f"img/{i}.jpg", "Airbus", "A320", "1.0"]])
    proc = run(k8s, MERGE, "--shards-dir", tmp_path, "--out", tmp_path / "scores.csv")
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "scores.csv", newline="") as f:
        assert [r[0] for r in list(csv.reader(f))[1:]] == [f"img/{i}.jpg" for i in range(11)]


@pytest.mark.parametrize("case", ["missing shard", "mixed runs", "header differs", "empty part", "no parts"])
def test_merge_refuses_inconsistent_parts(case, tmp_path, k8s):
    row = [["img/a.jpg", "Airbus", "A320", "0.9"]]
    if case == "missing shard":
        for i in (0, 2):
            write_part(tmp_path, i, 3, row)
        expected = "missing indexes [1]"
    elif case == "mixed runs":
        for i, n in ((0, 1), (0, 2), (1, 2)):
            write_part(tmp_path, i, n, row)
        expected = "several runs"
    elif case == "header differs":
        write_part(tmp_path, 0, 2, row)
        write_part(tmp_path, 1, 2, row, header=HEADER[:3])
        expected = "differs"
    elif case == "empty part":
        write_part(tmp_path, 0, 2, row)
        (tmp_path / "part-1-of-2.csv").write_text("")
        expected = "empty"
    else:
        expected = "no part-I-of-N.csv"
    proc = run(k8s, MERGE, "--shards-dir", tmp_path, "--out", tmp_path / "scores.csv")
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith("part-")], "nothing may be written"


# --------------------------------------------------------------------------- fetch_model.py

def model_archive(version="20250101T000000Z", extra=None) -> bytes:
    """A tar.gz of one model version folder, as `tar -C models -czf x.tar.gz <version>` makes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        d = tarfile.TarInfo(version)
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(d)
        for name, data in {"labels.json": b'{"manufacturer": ["Airbus", "Boeing"]}',
                           "manufacturer.keras": b"not really a model"}.items():
            info = tarfile.TarInfo(f"{version}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra or []:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


@pytest.fixture
def http_root(tmp_path):
    """(folder, base URL) of an HTTP server on 127.0.0.1 serving the folder."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_installs_version_and_latest(http_root, tmp_path, k8s):
    root, url = http_root
    first, second = model_archive("v1"), model_archive("v2")
    (root / "v1.tar.gz").write_bytes(first)
    (root / "v2.tar.gz").write_bytes(second)
    dest = tmp_path / "models"
    proc = run(k8s, FETCH, "--url", f"{url}/v1.tar.gz", "--dest", dest,
               "--sha256", hashlib.sha256(first).hexdigest())
    assert proc.returncode == 0, proc.stderr
    assert (dest / "latest").resolve() == (dest / "v1").resolve()
    assert (dest / "latest" / "labels.json").read_bytes() == b'{"manufacturer": ["Airbus", "Boeing"]}'
    # A restarted initContainer (or a new URL) replaces what is there; no temporary files remain.
    proc = run(k8s, FETCH, "--url", f"{url}/v2.tar.gz", "--dest", dest)
    assert proc.returncode == 0, proc.stderr
    assert (dest / "latest").readlink().as_posix() == "v2"
    assert sorted(p.name for p in dest.iterdir()) == ["latest", "v1", "v2"]


def _unsafe_member():
    info = tarfile.TarInfo("../escaped.txt")
    info.size = 3
    return [(info, b"bad")]


def _link_member():
    info = tarfile.TarInfo("v1/passwd")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return [(info, None)]


@pytest.mark.parametrize("case,expected", [
    ("sha256 mismatch", "SHA-256 mismatch"),
    ("path traversal", "unsafe path"),
    ("symlink member", "not a regular file"),
    ("two versions", "exactly one model version folder"),
    ("not a tar", "not a tar archive"),
    ("http 404", "404"),
])
def test_fetch_refuses_bad_archives(case, expected, http_root, tmp_path, k8s):
    root, url = http_root
    data = {"path traversal": lambda: model_archive("v1", _unsafe_member()),
            "symlink member": lambda: model_archive("v1", _link_member()),
            "two versions": lambda: model_archive("v1", [(tarfile.TarInfo("v2/x"), b"")]),
            "not a tar": lambda: b"<html>login page</html>"}.get(case, model_archive)()
    if case != "http 404":
        (root / "m.tar.gz").write_bytes(data)
    dest = tmp_path / "models"
    args = ["--url", f"{url}/m.tar.gz", "--dest", dest]
    if case == "sha256 mismatch":
        args += ["--sha256", "0" * 64]
    proc = run(k8s, FETCH, *args)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert list(dest.iterdir()) == [], "nothing may be left behind"
    assert not (tmp_path / "escaped.txt").exists()


def test_fetch_without_url_is_a_usage_error(tmp_path, k8s):
    proc = subprocess.run([sys.executable, str(k8s.K8S / FETCH), "--dest", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert "PLANESPOTTER_MODEL_URL" in proc.stderr
