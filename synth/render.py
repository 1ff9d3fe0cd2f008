"""CPU rendering of FlightGear AI liveries into photo-like JPEGs (moderngl, headless EGL).

OpenGL 3.3 core through ``moderngl.create_standalone_context(backend="egl")`` on Mesa's
llvmpipe (Debian ``libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1``); no X server, no GPU.

One :class:`Renderer` per process owns a GL context, a 4x MSAA framebuffer and caches of
models (:class:`GpuModel`) and textures, so rendering livery by livery loads each model and
texture once. :func:`sample_view` draws a :class:`ViewParams` from a NumPy generator;
:meth:`Renderer.render` turns one into an RGB image; :func:`degrade` and :func:`encode_jpeg`
add photo-style blur, noise, colour gain and JPEG compression.

Choices measured on this machine kind (``/work/shared/notes/flightgear.md``): texture
anisotropy 1 (llvmpipe's anisotropic filtering is 40x slower), a neutral grey ground bounce
(a green one turns white bellies olive), framing on projected vertices (a bounding sphere
leaves the aircraft tiny), camera elevation -45..+15 degrees (spotters shoot from below).
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from synth.ac3d import AcModel, read_ac
from synth.fleet import GEAR_DOWN_PROPS, GEAR_UP_PROPS, Livery, find_texture, hidden_objects

#: Textures larger than this (pixels, longest side) are reduced on load; at 256-512 px output
#: a 1024 atlas already has more texels than screen pixels on the airframe.
DEFAULT_MAX_TEXTURE = 1024

_VERTEX_SHADER = """
#version 330
uniform mat4 u_model;
uniform mat4 u_viewproj;
in vec3 in_pos;
in vec3 in_normal;
in vec2 in_uv;
in vec3 in_color;
out vec3 v_world;
out vec3 v_normal;
out vec2 v_uv;
out vec3 v_color;
void main() {
    vec4 w = u_model * vec4(in_pos, 1.0);
    v_world = w.xyz;
    v_normal = mat3(u_model) * in_normal;
    v_uv = in_uv;
    v_color = in_color;
    gl_Position = u_viewproj * w;
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform sampler2D u_tex;
uniform float u_textured;
uniform vec3 u_sun_dir;
uniform vec3 u_sun_color;
uniform vec3 u_sky_color;
uniform vec3 u_ground_color;
uniform vec3 u_cam_pos;
uniform float u_spec;
uniform float u_haze;
uniform vec3 u_haze_color;
uniform vec3 u_gain;
in vec3 v_world;
in vec3 v_normal;
in vec2 v_uv;
in vec3 v_color;
out vec4 f_color;
void main() {
    vec3 n = normalize(v_normal);
    if (!gl_FrontFacing) n = -n;
    vec3 base = v_color;
    if (u_textured > 0.5) base *= texture(u_tex, v_uv).rgb;
    float diff = max(dot(n, u_sun_dir), 0.0);
    vec3 amb = mix(u_ground_color, u_sky_color, 0.5 + 0.5 * n.y);
    vec3 v = normalize(u_cam_pos - v_world);
    vec3 h = normalize(u_sun_dir + v);
    float spec = diff > 0.0 ? pow(max(dot(n, h), 0.0), 40.0) * u_spec : 0.0;
    vec3 c = base * (amb + u_sun_color * diff) + spec * u_sun_color;
    c = mix(c, u_haze_color, u_haze);
    f_color = vec4(c * u_gain, 1.0);
}
"""


_SKY_VERTEX_SHADER = """
#version 330
in vec2 in_ndc;
out vec2 v_ndc;
void main() {
    v_ndc = in_ndc;
    gl_Position = vec4(in_ndc, 0.0, 1.0);
}
"""

# Background: each pixel's ray elevation picks a colour. Sky gradient horizon -> zenith with a
# sun glow, clouds from a tileable fractal-noise texture (screen space, random scale/offset per
# view), hazy grey ground below the horizon. Alpha 0 marks background (coverage mask).
_SKY_FRAGMENT_SHADER = """
#version 330
uniform mat4 u_inv_vp;
uniform vec3 u_eye;
uniform vec3 u_zenith;
uniform vec3 u_horizon;
uniform vec3 u_sun_dir;
uniform vec3 u_sun_color;
uniform vec3 u_ground;
uniform float u_clouds;
uniform vec4 u_noise_xf;   // scale, rotation (rad), offset x, offset y
uniform vec3 u_gain;
uniform sampler2D u_noise;
in vec2 v_ndc;
out vec4 f_color;
void main() {
    vec4 p = u_inv_vp * vec4(v_ndc, 1.0, 1.0);
    vec3 d = normalize(p.xyz / p.w - u_eye);
    float el = d.y;
    float t = pow(clamp(el / 0.7, 0.0, 1.0), 0.6);
    vec3 sky = mix(u_horizon, u_zenith, t);
    sky += pow(max(dot(d, u_sun_dir), 0.0), 12.0) * 0.25 * u_sun_color;
    float cr = cos(u_noise_xf.y), sr = sin(u_noise_xf.y);
    vec2 q = mat2(cr, sr, -sr, cr) * v_ndc * u_noise_xf.x + u_noise_xf.zw;
    float n = texture(u_noise, q).r;
    if (u_clouds > 0.0) {
        float dens = clamp((n - (1.0 - u_clouds)) / 0.25, 0.0, 1.0) * 0.9;
        vec3 cc = clamp(u_horizon * 0.5 + 0.55, 0.0, 1.0) * (0.85 + 0.15 * n);
        sky = mix(sky, cc, dens);
    }
    float gt = clamp(-el / 0.05, 0.0, 1.0);
    if (gt > 0.0) {
        float g = texture(u_noise, q * 3.7 + 0.31).r;
        vec3 ground = u_ground * (0.8 + 0.4 * g);
        float fade = clamp(-el / 0.3, 0.0, 1.0);
        ground = u_horizon * (1.0 - fade) * 0.9 + ground * (0.1 + 0.9 * fade);
        sky = mix(sky, ground, gt);
    }
    f_color = vec4(clamp(sky, 0.0, 1.0) * u_gain, 0.0);
}
"""


def tileable_noise(size: int = 256, beta: float = 3.0, seed: int = 12345) -> np.ndarray:
    """Tileable fractal noise in [0, 1], (size, size) float32: white noise filtered by 1/f^(beta/2).

    Periodic by construction (FFT), so it can be sampled with ``GL_REPEAT`` without seams.
    """
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((size, size))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spec = np.fft.fft2(white) / f ** (beta / 2)
    spec[0, 0] = 0
    n = np.real(np.fft.ifft2(spec))
    n = (n - n.min()) / (n.max() - n.min())
    return n.astype(np.float32)


@dataclass
class ViewParams:
    """Random parameters of one rendered view (all angles in degrees).

    Ranges (see :func:`sample_view`):

    - azimuth [0, 360): camera direction around the aircraft, from +X (behind the tail) towards
      +Z (left wing), so 90 is a view of the left side; elevation [-45, 15] (negative: below);
    - fov [18, 40] vertical field of view; bank [-30, 30] (normal, sd 10); pitch [-4, 12];
    - gear_down: gear shown (selects evaluated at 80 kt) or retracted (260 kt), 50/50;
    - fill [0.55, 0.92]: fraction of the frame spanned by the longer side of the aircraft's
      projected bounding box; offset_x/offset_y: its centre in NDC units, within the margin;
    - sun azimuth [0, 360) / elevation [12, 75]; colours are RGB in [0, 1]; 25% overcast;
      clouds [0, 0.8] coverage (cloud_xf: noise scale, rotation, offset);
    - haze [0, 0.3]; exposure [0.8, 1.25]; spec [0.05, 0.35] specular strength;
    - blur_sigma [0, 1.2] px at 256 px (0 in 30% of views); noise_sigma [0, 6] 8-bit levels;
      gain per channel [0.94, 1.06]; jpeg_quality [55, 95].
    """

    azimuth: float
    elevation: float
    fov: float
    bank: float
    pitch: float
    gear_down: bool
    fill: float
    offset_x: float
    offset_y: float
    sun_azimuth: float
    sun_elevation: float
    sun_color: tuple[float, float, float]
    sky_zenith: tuple[float, float, float]
    sky_horizon: tuple[float, float, float]
    ground_color: tuple[float, float, float]
    clouds: float
    cloud_xf: tuple[float, float, float, float]
    haze: float
    exposure: float
    spec: float
    blur_sigma: float
    noise_sigma: float
    gain: tuple[float, float, float]
    jpeg_quality: int

    def as_dict(self) -> dict:
        """Plain dict (JSON-serialisable) of the parameters."""
        return asdict(self)


#: View presets. ``spotter``: broadside to three-quarter views (azimuth within 65 degrees of either
#: side, never nose- or tail-on) from below to slightly above (elevation -30..+10), as spotters
#: photograph airliners; ``all``: any azimuth, elevation -45..+15.
VIEW_PRESETS = ("spotter", "all")


def sample_view(rng: np.random.Generator, views: str = "spotter") -> ViewParams:
    """Draw random view parameters (ranges in :class:`ViewParams`) from ``rng``."""
    overcast = rng.random() < 0.25
    if overcast:
        g = rng.uniform(0.55, 0.8)
        zenith = tuple(np.clip(g + rng.normal(0, 0.008, 3) + [-0.02, 0.0, 0.03], 0, 1))
        horizon = tuple(np.clip(np.asarray(zenith) + rng.uniform(0.05, 0.15), 0, 1))
        sun_color = tuple([rng.uniform(0.35, 0.55)] * 3)
        clouds = 0.0
    else:
        r0 = rng.uniform(0.12, 0.35)
        zenith = (r0, r0 + rng.uniform(0.12, 0.25), rng.uniform(0.72, 0.95))
        horizon = (rng.uniform(0.6, 0.8), rng.uniform(0.72, 0.86), rng.uniform(0.85, 0.97))
        warm = rng.uniform(0.0, 0.12)
        s = rng.uniform(0.75, 0.95)
        sun_color = (s, s * (1 - warm / 2), s * (1 - warm))
        clouds = float(rng.uniform(0, 0.8)) if rng.random() < 0.6 else 0.0
    fill = float(rng.uniform(0.55, 0.92))
    margin = (1 - fill) * 0.8
    bank = float(np.clip(rng.normal(0, 10), -30, 30))
    if views == "all":
        azimuth, elevation = float(rng.uniform(0, 360)), float(rng.uniform(-45, 15))
    elif views == "spotter":
        azimuth = float((90.0 if rng.random() < 0.5 else 270.0) + rng.uniform(-65, 65)) % 360.0
        elevation = float(rng.uniform(-30, 10))
    else:
        raise ValueError(f"views must be one of {VIEW_PRESETS}, got {views!r}")
    return ViewParams(
        azimuth=azimuth,
        elevation=elevation,
        fov=float(rng.uniform(18, 40)),
        bank=bank,
        pitch=float(rng.uniform(-4, 12)),
        gear_down=bool(rng.random() < 0.5),
        fill=fill,
        offset_x=float(rng.uniform(-margin, margin)),
        offset_y=float(rng.uniform(-margin, margin)),
        sun_azimuth=float(rng.uniform(0, 360)),
        sun_elevation=float(rng.uniform(12, 75)),
        sun_color=tuple(float(x) for x in sun_color),
        sky_zenith=tuple(float(x) for x in zenith),
        sky_horizon=tuple(float(x) for x in horizon),
        ground_color=tuple(float(x) for x in np.clip(rng.uniform(0.34, 0.5) + rng.normal(0, 0.012, 3), 0.25, 0.6)),
        clouds=float(clouds),
        cloud_xf=(float(rng.uniform(0.15, 0.45)), float(rng.uniform(0, 2 * math.pi)), float(rng.random()), float(rng.random())),
        haze=float(rng.uniform(0, 0.3)),
        exposure=float(rng.uniform(0.8, 1.25)),
        spec=float(rng.uniform(0.05, 0.35)),
        blur_sigma=float(rng.uniform(0, 1.2)) if rng.random() < 0.7 else 0.0,
        noise_sigma=float(rng.uniform(0, 6)),
        gain=tuple(float(x) for x in rng.uniform(0.94, 1.06, 3)),
        jpeg_quality=int(rng.integers(55, 96)),
    )


# ---------------------------------------------------------------------------------------------
# matrices (column-vector convention; moderngl wants column-major bytes: write M.T)


def _rot_x(deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_z(deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def attitude_matrix(pitch_deg: float, bank_deg: float) -> np.ndarray:
    """3x3 rotation of a FlightGear model (+X aft, +Y up, +Z left): bank, then pitch nose-up.

    Bank rolls about the longitudinal X axis; pitch turns about the Z (wing) axis so that a
    positive angle raises the nose (at -X).
    """
    return _rot_z(-pitch_deg) @ _rot_x(bank_deg)


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """4x4 right-handed view matrix (OpenGL convention: camera looks down -Z)."""
    f = target - eye
    f = f / np.linalg.norm(f)
    s = np.cross(f, up)
    s = s / np.linalg.norm(s)
    u = np.cross(s, f)
    m = np.eye(4)
    m[0, :3], m[1, :3], m[2, :3] = s, u, -f
    m[:3, 3] = -m[:3, :3] @ eye
    return m


def perspective(fov_y_deg: float, aspect: float, near: float, far: float) -> np.ndarray:
    """4x4 OpenGL perspective projection (gluPerspective)."""
    f = 1.0 / math.tan(math.radians(fov_y_deg) / 2)
    m = np.zeros((4, 4))
    m[0, 0] = f / aspect
    m[1, 1] = f
    m[2, 2] = (far + near) / (near - far)
    m[2, 3] = 2 * far * near / (near - far)
    m[3, 2] = -1
    return m


def _direction(az_deg: float, el_deg: float) -> np.ndarray:
    az, el = math.radians(az_deg), math.radians(el_deg)
    return np.array([math.cos(el) * math.cos(az), math.sin(el), math.cos(el) * math.sin(az)])


# ---------------------------------------------------------------------------------------------


_PROP_DISC = re.compile(r"blur|disc|disk", re.IGNORECASE)


@dataclass
class _Part:
    name: str
    ancestors: tuple[str, ...]
    texture: str | None
    first: int
    count: int


class GpuModel:
    """An .ac model uploaded as one interleaved vertex buffer with per-object draw ranges."""

    def __init__(self, ctx, prog, model: AcModel):
        self.path = model.path
        parts, arrays = [], []
        first = 0
        for o in model.objects:
            n = len(o.positions)
            arrays.append(np.hstack([o.positions, o.normals, o.uvs, o.colors]).astype("f4"))
            parts.append(_Part(o.name, o.ancestors, o.texture, first, n))
            first += n
        data = np.concatenate(arrays)
        self.positions = data[:, :3].copy()
        self.parts = parts
        self.vbo = ctx.buffer(data.tobytes())
        self.vao = ctx.vertex_array(prog, [(self.vbo, "3f 3f 2f 3f", "in_pos", "in_normal", "in_uv", "in_color")])

    def visible_parts(self, hidden: frozenset[str]) -> list[_Part]:
        """Parts whose name and ancestors are not in ``hidden``, minus propeller blur discs.

        Blur discs (names with ``blur``, ``disc``, ``disk``) rely on alpha blending, which this
        opaque renderer does not do; the static propeller blades stay visible.
        """
        return [
            p
            for p in self.parts
            if p.name not in hidden
            and not hidden.intersection(p.ancestors)
            and not any(_PROP_DISC.search(n) for n in (p.name, *p.ancestors))
        ]

    def release(self) -> None:
        """Free the GL buffers."""
        self.vao.release()
        self.vbo.release()


def load_texture_image(path: str | Path, max_size: int = DEFAULT_MAX_TEXTURE) -> Image.Image:
    """Read a texture as RGB (palette/RGBA/SGI converted), reduced to ``max_size`` and flipped.

    The flip puts image row 0 at the bottom, matching AC3D's v = 0 (OpenGL's t = 0).
    """
    im = Image.open(path)
    im.load()
    if im.mode != "RGB":
        im = im.convert("RGBA").convert("RGB") if im.mode in ("P", "LA", "PA") else im.convert("RGB")
    longest = max(im.size)
    if longest > max_size:
        factor = int(math.ceil(longest / max_size))
        im = im.reduce(factor)
    return im.transpose(Image.Transpose.FLIP_TOP_BOTTOM)


class Renderer:
    """Offscreen renderer bound to one headless EGL context (one per process).

    Args:
        size: output width = height in pixels (>= 16).
        samples: MSAA samples (clamped to the driver's maximum; llvmpipe: 4).
        max_texture: textures are reduced to at most this many pixels on their longest side.

    Raises:
        RuntimeError: no EGL context could be created (install ``libegl1 libegl-mesa0
        libgl1-mesa-dri libgbm1``).
    """

    def __init__(self, size: int = 256, samples: int = 4, max_texture: int = DEFAULT_MAX_TEXTURE):
        import moderngl

        if size < 16:
            raise ValueError(f"size must be >= 16, got {size}")
        try:
            self.ctx = moderngl.create_standalone_context(backend="egl")
        except Exception as exc:  # moderngl raises plain Exception from glcontext
            raise RuntimeError(
                f"cannot create a headless EGL OpenGL context ({exc}); install Debian packages "
                "libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1"
            ) from exc
        self.size = size
        self.max_texture = max_texture
        samples = max(0, min(samples, self.ctx.max_samples))
        self.prog = self.ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        self.fbo_ms = self.ctx.framebuffer(
            color_attachments=[self.ctx.renderbuffer((size, size), 4, samples=samples)],
            depth_attachment=self.ctx.depth_renderbuffer((size, size), samples=samples),
        )
        self.fbo = self.ctx.framebuffer(color_attachments=[self.ctx.renderbuffer((size, size), 4)])
        self.sky_prog = self.ctx.program(vertex_shader=_SKY_VERTEX_SHADER, fragment_shader=_SKY_FRAGMENT_SHADER)
        quad = np.array([-1, -1, 1, -1, -1, 1, 1, 1], "f4")
        self.sky_vbo = self.ctx.buffer(quad.tobytes())
        self.sky_vao = self.ctx.vertex_array(self.sky_prog, [(self.sky_vbo, "2f", "in_ndc")])
        noise = tileable_noise(256)
        self.noise_tex = self.ctx.texture((256, 256), 1, noise.tobytes(), dtype="f4")
        self.noise_tex.repeat_x = self.noise_tex.repeat_y = True
        self.prog["u_tex"].value = 0
        self.sky_prog["u_noise"].value = 1
        self._models: dict[Path, GpuModel] = {}
        self._textures: dict[Path, object] = {}

    # -- resources ----------------------------------------------------------------------------
    def model(self, path: Path) -> GpuModel:
        """The uploaded model for an .ac path (parsed and uploaded on first use, then cached)."""
        path = Path(path)
        if path not in self._models:
            self._models[path] = GpuModel(self.ctx, self.prog, read_ac(path))
        return self._models[path]

    def texture(self, path: Path):
        """The uploaded mipmapped texture for an image path (cached)."""
        path = Path(path)
        if path not in self._textures:
            im = load_texture_image(path, self.max_texture)
            tex = self.ctx.texture(im.size, 3, im.tobytes())
            tex.build_mipmaps()
            import moderngl

            tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
            tex.anisotropy = 1.0
            tex.repeat_x = tex.repeat_y = True
            self._textures[path] = tex
        return self._textures[path]

    def release_textures(self) -> None:
        """Free all cached textures (call after the last view of a livery)."""
        for t in self._textures.values():
            t.release()
        self._textures.clear()

    def release_models(self, keep: Path | None = None) -> None:
        """Free cached models except ``keep``."""
        for p in list(self._models):
            if p != keep:
                self._models.pop(p).release()

    # -- rendering ----------------------------------------------------------------------------
    def render(self, livery: Livery, view: ViewParams, return_mask: bool = False):
        """Render one view of a livery: (size, size, 3) uint8 RGB over the sky, no JPEG yet.

        With ``return_mask``, also returns the aircraft's coverage: (size, size) uint8, 0 on
        background, 255 on the aircraft, in between on anti-aliased edges.

        The aircraft is framed on its projected visible vertices so that its longer projected
        side spans ``view.fill`` of the frame, shifted by ``view.offset_x/offset_y``.
        """
        gm = self.model(livery.model_path)
        hidden = hidden_objects(livery.selects, GEAR_DOWN_PROPS if view.gear_down else GEAR_UP_PROPS)
        parts = self.visible_parts_or_all(gm, hidden)
        pos = np.concatenate([gm.positions[p.first : p.first + p.count] for p in parts])
        lo, hi = pos.min(0), pos.max(0)
        center = (lo + hi) / 2
        att = attitude_matrix(view.pitch, view.bank)
        model = np.eye(4)
        model[:3, :3] = att
        model[:3, 3] = -att @ center
        world = (pos - center) @ att.T
        radius = float(np.linalg.norm(world, axis=1).max())
        dist = radius / math.sin(math.radians(view.fov) / 2) * 1.05
        eye = _direction(view.azimuth, view.elevation) * dist
        viewm = look_at(eye, np.zeros(3))
        near, far = max(dist - radius * 1.2, radius * 0.02), dist + radius * 1.2
        proj = perspective(view.fov, 1.0, near, far)
        vp = proj @ viewm
        step = max(1, len(world) // 20000)
        sample = world[::step]
        clip = np.c_[sample, np.ones(len(sample))] @ vp.T
        ndc = clip[:, :2] / clip[:, 3:4]
        nlo, nhi = ndc.min(0), ndc.max(0)
        extent = float(max(nhi - nlo))
        s = 2 * view.fill / max(extent, 1e-6)
        c = (nlo + nhi) / 2
        crop = np.eye(4)
        crop[0, 0] = crop[1, 1] = s
        crop[0, 3] = view.offset_x - s * c[0]
        crop[1, 3] = view.offset_y - s * c[1]
        vp = crop @ vp

        sun = _direction(view.sun_azimuth, view.sun_elevation)
        gain = tuple(float(view.exposure * g) for g in view.gain)
        ctx = self.ctx
        self.fbo_ms.use()
        self.fbo_ms.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)

        sp = self.sky_prog
        sp["u_inv_vp"].write(np.linalg.inv(vp).T.astype("f4").tobytes())
        sp["u_eye"].value = tuple(eye)
        sp["u_zenith"].value = view.sky_zenith
        sp["u_horizon"].value = view.sky_horizon
        sp["u_sun_dir"].value = tuple(sun)
        sp["u_sun_color"].value = view.sun_color
        sp["u_ground"].value = view.ground_color
        sp["u_clouds"].value = view.clouds
        sp["u_noise_xf"].value = view.cloud_xf
        sp["u_gain"].value = gain
        self.noise_tex.use(1)
        ctx.disable(ctx.DEPTH_TEST | ctx.CULL_FACE)
        self.sky_vao.render(mode=ctx.TRIANGLE_STRIP)

        prog = self.prog
        prog["u_model"].write(model.T.astype("f4").tobytes())
        prog["u_viewproj"].write(vp.T.astype("f4").tobytes())
        prog["u_sun_dir"].value = tuple(sun)
        prog["u_sun_color"].value = view.sun_color
        prog["u_sky_color"].value = tuple(0.45 * np.asarray(view.sky_horizon) + 0.15)
        prog["u_ground_color"].value = tuple(0.55 * np.asarray(view.ground_color))
        prog["u_cam_pos"].value = tuple(eye)
        prog["u_spec"].value = view.spec
        prog["u_haze"].value = view.haze
        prog["u_haze_color"].value = view.sky_horizon
        prog["u_gain"].value = gain
        ctx.enable(ctx.DEPTH_TEST)
        for p in parts:
            tex_path = None
            if p.texture:
                tex_path = (
                    livery.texture_path
                    if p.texture == livery.texture_path.name
                    else find_texture(p.texture, livery.texture_dir, livery.model_path.parent)
                )
            if tex_path is not None:
                self.texture(tex_path).use(0)
                prog["u_textured"].value = 1.0
            else:
                prog["u_textured"].value = 0.0
            gm.vao.render(mode=ctx.TRIANGLES, vertices=p.count, first=p.first)
        ctx.copy_framebuffer(self.fbo, self.fbo_ms)
        raw = np.frombuffer(self.fbo.read(components=4, alignment=1), np.uint8)
        rgba = raw.reshape(self.size, self.size, 4)[::-1]
        if return_mask:
            return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
        return np.ascontiguousarray(rgba[..., :3])

    @staticmethod
    def visible_parts_or_all(gm: GpuModel, hidden: frozenset[str]) -> list[_Part]:
        """Visible parts; all parts if the selects would hide everything."""
        parts = gm.visible_parts(hidden)
        return parts or gm.parts


def degrade(img: np.ndarray, view: ViewParams, rng: np.random.Generator) -> Image.Image:
    """Photo-style degradation: Gaussian blur and Gaussian noise (luma-heavy, 8-bit levels).

    The blur's sigma is ``view.blur_sigma`` pixels at 256 px, scaled with the image width so
    that the look does not depend on the output size.

    Args:
        img: (H, W, 3) uint8 RGB.
        rng: generator for the noise (deterministic per view).

    Returns:
        A Pillow RGB image (not yet JPEG-compressed; see :func:`encode_jpeg`).
    """
    im = Image.fromarray(img, "RGB")
    sigma = view.blur_sigma * img.shape[1] / 256  # blur_sigma is in pixels of a 256 px image
    if sigma > 0.05:
        im = im.filter(ImageFilter.GaussianBlur(sigma))
    if view.noise_sigma > 0.05:
        a = np.asarray(im, np.float32)
        a = a + rng.standard_normal(a.shape[:2] + (1,), dtype=np.float32) * (0.6 * view.noise_sigma)
        a = a + rng.standard_normal(a.shape, dtype=np.float32) * (0.5 * view.noise_sigma)
        im = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "RGB")
    return im


def encode_jpeg(im: Image.Image, quality: int) -> bytes:
    """Baseline JPEG bytes at ``quality`` (1-95, Pillow's scale), 4:2:0 subsampling."""
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(quality), subsampling=2, optimize=False)
    return buf.getvalue()


def set_llvmpipe_threads(n: int) -> None:
    """Limit llvmpipe's rasteriser threads (``LP_NUM_THREADS``); call before the first context."""
    os.environ["LP_NUM_THREADS"] = str(max(0, int(n)))
