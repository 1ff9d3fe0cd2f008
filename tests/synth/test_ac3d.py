"""AC3D reader: a hand-written file with known geometry, and real fleet models."""

from __future__ import annotations

import numpy as np
import pytest

from synth.ac3d import AcParseError, read_ac

SMALL = """AC3Db
MATERIAL "red" rgb 1 0 0  amb 0.2 0.2 0.2  emis 0 0 0  spec 0.5 0.5 0.5  shi 10  trans 0
MATERIAL "white" rgb 1 1 1  amb 0.2 0.2 0.2  emis 0 0 0  spec 0.5 0.5 0.5  shi 10  trans 0
OBJECT world
kids 2
OBJECT group
name "parent"
data 10
two
 lines
loc 10 0 0
kids 1
OBJECT poly
name "roof"
loc 0 1 0
texture "C:\\\\paint\\\\tex.png"
texrep 2 1
crease {crease}
numvert 5
0 0 0
1 0 0
1 0 1
0 0 1
0.5 1 0.5
numsurf 3
SURF 0x10
mat 1
refs 4
0 0 0
3 0 1
2 1 1
1 1 0
SURF 0x10
mat 0
refs 3
0 0 0
1 1 0
4 0.5 1
SURF 0x12
mat 0
refs 2
0 0 0
1 1 0
kids 0
OBJECT poly
name "ghost"
kids 3
"""


def _write(tmp_path, crease):
    p = tmp_path / "m.ac"
    p.write_text(SMALL.format(crease=crease))
    return p


def test_small_file_geometry(tmp_path):
    m = read_ac(_write(tmp_path, 179))
    assert [o.name for o in m.objects] == ["roof"]  # "ghost" has no polygons; kids overcount is tolerated
    roof = m.objects[0]
    assert roof.ancestors == ("parent",)
    assert roof.texture == "tex.png"  # Windows path stripped
    assert roof.n_triangles == 3  # quad -> 2, triangle -> 1, line skipped
    # loc accumulates: parent (10,0,0) + child (0,1,0)
    assert np.allclose(roof.positions.min(0), [10, 1, 0])
    assert np.allclose(roof.positions.max(0), [11, 2, 1])
    # texrep 2 1 scales u only
    assert roof.uvs[:, 0].max() == pytest.approx(2.0)
    assert roof.uvs[:, 1].max() == pytest.approx(1.0)
    # material colours: quad white, triangle red
    assert np.allclose(roof.colors[:6], 1.0)
    assert np.allclose(roof.colors[6:], [1, 0, 0])
    assert np.allclose(np.linalg.norm(roof.normals, axis=1), 1, atol=1e-5)


def test_crease_controls_smoothing(tmp_path):
    sharp = read_ac(_write(tmp_path, 10)).objects[0]
    smooth = read_ac(_write(tmp_path, 179)).objects[0]
    # Quad faces +Y (its winding 0,3,2,1 is counter-clockwise seen from above).
    assert np.allclose(sharp.normals[:6], [0, 1, 0], atol=1e-6)
    # With a 179 degree crease the corner shared with the slanted triangle is averaged.
    assert not np.allclose(smooth.normals[:6], [0, 1, 0], atol=1e-3)


def test_not_ac3d(tmp_path):
    p = tmp_path / "x.ac"
    p.write_text("hello\n")
    with pytest.raises(AcParseError):
        read_ac(p)


def test_real_737_800(by_key):
    m = read_ac(by_key["738/738-Ryanair"].model_path)
    names = {o.name for o in m.objects}
    assert {"Body", "gear", "winglets"} <= names
    lo, hi = m.bounds()
    assert hi[0] - lo[0] == pytest.approx(39.5, abs=1.0)  # 737-800 length 39.5 m
    assert hi[2] - lo[2] == pytest.approx(35.8, abs=1.5)  # span with winglets 35.8 m
    # FlightGear axes: nose at -X; fin on top (+Y) near the tail (+X).
    body = next(o for o in m.objects if o.name == "Body").positions
    top = body[body[:, 1] > hi[1] - 1.0]
    assert top[:, 0].mean() > (lo[0] + hi[0]) / 2


def test_real_a310_kids_overcount(by_key):
    m = read_ac(by_key["A310/A310-default"].model_path)
    assert len(m.objects) == 15
    assert m.n_triangles == 3132
