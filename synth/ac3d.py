"""A small AC3D (``.ac``) reader producing triangle soups with smooth normals.

Why not Assimp: Assimp 5.2 (Debian ``libassimp5`` + PyPI ``pyassimp``) reads these files and
keeps the object names, but drops what decides the shading: each object's ``crease`` angle
(30-179 degrees in this fleet) and each surface's smooth/flat flag, so normals would have to be
rebuilt without that information. The format is small and documented, so it is read here.

Format (AC3D file format, https://www.inivis.com/ac3d/man/ac3dfileformat.html)::

    AC3Db
    MATERIAL "name" rgb r g b amb r g b emis r g b spec r g b shi n trans t
    OBJECT world|poly|group|light
      name "x"          data n <n characters, may span lines>
      texture "file"    texrep u v    texoff u v
      rot m00 ... m22   loc x y z     (relative to the parent; they accumulate)
      crease degrees    url ...       subdiv n    hidden / locked / folded
      numvert n         (n lines x y z)
      numsurf m         SURF flags / mat i / refs k / (k lines: vertex u v)
      kids k            (k OBJECT blocks follow)

SURF flags: low nibble 0 = polygon, 1 = closed line, 2 = line (lines are skipped);
0x10 = smooth shaded, 0x20 = two-sided. Polygons are fan-triangulated. AC3D's v = 0 is the
bottom of the texture image. Axes in FlightGear models: +Y up, +X aft, +Z left wing.

Known quirks handled: ``kids`` counts larger than the objects present (A310.ac): parsing stops
at the end of file; texture names with Windows paths (only the base name is kept).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: AC3D's default crease angle in degrees when an object gives none (AC3D manual).
DEFAULT_CREASE_DEG = 61.0


class AcParseError(ValueError):
    """Raised for a file that is not AC3D or is malformed beyond recovery."""


@dataclass
class AcObject:
    """One AC3D object flattened to model space.

    Attributes:
        name: object name (``""`` when unnamed).
        ancestors: names of enclosing objects, outermost first (a select on a parent hides it).
        texture: texture base name or ``None``.
        positions: (T*3, 3) float32 corner positions in metres, model space.
        normals: (T*3, 3) float32 unit corner normals.
        uvs: (T*3, 2) float32 texture coordinates after ``texrep``/``texoff`` (v up).
        colors: (T*3, 3) float32 material diffuse colour in [0, 1].
    """

    name: str
    ancestors: tuple[str, ...]
    texture: str | None
    positions: np.ndarray
    normals: np.ndarray
    uvs: np.ndarray
    colors: np.ndarray

    @property
    def n_triangles(self) -> int:
        """Number of triangles."""
        return len(self.positions) // 3


@dataclass
class AcModel:
    """A parsed .ac file: its objects (only those with triangles) and materials."""

    path: Path
    objects: list[AcObject] = field(default_factory=list)
    materials: list[dict] = field(default_factory=list)

    @property
    def n_triangles(self) -> int:
        """Total number of triangles."""
        return sum(o.n_triangles for o in self.objects)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) corners of the axis-aligned box over all objects, float32 (3,) each."""
        p = np.concatenate([o.positions for o in self.objects])
        return p.min(0), p.max(0)


_FLOAT = r"[-+0-9.eE]+"


def _parse_material(line: str) -> dict:
    def grab(key: str, n: int) -> list[float]:
        m = re.search(rf"\b{key}\s+" + r"\s+".join([f"({_FLOAT})"] * n), line)
        return [float(x) for x in m.groups()] if m else [1.0] * n

    return {
        "rgb": grab("rgb", 3),
        "amb": grab("amb", 3),
        "emis": grab("emis", 3),
        "spec": grab("spec", 3),
        "shi": grab("shi", 1)[0],
        "trans": grab("trans", 1)[0] if "trans" in line else 0.0,
    }


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        return s[1:-1]
    return s


class _Reader:
    """Line cursor over the file that can also skip a counted number of characters (``data``)."""

    def __init__(self, text: str):
        self.lines = text.split("\n")
        self.i = 0

    def line(self) -> str | None:
        """Next non-blank line, stripped; ``None`` at end of file."""
        lines, n = self.lines, len(self.lines)
        while self.i < n:
            s = lines[self.i].strip()
            self.i += 1
            if s:
                return s
        return None

    def skip_chars(self, n: int) -> None:
        """Skip ``n`` characters from the start of the next line, then the rest of that line."""
        while n > 0 and self.i < len(self.lines):
            n -= len(self.lines[self.i]) + 1
            self.i += 1


def smooth_normals(
    positions: np.ndarray, face_normals: np.ndarray, weights: np.ndarray, smooth: np.ndarray, crease_deg: float
) -> np.ndarray:
    """Corner normals smoothed across faces that share a position within the crease angle.

    Args:
        positions: (C, 3) corner positions (C = 3 x triangles).
        face_normals: (C, 3) unit normal of each corner's polygon.
        weights: (C,) polygon area of each corner's polygon (area weighting).
        smooth: (C,) bool, the polygon's SURF smooth flag; flat corners keep the face normal.
        crease_deg: faces whose normals differ by more than this are not averaged.

    Returns:
        (C, 3) float32 unit normals. Vertices are matched by position (rounded to 0.1 mm),
        not by index: AC3D duplicates vertices along UV seams.
    """
    c = len(positions)
    if c == 0:
        return face_normals.astype(np.float32)
    key = np.round(positions / 1e-4).astype(np.int64)
    _, group = np.unique(key, axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    g_sorted = group[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    sizes = np.diff(np.r_[starts, c])
    size_of = np.empty(c, np.int64)
    start_of = np.empty(c, np.int64)
    rank_group = np.repeat(np.arange(len(starts)), sizes)
    size_of[order] = sizes[rank_group]
    start_of[order] = starts[rank_group]
    # All (i, j) corner pairs sharing a position: i repeated size(i) times, j runs over the group.
    i_idx = np.repeat(np.arange(c), size_of)
    within = np.arange(len(i_idx)) - np.repeat(np.cumsum(size_of) - size_of, size_of)
    j_idx = order[start_of[i_idx] + within]
    cos_limit = math.cos(math.radians(min(max(crease_deg, 0.0), 180.0)))
    dots = np.einsum("ij,ij->i", face_normals[i_idx], face_normals[j_idx])
    ok = (dots >= cos_limit - 1e-6) & smooth[j_idx]
    acc = np.zeros((c, 3), np.float64)
    np.add.at(acc, i_idx[ok], face_normals[j_idx[ok]] * weights[j_idx[ok], None])
    out = np.where(smooth[:, None], acc, face_normals)
    n = np.linalg.norm(out, axis=1, keepdims=True)
    out = np.where(n > 1e-12, out / np.maximum(n, 1e-12), face_normals)
    return out.astype(np.float32)


def _build_object(
    name: str,
    ancestors: tuple[str, ...],
    texture: str | None,
    verts: np.ndarray,
    surfaces: list[tuple[int, int, list[tuple[int, float, float]]]],
    materials: list[dict],
    texrep: tuple[float, float],
    texoff: tuple[float, float],
    crease: float,
) -> AcObject | None:
    nv = len(verts)
    polys = [
        (flags, mat, refs)
        for flags, mat, refs in surfaces
        if flags & 0x0F == 0 and len(refs) >= 3 and all(0 <= r[0] < nv for r in refs)
    ]  # polygons only (0x1 closed line / 0x2 line skipped), references in range
    if not polys:
        return None
    sizes = np.array([len(r) for _, _, r in polys])
    flat = np.array([r for _, _, refs in polys for r in refs], np.float64)  # (K, 3): index, u, v
    idx = flat[:, 0].astype(np.int64)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    pid = np.repeat(np.arange(len(polys)), sizes)
    p = verts[idx]
    nxt = np.arange(len(idx)) + 1
    last = starts + sizes - 1
    nxt[last] = starts
    # Polygon normal: sum of p_i x p_(i+1) (Newell's method), |n| / 2 = polygon area.
    nsum = np.add.reduceat(np.cross(p, p[nxt]), starts, axis=0)
    area = np.linalg.norm(nsum, axis=1) / 2
    good = area > 1e-12
    fnorm = nsum / np.where(good, 2 * area, 1.0)[:, None]
    # Fan triangulation: (s, s+j, s+j+1) for j = 1 .. k-2, only non-degenerate polygons.
    ntri = np.where(good, sizes - 2, 0)
    tp = np.repeat(np.arange(len(polys)), ntri)
    if len(tp) == 0:
        return None
    j = np.arange(len(tp)) - np.repeat(np.cumsum(ntri) - ntri, ntri) + 1
    s0 = starts[tp]
    corners = np.stack([s0, s0 + j, s0 + j + 1], 1).reshape(-1)
    cpoly = np.repeat(tp, 3)
    positions = p[corners]
    uv = np.stack([flat[corners, 1] * texrep[0] + texoff[0], flat[corners, 2] * texrep[1] + texoff[1]], 1)
    flags = np.array([f for f, _, _ in polys])
    mats = np.array([m for _, m, _ in polys])
    palette = np.array([m["rgb"] for m in materials] or [[1.0, 1.0, 1.0]], np.float64)
    mats = np.where((mats >= 0) & (mats < len(palette)), mats, 0)
    face_normals = fnorm[cpoly]
    normals = smooth_normals(positions, face_normals, area[cpoly], (flags[cpoly] & 0x10) != 0, crease)
    del pid
    return AcObject(
        name=name,
        ancestors=ancestors,
        texture=texture,
        positions=positions.astype(np.float32),
        normals=normals,
        uvs=uv.astype(np.float32),
        colors=palette[mats[cpoly]].astype(np.float32),
    )


def read_ac(path: str | Path) -> AcModel:
    """Parse an AC3D file into model-space triangle soups, one :class:`AcObject` per object.

    Object transforms (``rot`` 3x3 row-major, applied as ``v @ rot``, then ``loc``) accumulate
    from parent to child. Objects without polygons are dropped (their names stay ancestors).

    Raises:
        AcParseError: no ``AC3D`` header, or a malformed count/number.
        OSError: the file cannot be read.
    """
    path = Path(path)
    text = path.read_text(encoding="latin-1")
    rd = _Reader(text)
    head = rd.line()
    if head is None or not head.startswith("AC3D"):
        raise AcParseError(f"{path}: not an AC3D file (header {head!r})")
    model = AcModel(path=path)

    def parse_object(first: str, parent_rot: np.ndarray, parent_loc: np.ndarray, ancestors: tuple[str, ...]) -> None:
        kind = first.split()[1] if len(first.split()) > 1 else "poly"
        name = ""
        texture = None
        texrep = (1.0, 1.0)
        texoff = (0.0, 0.0)
        rot = np.eye(3)
        loc = np.zeros(3)
        crease = DEFAULT_CREASE_DEG
        verts = np.zeros((0, 3))
        surfaces: list[tuple[int, int, list[tuple[int, float, float]]]] = []
        while True:
            ln = rd.line()
            if ln is None:  # truncated file: keep what was read
                kids = 0
                break
            tok = ln.split(None, 1)
            key, rest = tok[0], (tok[1] if len(tok) > 1 else "")
            if key == "name":
                name = _unquote(rest)
            elif key == "data":
                rd.skip_chars(int(rest))
            elif key == "texture":
                texture = re.split(r"[\\/]", _unquote(rest))[-1] or None
            elif key == "texrep":
                a = rest.split()
                texrep = (float(a[0]), float(a[1]))
            elif key == "texoff":
                a = rest.split()
                texoff = (float(a[0]), float(a[1]))
            elif key == "rot":
                rot = np.array([float(x) for x in rest.split()[:9]]).reshape(3, 3)
            elif key == "loc":
                loc = np.array([float(x) for x in rest.split()[:3]])
            elif key == "crease":
                crease = float(rest.split()[0])
            elif key == "numvert":
                n = int(rest)
                vs = []
                for _ in range(n):
                    v = rd.line()
                    if v is None:
                        raise AcParseError(f"{path}: file ends inside numvert of {name!r}")
                    vs.append([float(x) for x in v.split()[:3]])
                verts = np.asarray(vs, np.float64).reshape(-1, 3)
            elif key == "numsurf":
                for _ in range(int(rest)):
                    flags, mat, refs = 0, 0, []
                    while True:
                        s = rd.line()
                        if s is None:
                            raise AcParseError(f"{path}: file ends inside numsurf of {name!r}")
                        st = s.split()
                        if st[0] == "SURF":
                            flags = int(st[1], 16)
                        elif st[0] == "mat":
                            mat = int(st[1])
                        elif st[0] == "refs":
                            for _ in range(int(st[1])):
                                r = rd.line()
                                if r is None:
                                    raise AcParseError(f"{path}: file ends inside refs of {name!r}")
                                rr = r.split()
                                u = float(rr[1]) if len(rr) > 1 else 0.0
                                vv = float(rr[2]) if len(rr) > 2 else 0.0
                                refs.append((int(rr[0]), u, vv))
                            break
                    surfaces.append((flags, mat, refs))
            elif key == "kids":
                kids = int(rest)
                break
            # other keys (url, subdiv, hidden, locked, folded, crease-less) are ignored
        world_rot = rot @ parent_rot
        world_loc = loc @ parent_rot + parent_loc
        if len(verts) and surfaces:
            wverts = verts @ world_rot + world_loc
            obj = _build_object(name, ancestors, texture, wverts, surfaces, model.materials, texrep, texoff, crease)
            if obj is not None:
                model.objects.append(obj)
        child_anc = ancestors + ((name,) if kind != "world" else ())
        for _ in range(kids):
            nxt = rd.line()
            while nxt is not None and not nxt.startswith("OBJECT"):
                nxt = rd.line()
            if nxt is None:  # declared more kids than present (A310.ac)
                return
            parse_object(nxt, world_rot, world_loc, child_anc)

    try:
        while True:
            ln = rd.line()
            if ln is None:
                break
            if ln.startswith("MATERIAL"):
                model.materials.append(_parse_material(ln))
            elif ln.startswith("OBJECT"):
                parse_object(ln, np.eye(3), np.zeros(3), ())
    except (ValueError, IndexError) as exc:
        if isinstance(exc, AcParseError):
            raise
        raise AcParseError(f"{path}: malformed AC3D ({exc})") from exc
    if not model.objects:
        raise AcParseError(f"{path}: no polygons")
    return model
