"""A fast software renderer of textured 3-D scenes, used to shoot the built-in reel (:mod:`cinepipe.reel`).

Conventions
-----------
* World: metres, right-handed, ``x`` east, ``y`` north, **``z`` up**; the ground is the plane ``z = 0``.
* Camera (:class:`CameraPose`): position ``(x, y, z)``; ``yaw`` in degrees clockwise from +y seen from above, so a
  growing yaw turns the camera right (a pan right); ``pitch`` in degrees, > 0 looking up; ``roll`` in degrees, > 0
  when the camera turns clockwise about its optical axis as its operator sees it (the picture content then turns
  anticlockwise on screen); ``vfov`` the vertical field of view in degrees. Pinhole, square pixels, principal point
  at the image centre: the horizontal field of view follows from the aspect ratio (:meth:`CameraPose.hfov`).
* Image: ``x`` right, ``y`` down, pixel centres at integer coordinates; frames are BGR ``uint8`` (OpenCV order).

How a frame is made (vectorised numpy + OpenCV only, float32, no per-pixel Python):

* the scene is drawn at half resolution and interpolated up, with its inverse-depth buffer, and the face (head
  and nose) is then drawn at full resolution, z-buffered against it: the background is softer, like a lens
  focused on the subject, and costs a quarter of the pixel work. The background is reused while the camera does
  not move, and warped from one panorama while it only turns or zooms (:meth:`Renderer.hold_background`);
* every planar surface (ground, walls, box faces, roofs, leafy tree-crown sprites) is a homography of its
  texture, drawn with ``cv2.warpPerspective`` into the bounding box of its visible polygon (clipped against the
  near plane) and z-buffered on inverse depth, which is affine in image coordinates for a plane (its sign says in
  front of or behind the camera, which handles planes crossing behind it, such as the ground);
* surfaces are mip-mapped: walls pick a pyramid level from their pixel footprint, the ground is drawn in bands of
  constant inverse depth (one pyramid level per band, a flat mean colour near the horizon), so distant texture
  does not shimmer when the camera moves;
* the human subject is a set of ellipsoids (head with a face texture, hair, nose, ears, neck, torso, limbs) ray-cast
  per pixel inside their exact projected bounding boxes (from the dual quadric): small ones together in one
  vectorised batch, large ones on a coarser grid whose smooth per-pixel quantities (discriminant, depth, shading,
  texture coordinates) are interpolated up, which keeps a face that fills the frame cheap;
* the sky lives at infinity: a gradient with a sun glow and clouds, computed on a coarse grid (it is smooth);
* ground shadows of boxes, trees and the subject are polygons projected along the sun direction;
* distance haze blends everything toward the horizon colour, hiding the last traces of texture aliasing;
* for a rolled (dutch) camera the sky and ground are drawn unrolled on a larger canvas and rotated into place
  (exact for a pinhole camera), which keeps their bands of constant depth axis-aligned and tight.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np

NEAR = 0.05  # near clipping distance, metres
LOCATIONS: tuple[str, ...] = ("plaza", "street", "park", "beach", "yard")
POSES: tuple[str, ...] = ("standing", "lying")

_F32 = np.float32
_COARSE_AREA = 4_000  # ellipsoids covering more pixels than this are ray-cast on a coarser grid
_BATCH_AREA = 2_500  # untextured ellipsoids covering fewer pixels than this are ray-cast together
_GROUND_LEVELS = 8  # textured mip levels of the ground; beyond them the ground is its mean colour


def _sphere_points(n: int) -> np.ndarray:
    """``n`` points spread over the unit sphere (a Fibonacci lattice)."""
    z = np.linspace(-1, 1, n)
    r = np.sqrt(1 - z * z)
    phi = 2.39996323 * np.arange(n)  # the golden angle
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


_SPHERE = _sphere_points(160)  # to bound ellipsoids that cross the near plane


# ----------------------------------------------------------------------------------------------------------------
# Camera
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraPose:
    """A pinhole camera: position (m), yaw/pitch/roll (degrees) and vertical field of view (degrees)."""

    x: float
    y: float
    z: float
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    vfov: float = 40.0

    @property
    def position(self) -> np.ndarray:
        return np.array([self.x, self.y, self.z], dtype=np.float64)

    def focal_px(self, height: int) -> float:
        """Focal length in pixels for an image ``height`` pixels tall."""
        return 0.5 * height / math.tan(math.radians(self.vfov) / 2)

    def hfov(self, width: int, height: int) -> float:
        return math.degrees(2 * math.atan(width / (2 * self.focal_px(height))))

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World unit vectors (right, up, forward) of the camera."""
        return camera_axes(self.yaw, self.pitch, self.roll)


def camera_axes(yaw: float, pitch: float, roll: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World unit vectors (right, up, forward) of a camera with the module's yaw/pitch/roll conventions."""
    ps, th, ph = math.radians(yaw), math.radians(pitch), math.radians(roll)
    forward = np.array([math.sin(ps) * math.cos(th), math.cos(ps) * math.cos(th), math.sin(th)])
    right0 = np.array([math.cos(ps), -math.sin(ps), 0.0])
    up0 = np.array([-math.sin(ps) * math.sin(th), -math.cos(ps) * math.sin(th), math.cos(th)])
    right = math.cos(ph) * right0 - math.sin(ph) * up0
    up = math.sin(ph) * right0 + math.cos(ph) * up0
    return right, up, forward


class View:
    """A camera pose bound to an image size: the projection ``x ~ K R (X - C)`` (OpenCV camera axes)."""

    def __init__(self, pose: CameraPose, width: int, height: int, focal: float | None = None) -> None:
        self.pose = pose
        self.width, self.height = width, height
        self.focal = pose.focal_px(height) if focal is None else focal
        self.cx, self.cy = (width - 1) / 2, (height - 1) / 2
        right, up, forward = pose.axes()
        self.R = np.stack([right, -up, forward])  # world -> camera (x right, y down, z forward)
        self.C = pose.position
        self.K = np.array([[self.focal, 0, self.cx], [0, self.focal, self.cy], [0, 0, 1.0]])
        k_inv = np.array([[1 / self.focal, 0, -self.cx / self.focal], [0, 1 / self.focal, -self.cy / self.focal],
                          [0, 0, 1.0]])
        # world ray (with unit forward component) of the homogeneous pixel (x, y, 1)
        self.ray = self.R.T @ k_inv

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - self.C) @ self.R.T

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (N, 2) and depths along the optical axis (N,) of world points (N, 3)."""
        cam = self.to_camera(points)
        z = cam[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = np.stack([self.focal * cam[..., 0] / z + self.cx, self.focal * cam[..., 1] / z + self.cy], -1)
        return uv, z

    def unproject(self, pixels: np.ndarray, depth: float | np.ndarray) -> np.ndarray:
        """World points at the given depth (along the optical axis) behind pixels (N, 2)."""
        px = np.asarray(pixels, dtype=np.float64)
        hom = np.concatenate([px, np.ones(px.shape[:-1] + (1,))], -1)
        return self.C + np.asarray(depth)[..., None] * (hom @ self.ray.T)

    def plane_inverse_depth(self, normal: np.ndarray, point: np.ndarray) -> np.ndarray | None:
        """Coefficients (a, b, c) with 1/depth = a x + b y + c on the plane, or None if the camera lies in it."""
        dist = float(normal @ (point - self.C))
        if abs(dist) < 1e-9:
            return None
        return (normal @ self.ray) / dist


def ellipsoid_bounds(view: View, centres: np.ndarray, axes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact image bounding boxes (N, 4: x0, y0, x1, y1) of ellipsoids ``c + A u, |u| <= 1`` and whether each
    lies wholly in front of the near plane (the boxes of the others are meaningless).

    The outline of a projected ellipsoid is the conic dual to ``P Q* P^T`` with ``Q* = [[A A^T - c c^T, -c],
    [-c^T, -1]]``; entry (i, j) is ``(A^T p_i).(A^T p_j) - (p_i.c + q_i)(p_j.c + q_j)`` for the rows
    ``(p_i, q_i)`` of ``P = K [R | -R C]``, and the box's edges are its tangent lines x = const and y = const."""
    P = view.K @ np.hstack([view.R, (-view.R @ view.C)[:, None]])
    a = np.einsum("nki,jk->jni", axes, P[:, :3])  # (3, N, 3): A^T p_i
    b = centres @ P[:, :3].T + P[:, 3]  # (N, 3): p_i.c + q_i

    def conic(i: int, j: int) -> np.ndarray:
        return np.einsum("ni,ni->n", a[i], a[j]) - b[:, i] * b[:, j]

    c22 = conic(2, 2)
    bounds = np.empty((len(centres), 4))
    for k in (0, 1):
        cii, cij = conic(k, k), conic(k, 2)
        root = np.sqrt(np.maximum(cij * cij - cii * c22, 0.0))
        lo, hi = (cij - root) / c22, (cij + root) / c22
        bounds[:, k], bounds[:, k + 2] = np.minimum(lo, hi), np.maximum(lo, hi)
    depth_min = b[:, 2] - np.linalg.norm(a[2], axis=1)  # the third row of K R is the optical axis
    return bounds, depth_min > NEAR


# ----------------------------------------------------------------------------------------------------------------
# Procedural textures
# ----------------------------------------------------------------------------------------------------------------

GROUND_KINDS = {"plaza": "tiles", "street": "asphalt", "park": "grass", "beach": "sand", "yard": "dirt"}
FACADE_STYLES = ("plaster", "brick", "concrete", "panels")
GROUND_PPM = 64.0  # ground texels per metre at mip level 0; the ground tile is 512 texels (8 m) square
FACADE_PPM = 16.0  # facade texels per metre; a facade texture covers 36 m x 24 m, cropped per building
_VARIANTS = 3  # cached variants of each texture kind, recoloured per scene


def _noise(rng: np.random.Generator, h: int, w: int, cells_y: int, cells_x: int, periodic: bool = True) -> np.ndarray:
    """Smooth value noise (about unit variance), ``cells`` random values per side; periodic if the cells divide
    the size (the texture then tiles seamlessly)."""
    grid = rng.standard_normal((cells_y, cells_x)).astype(_F32)
    pad = np.pad(grid, 2, mode="wrap" if periodic else "reflect")
    sy, sx = h / cells_y, w / cells_x
    big = cv2.resize(pad, (round((cells_x + 4) * sx), round((cells_y + 4) * sy)), interpolation=cv2.INTER_CUBIC)
    oy, ox = round(2 * sy), round(2 * sx)
    return big[oy : oy + h, ox : ox + w]


def _fbm(rng: np.random.Generator, h: int, w: int, cells: int, octaves: int, periodic: bool = True,
         stretch: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Fractal noise normalised to unit standard deviation; ``stretch`` elongates the grains (y, x)."""
    total = np.zeros((h, w), _F32)
    amp = 1.0
    for k in range(octaves):
        c = cells << k
        total += amp * _noise(rng, h, w, max(1, c // stretch[0]), max(1, c // stretch[1]), periodic)
        amp *= 0.55
    return total / max(float(total.std()), 1e-6)


def _colourise(base: Sequence[float], gain: np.ndarray) -> np.ndarray:
    """BGR uint8 image: ``base`` colour times (1 + gain)."""
    return np.clip((1.0 + gain)[..., None] * np.asarray(base, _F32), 0, 255).astype(np.uint8)


def _ground_tile(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A periodic ground texture, 512 texels (8 m) square."""
    s = 512
    yy, xx = np.mgrid[0:s, 0:s]
    if kind == "grass":
        green, dry = np.array([45, 125, 80], _F32), np.array([70, 150, 160], _F32)
        mix = 0.65 / (1 + np.exp(-1.6 * _fbm(rng, s, s, 4, 3)))[..., None]
        grain = 0.16 * _fbm(rng, s, s, 64, 2) + 0.08 * _noise(rng, s, s, 256, 256)
        img = ((1 - mix) * green + mix * dry) * (1 + grain)[..., None]
    elif kind == "tiles":
        tile = int(rng.choice([32, 64]))  # a power of two: a whole number of tiles per texture
        n = s // tile
        base, other = np.array([150, 160, 170], _F32), np.array([120, 135, 150], _F32)
        checker = (((yy // tile) + (xx // tile)) % 2)[..., None] if rng.random() < 0.5 else 0
        per_tile = np.kron(rng.uniform(-0.07, 0.07, (n, n)), np.ones((tile, tile)))[..., None]
        img = (base * (1 - checker) + other * checker) * (1 + per_tile + 0.05 * _fbm(rng, s, s, 32, 2)[..., None])
        img[((yy % tile) < 2) | ((xx % tile) < 2)] *= 0.55
    elif kind == "asphalt":
        shade = 0.07 * _fbm(rng, s, s, 8, 2) + 0.09 * _noise(rng, s, s, 256, 256)
        speck = (rng.random((s, s)) > 0.985) * 0.35
        img = np.array([78, 78, 82], _F32) * (1 + shade + speck)[..., None]
        img[(np.abs(xx - s // 2) < 4) & (yy < s * 3 // 8)] = (215, 225, 230)  # a dashed road marking
    elif kind == "sand":
        ripples = np.sin(2 * np.pi * (int(rng.integers(18, 30)) * yy / s + 0.5 * _fbm(rng, s, s, 4, 2)))
        gain = 0.05 * ripples + 0.07 * _fbm(rng, s, s, 8, 3) + 0.05 * _noise(rng, s, s, 256, 256)
        img = np.array([140, 185, 215], _F32) * (1 + gain)[..., None]
    else:  # dirt and gravel
        pebbles = np.clip(_noise(rng, s, s, 128, 128) - 1.1, 0, None) * 0.5
        gain = 0.12 * _fbm(rng, s, s, 4, 3) + 0.08 * _noise(rng, s, s, 256, 256) + pebbles
        img = np.array([80, 105, 125], _F32) * (1 + gain)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _facade(rng: np.random.Generator, style: str) -> np.ndarray:
    """A building wall, 36 m x 24 m at FACADE_PPM (row 0 at the top, the ground at the last row)."""
    ppm, width_m, height_m = FACADE_PPM, 36.0, 24.0
    w, h = int(width_m * ppm), int(height_m * ppm)
    xm = (np.arange(w, dtype=_F32) + 0.5) / ppm
    ym = height_m - (np.arange(h, dtype=_F32) + 0.5) / ppm  # height above the ground
    joint = 1.0 / ppm  # mortar and seams one texel wide
    if style == "brick":  # large bricks or blocks
        bw, bh = rng.uniform(0.45, 0.6), rng.uniform(0.22, 0.3)
        row = np.floor(ym / bh)
        col = np.floor(xm[None, :] / bw + 0.5 * (row[:, None] % 2))
        tone = rng.uniform(-0.15, 0.15, 97).astype(_F32)[((row[:, None] * 131 + col * 17) % 97).astype(int)]
        img = _colourise((60, 80, 150), tone + 0.06 * _fbm(rng, h, w, 8, 2, periodic=False))
        mortar = ((ym % bh) < joint)[:, None] | (((xm[None, :] / bw + 0.5 * (row[:, None] % 2)) % 1) * bw < joint)
        img[mortar] = (170, 180, 185)
        return img
    if style == "panels":
        pw = rng.uniform(0.9, 1.6)
        tone = rng.uniform(-0.1, 0.1, 13).astype(_F32)[np.floor(xm / pw).astype(int) % 13][None, :]
        ribs = 0.04 * np.sin(2 * np.pi * ym / 0.5)[:, None]
        img = _colourise((150, 150, 140), tone + ribs + 0.04 * _fbm(rng, h, w, 8, 2, periodic=False))
        img[:, (xm % pw) < joint] //= 2
        return img
    # plaster or concrete, with windows
    base = (175, 190, 205) if style == "plaster" else (150, 152, 150)
    img = _colourise(base, 0.08 * _fbm(rng, h, w, 6, 3, periodic=False, stretch=(1, 3))).astype(_F32)
    if style == "concrete":
        img[(ym % 1.2) < joint] *= 0.8
    floor_h, spacing = rng.uniform(2.8, 3.4), rng.uniform(2.2, 3.4)
    win_w, win_h, sill = min(spacing - 0.6, rng.uniform(1.0, 1.5)), rng.uniform(1.3, 1.8), rng.uniform(0.8, 1.0)
    fx = (xm % spacing) - (spacing - win_w) / 2
    fy = (ym % floor_h) - sill
    in_x, in_y = (fx >= 0) & (fx < win_w), (fy >= 0) & (fy < win_h) & (ym > floor_h * 0.9)
    window = in_y[:, None] & in_x[None, :]
    inner = ((fx > 0.07) & (fx < win_w - 0.07))[None, :] & ((fy > 0.07) & (fy < win_h - 0.07))[:, None]
    lit = rng.uniform(-0.25, 0.45, 11).astype(_F32)[
        ((np.floor(xm / spacing)[None, :] * 7 + np.floor(ym / floor_h)[:, None] * 3) % 11).astype(int)]
    glass = np.array([95, 75, 60], _F32) * (1 + (1 - np.clip(fy / win_h, 0, 1))[:, None] * 0.35 + lit)[..., None]
    img = np.where(window[..., None], glass, img)
    img[window & ~inner] = (225, 225, 220)
    return np.clip(img, 0, 255).astype(np.uint8)


def _leaves(rng: np.random.Generator, h: int, w: int, base: Sequence[float]) -> np.ndarray:
    return _colourise(base, 0.35 * np.tanh(1.5 * _fbm(rng, h, w, 8, 3)) + 0.12 * _noise(rng, h, w, h // 4, w // 4))


def _prop_texture(rng: np.random.Generator, kind: str) -> np.ndarray:
    """Textures of props and roofs (BGR, or BGRA for the alpha-tested crown sprite)."""
    if kind == "crate":  # planks with grain and a darker frame
        size = 128
        planks = int(rng.integers(4, 7))
        row = (np.arange(size) * planks // size)[:, None]
        tone = rng.uniform(-0.12, 0.12, planks).astype(_F32)[row] + np.zeros((1, size), _F32)
        grain = 0.1 * _fbm(rng, size, size, 4, 2, periodic=False, stretch=(1, 8))
        img = _colourise((70, 125, 170), tone + grain).astype(_F32)
        yy, xx = np.mgrid[0:size, 0:size]
        img[(yy * planks) % size < 2] *= 0.5
        border = size // 9
        img[(yy < border) | (yy >= size - border) | (xx < border) | (xx >= size - border)] *= 0.72
        return np.clip(img, 0, 255).astype(np.uint8)
    if kind in ("post", "pillar", "trunk"):  # vertical streaks: painted metal, concrete, bark
        base = {"pillar": (175, 180, 185), "post": (60, 70, 75), "trunk": (45, 70, 95)}[kind]
        return _colourise(base, (0.3 if kind == "trunk" else 0.12) * _fbm(rng, 128, 16, 2, 3, False, (8, 1)))
    if kind == "hedge":
        return _leaves(rng, 64, 128, (40, 105, 50))
    if kind == "crown":  # a round bunch of leaves with a ragged outline, transparent outside
        size = 128
        img = _leaves(rng, size, size, (40, 115, 60))
        yy, xx = (np.mgrid[0:size, 0:size].astype(_F32) + 0.5) / size * 2 - 1
        inside = 1 - (xx * xx + yy * yy) + 0.25 * _noise(rng, size, size, 16, 16)
        return np.dstack([img, np.where(inside > 0.15, 255, 0).astype(np.uint8)])
    if kind == "roof":
        return _colourise((70, 72, 80), 0.1 * _fbm(rng, 64, 64, 4, 3, periodic=False))
    raise ValueError(f"unknown texture kind {kind!r}")


@lru_cache(maxsize=None)
def _library(kind: str, variant: int) -> tuple[np.ndarray, ...]:
    """A texture of ``kind`` as a BGRA mip pyramid, generated once per process: deterministic from ``kind`` and
    ``variant``; scenes pick a variant and recolour it when they bake in their lighting."""
    rng = np.random.default_rng([zlib.crc32(kind.encode()), variant])
    if kind in GROUND_KINDS.values():
        return tuple(_pyramid(_ground_tile(rng, kind), _GROUND_LEVELS))
    if kind in FACADE_STYLES:
        return tuple(_pyramid(_facade(rng, kind), 5))
    return tuple(_pyramid(_prop_texture(rng, kind), 5))


@lru_cache(maxsize=None)
def _cloud_noise(variant: int) -> np.ndarray:
    return _fbm(np.random.default_rng([zlib.crc32(b"clouds"), variant]), 256, 256, 4, 4)


@lru_cache(maxsize=64)
def _face_atlas(skin: tuple[int, ...], hair: tuple[int, ...], eye: tuple[int, ...], long_hair: bool,
                size: int = 256) -> np.ndarray:
    """BGR texture atlas (size x 2 size) of the head ellipsoid over U in [-2, 2] (see :meth:`Renderer._cast`): the
    middle half is the face, an orthographic view along the face axis (X across in [-1, 1], Z up); the outer
    quarters are the back of the head. Colours are BGR."""
    s = size
    skin_c, hair_c = np.array(skin, _F32), np.array(hair, _F32)

    def px(x: float, z: float) -> tuple[int, int]:
        return int(round((x + 1) / 2 * (s - 1))), int(round((1 - z) / 2 * (s - 1)))

    def ax(rx: float, rz: float) -> tuple[int, int]:
        return max(1, int(round(rx * (s - 1) / 2))), max(1, int(round(rz * (s - 1) / 2)))

    grid = (np.mgrid[0:s, 0:s].astype(_F32) / (s - 1))
    zz, xx = 1 - 2 * grid[0], 2 * grid[1] - 1
    front = np.empty((s, s, 3), _F32)
    front[:] = skin_c
    blush = np.exp(-(((np.abs(xx) - 0.45) / 0.2) ** 2 + ((zz + 0.2) / 0.2) ** 2))
    front *= (1 - 0.06 * blush)[..., None]
    front[..., 2] *= 1 + 0.08 * blush
    socket = np.exp(-(((np.abs(xx) - 0.38) / 0.24) ** 2 + ((zz - 0.11) / 0.13) ** 2))
    front *= (1 - 0.22 * socket)[..., None]
    hairline = (zz > 0.56 - 0.35 * xx * xx) | ((np.abs(xx) > 0.86) & (zz > -0.15))
    front[hairline] = hair_c
    front = np.clip(front, 0, 255).astype(np.uint8)
    brow = tuple(float(c) for c in np.clip(hair_c * 0.55, 0, 255))
    dark = (25.0, 22.0, 22.0)
    for side in (-1, 1):
        cv2.ellipse(front, px(side * 0.38, 0.23), ax(0.2, 0.06), 0, 195, 345, brow, max(2, s // 30), cv2.LINE_AA)
        cv2.ellipse(front, px(side * 0.385, 0.087), ax(0.15, 0.062), 0, 0, 360, (215, 222, 228), -1, cv2.LINE_AA)
        cv2.circle(front, px(side * 0.385, 0.087), ax(0.062, 0)[0], tuple(float(c) for c in eye), -1, cv2.LINE_AA)
        cv2.circle(front, px(side * 0.385, 0.087), ax(0.03, 0)[0], (10, 10, 10), -1, cv2.LINE_AA)
        cv2.ellipse(front, px(side * 0.385, 0.087), ax(0.16, 0.07), 0, 180, 360, dark, max(2, s // 60), cv2.LINE_AA)
        cv2.ellipse(front, px(side * 0.08, -0.26), ax(0.045, 0.025), 0, 0, 360, (40, 45, 70), -1, cv2.LINE_AA)
    lip = tuple(float(c) for c in np.clip(skin_c * np.array([0.55, 0.5, 0.85]), 0, 255))
    cv2.ellipse(front, px(0, -0.47), ax(0.21, 0.045), 0, 180, 360, lip, -1, cv2.LINE_AA)
    cv2.ellipse(front, px(0, -0.5), ax(0.17, 0.05), 0, 0, 180, lip, -1, cv2.LINE_AA)
    cv2.line(front, px(-0.21, -0.48), px(0.21, -0.48), (30, 30, 60), max(1, s // 100), cv2.LINE_AA)
    shadow = np.exp(-((xx / 0.16) ** 2 + ((zz + 0.33) / 0.06) ** 2))
    front = (front * (1 - 0.25 * shadow)[..., None]).astype(np.uint8)
    back = np.empty((s, s // 2, 3), _F32)
    back[:] = hair_c
    if not long_hair:
        back[zz[:, : s // 2] < -0.45] = skin_c
    back = np.clip(back * (1 + 0.08 * np.sin(40 * xx[:, : s // 2] + 3 * zz[:, : s // 2]))[..., None], 0, 255)
    back = back.astype(np.uint8)
    return np.concatenate([back, cv2.GaussianBlur(front, (3, 3), 0), back[:, ::-1]], axis=1)


def _pyramid(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """BGRA mip pyramid (level 0 first) of a BGR(A) texture."""
    img = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA) if img.shape[2] == 3 else np.ascontiguousarray(img)
    out = [img]
    while len(out) < levels and min(out[-1].shape[:2]) >= 4:
        h, w = out[-1].shape[:2]
        out.append(cv2.resize(out[-1], ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA))
    return out


# ----------------------------------------------------------------------------------------------------------------
# The human subject
# ----------------------------------------------------------------------------------------------------------------

SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (175, 200, 240), (150, 180, 225), (120, 160, 210), (95, 135, 190), (70, 105, 160), (50, 75, 120))
HAIR_COLOURS: tuple[tuple[int, int, int], ...] = (
    (20, 20, 25), (25, 35, 55), (35, 55, 90), (70, 120, 170), (140, 140, 145))
TROUSER_COLOURS: tuple[tuple[int, int, int], ...] = ((110, 70, 40), (30, 30, 32), (110, 150, 170), (90, 90, 95))


@dataclass(frozen=True)
class SubjectSpec:
    """A human figure. ``(x, y)`` is the ground point under it (its feet when standing, its middle when lying);
    ``facing`` is the yaw (camera convention) the face points to when standing, or the head points to when lying
    on the back (face up). Colours are BGR."""

    x: float = 0.0
    y: float = 0.0
    facing: float = 180.0
    pose: str = "standing"
    height: float = 1.75
    skin: tuple[int, int, int] = SKIN_TONES[1]
    hair: tuple[int, int, int] = HAIR_COLOURS[1]
    eyes: tuple[int, int, int] = (30, 50, 80)
    shirt: tuple[int, int, int] = (60, 60, 160)
    trousers: tuple[int, int, int] = TROUSER_COLOURS[0]
    shoes: tuple[int, int, int] = (30, 30, 35)
    long_sleeves: bool = True
    long_hair: bool = False
    idle_phase: float = 0.0


def random_subject(rng: np.random.Generator, facing: float, pose: str = "standing") -> SubjectSpec:
    hue = float(rng.uniform(0, 180))
    shirt = cv2.cvtColor(np.array([[[hue, rng.uniform(80, 220), rng.uniform(90, 220)]]], np.uint8),
                         cv2.COLOR_HSV2BGR)[0, 0]
    return SubjectSpec(
        facing=facing, pose=pose, height=float(rng.uniform(1.62, 1.9)),
        skin=SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], hair=HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))],
        eyes=((30, 50, 80), (90, 80, 40), (40, 90, 70))[int(rng.integers(3))],
        shirt=tuple(int(c) for c in shirt), trousers=TROUSER_COLOURS[int(rng.integers(len(TROUSER_COLOURS)))],
        shoes=((30, 30, 35), (40, 60, 90), (200, 200, 205))[int(rng.integers(3))],
        long_sleeves=bool(rng.random() < 0.6), long_hair=bool(rng.random() < 0.35),
        idle_phase=float(rng.uniform(0, 2 * np.pi)))


# name, centre (x across, y forward, z up; metres for a 1.75 m figure), radii, sideways tilt (deg), colour, head?
_BODY: tuple[tuple[str, tuple[float, float, float], tuple[float, float, float], float, str, bool], ...] = (
    ("head", (0, 0, 1.635), (0.078, 0.095, 0.115), 0, "skin", True),
    ("hair", (0, -0.014, 1.655), (0.084, 0.099, 0.108), 0, "hair", True),
    ("nose", (0, 0.088, 1.612), (0.012, 0.021, 0.024), 0, "skin", True),
    ("ear_l", (-0.079, -0.005, 1.625), (0.013, 0.026, 0.032), 0, "skin", True),
    ("ear_r", (0.079, -0.005, 1.625), (0.013, 0.026, 0.032), 0, "skin", True),
    ("neck", (0, -0.005, 1.5), (0.052, 0.052, 0.085), 0, "skin", False),
    ("torso", (0, 0, 1.25), (0.185, 0.11, 0.25), 0, "shirt", False),
    ("shoulder_l", (-0.145, 0, 1.415), (0.075, 0.07, 0.055), 0, "shirt", False),
    ("shoulder_r", (0.145, 0, 1.415), (0.075, 0.07, 0.055), 0, "shirt", False),
    ("pelvis", (0, 0, 0.95), (0.165, 0.105, 0.15), 0, "trousers", False),
    ("upper_arm_l", (-0.215, 0, 1.24), (0.05, 0.05, 0.165), 6, "shirt", False),
    ("upper_arm_r", (0.215, 0, 1.24), (0.05, 0.05, 0.165), -6, "shirt", False),
    ("forearm_l", (-0.245, 0.015, 0.97), (0.042, 0.042, 0.145), 3, "sleeve", False),
    ("forearm_r", (0.245, 0.015, 0.97), (0.042, 0.042, 0.145), -3, "sleeve", False),
    ("hand_l", (-0.255, 0.02, 0.77), (0.032, 0.022, 0.068), 0, "skin", False),
    ("hand_r", (0.255, 0.02, 0.77), (0.032, 0.022, 0.068), 0, "skin", False),
    ("thigh_l", (-0.09, 0, 0.66), (0.078, 0.082, 0.23), -2, "trousers", False),
    ("thigh_r", (0.09, 0, 0.66), (0.078, 0.082, 0.23), 2, "trousers", False),
    ("shin_l", (-0.095, 0, 0.28), (0.056, 0.06, 0.22), 0, "trousers", False),
    ("shin_r", (0.095, 0, 0.28), (0.056, 0.06, 0.22), 0, "trousers", False),
    ("foot_l", (-0.095, 0.06, 0.04), (0.045, 0.11, 0.04), 0, "shoes", False),
    ("foot_r", (0.095, 0.06, 0.04), (0.045, 0.11, 0.04), 0, "shoes", False),
)
_LONG_HAIR = ("long_hair", (0, -0.05, 1.52), (0.09, 0.06, 0.16), 0, "hair", True)
_NECK_PIVOT = np.array([0.0, 0.0, 1.5])
_LYING_LIFT = 0.11  # the torso's half depth: a figure lying on its back rests on the ground
# key points in the 1.75 m body frame
_KEY_POINTS = {
    "eye_l": (-0.03, 0.087, 1.645), "eye_r": (0.03, 0.087, 1.645), "eyes": (0, 0.09, 1.64),
    "chin": (0, 0.07, 1.525), "chest": (0, 0.1, 1.4), "waist": (0, 0.1, 1.05), "knees": (0, 0.08, 0.48),
    "centre": (0, 0, 0.88),
}


def _rot_x(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


class Body:
    """The subject's geometry: ellipsoids in world coordinates at time ``t`` (with a small idle motion)."""

    def __init__(self, spec: SubjectSpec) -> None:
        self.spec = spec
        parts = list(_BODY) + ([_LONG_HAIR] if spec.long_hair else [])
        scale = spec.height / 1.75
        self.names = [p[0] for p in parts]
        self.local_centres = np.array([p[1] for p in parts]) * scale
        self.local_axes = np.stack([_rot_y(p[3]) @ np.diag(p[2]) * scale for p in parts])
        palette = {"skin": spec.skin, "hair": spec.hair, "shirt": spec.shirt, "trousers": spec.trousers,
                   "shoes": spec.shoes, "sleeve": spec.shirt if spec.long_sleeves else spec.skin}
        self.colours = np.array([palette[p[4]] for p in parts], _F32)
        self.in_head = np.array([p[5] for p in parts])
        self.head_parts = [self.names.index("head"), self.names.index("hair")]
        self.textured = np.array([p[0] == "head" for p in parts])
        self.scale = scale
        facing = spec.facing
        if spec.pose == "standing":
            rot = _rot_z(-facing)  # body frame y (forward) -> the facing direction
            self.origin = np.array([spec.x, spec.y, 0.0])
        elif spec.pose == "lying":
            head_dir = np.array([math.sin(math.radians(facing)), math.cos(math.radians(facing)), 0.0])
            up = np.array([0.0, 0.0, 1.0])
            rot = np.stack([np.cross(up, head_dir), up, head_dir], axis=1)
            self.origin = np.array([spec.x, spec.y, _LYING_LIFT * scale]) - head_dir * 0.88 * scale
        else:
            raise ValueError(f"unknown pose {spec.pose!r} (expected one of {POSES})")
        self.rotation = rot

    def _idle(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Body-frame centres and axes at time t: the head turns and nods a little, the chest breathes."""
        ph = self.spec.idle_phase
        turn, nod = 2.5 * math.sin(2 * math.pi * t / 4.3 + ph), 1.2 * math.sin(2 * math.pi * t / 3.1 + ph)
        head_rot = _rot_z(turn) @ _rot_x(nod)
        pivot = _NECK_PIVOT * self.scale
        centres = self.local_centres.copy()
        axes = self.local_axes.copy()
        centres[self.in_head] = (centres[self.in_head] - pivot) @ head_rot.T + pivot
        axes[self.in_head] = head_rot @ axes[self.in_head]
        torso = self.names.index("torso")
        axes[torso] = axes[torso] * (1 + 0.012 * math.sin(2 * math.pi * t / 3.7 + ph))
        centres[:, 0] += 0.004 * math.sin(2 * math.pi * t / 5.3 + ph)
        return centres, axes

    def parts(self, t: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """World centres (N, 3) and axes (N, 3, 3; columns are the semi-axes) at time t."""
        centres, axes = self._idle(t)
        return centres @ self.rotation.T + self.origin, self.rotation @ axes

    def point(self, name: str) -> np.ndarray:
        """A named key point (eye_l, eye_r, eyes, chin, chest, waist, knees, centre), world coordinates, at rest."""
        return self.rotation @ (np.array(_KEY_POINTS[name]) * self.scale) + self.origin


@dataclass(frozen=True)
class Extent:
    """Where the subject lands in an image: bounding boxes (x0, y0, x1, y1) in pixels of the whole body and of
    the head (with its hair). Parts crossing the camera's near plane (a camera close to a body) are left out of
    the boxes, which then only bound the rest; ``body_whole`` / ``head_whole`` say whether nothing was left out."""

    body: np.ndarray
    head: np.ndarray
    body_whole: bool
    head_whole: bool


def subject_extent(view: View, body: Body, t: float = 0.0,
                   parts: tuple[np.ndarray, np.ndarray] | None = None) -> Extent:
    """The subject's extent seen by ``view`` at time ``t`` (``parts``: ``body.parts(t)`` if already at hand)."""
    centres, axes = body.parts(t) if parts is None else parts
    bounds, in_front = ellipsoid_bounds(view, centres, axes)
    head = np.zeros(len(centres), bool)
    head[body.head_parts] = True

    def union(select: np.ndarray) -> np.ndarray:
        b = bounds[select & in_front]
        if not len(b):
            return np.full(4, np.nan)
        return np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()])

    return Extent(union(np.ones(len(centres), bool)), union(head), bool(in_front.all()), bool(in_front[head].all()))


# ----------------------------------------------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Plane:
    """A textured rectangle ``origin + s a + t b`` (s, t in [0, 1]); texture row 0 along ``a`` at t = 0.
    Seen from the side its normal ``a x b`` points to, unless two-sided. The texture is a shared BGRA pyramid
    whose colour is multiplied by ``gain`` (lighting and tint), level by level when first needed."""

    origin: np.ndarray
    a: np.ndarray
    b: np.ndarray
    pyramid: Sequence[np.ndarray]
    gain: np.ndarray
    texels_per_m: float
    two_sided: bool = False
    _levels: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def level(self, k: int) -> np.ndarray:
        if k not in self._levels:
            g = self.gain
            self._levels[k] = cv2.multiply(self.pyramid[k], (float(g[0]), float(g[1]), float(g[2]), 1.0))
        return self._levels[k]


@dataclass
class Sky:
    """The sky at infinity (BGR colours)."""

    zenith: np.ndarray
    horizon: np.ndarray
    sun_colour: np.ndarray
    clouds: np.ndarray  # periodic alpha texture
    cloud_colour: np.ndarray
    cloud_scale: float  # texture periods per unit of tan(zenith angle)


@dataclass
class Scene:
    """Everything :class:`Renderer` draws (see :func:`build_scene`)."""

    ground_tiles: list[np.ndarray]  # BGRA periodic tile pyramid, level k has texels 2^k / ground_ppm metres
    ground_ppm: float
    sky: Sky
    planes: list[Plane]
    body: Body
    face_atlas: np.ndarray
    light: np.ndarray  # unit vector toward the sun
    ambient: float
    diffuse: float
    haze: np.ndarray  # BGR
    haze_distance: float  # metres at which the haze is half
    shadows: list[np.ndarray]  # ground polygons (n, 2)
    shadow_gain: float
    location: str


def _unit_normal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a x b, normalised (np.cross is slow on single vectors)."""
    n = np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])
    return n / np.linalg.norm(n)


def _box_faces(centre: np.ndarray, size: Sequence[float], yaw: float, sides: Sequence[Sequence[np.ndarray]],
               top: Sequence[np.ndarray] | None, light: np.ndarray, ambient: float, diffuse: float,
               tint: np.ndarray) -> list[Plane]:
    """The four sides (and roof) of a box standing on the ground, each with its sun shading baked in.
    ``sides`` are texture pyramids used in turn (front, right, back, left); the box's local +y is ``yaw``."""
    w, d, h = size
    rot = _rot_z(-yaw)
    ex, ey = rot @ np.array([1.0, 0, 0]), rot @ np.array([0, 1.0, 0])
    top_c = centre + np.array([0, 0, h])
    corners = [top_c + (-w / 2) * ex + (d / 2) * ey, top_c + (w / 2) * ex + (d / 2) * ey,
               top_c + (w / 2) * ex - (d / 2) * ey, top_c + (-w / 2) * ex - (d / 2) * ey]
    # the corners run clockwise seen from above and b points down, so a x b is the outward normal
    faces = [(corners[k], corners[(k + 1) % 4] - corners[k], np.array([0, 0, -h]), sides[k % len(sides)])
             for k in range(4)]
    if top is not None:
        faces.append((corners[3], corners[2] - corners[3], corners[0] - corners[3], top))
    planes = []
    for origin, a, b, tex in faces:
        normal = _unit_normal(a, b)
        shade = ambient + diffuse * max(0.0, float(normal @ light))
        planes.append(Plane(origin, a, b, tex, shade * tint, tex[0].shape[1] / float(np.linalg.norm(a))))
    return planes


def _crown(centre: np.ndarray, radius: float, half_height: float, sprite: Sequence[np.ndarray], light: np.ndarray,
           ambient: float, diffuse: float, tint: np.ndarray) -> list[Plane]:
    """A tree crown: two crossed vertical sprites and a horizontal one (two-sided, alpha-tested)."""
    ex, ey, ez = np.eye(3)
    faces = [(centre - radius * ax + half_height * ez, 2 * radius * ax, -2 * half_height * ez) for ax in (ex, ey)]
    faces.append((centre - radius * ex - radius * ey, 2 * radius * ex, 2 * radius * ey))
    planes = []
    for origin, a, b in faces:
        normal = _unit_normal(a, b)
        shade = ambient + diffuse * (0.4 + 0.5 * abs(float(normal @ light)))
        planes.append(Plane(origin, a, b, sprite, shade * tint, sprite[0].shape[1] / (2 * radius), True))
    return planes


def _facade_crop(pyramid: Sequence[np.ndarray], start_m: float, width_m: float, height_m: float) -> list[np.ndarray]:
    """The part of a facade pyramid ``width_m`` wide from ``start_m``, ``height_m`` tall from the ground."""
    out = []
    for k, level in enumerate(pyramid):
        scale = FACADE_PPM / 2 ** k
        c0 = int(round(start_m * scale))
        c1 = max(c0 + 1, int(round((start_m + width_m) * scale)))
        rows = max(1, int(round(height_m * scale)))
        out.append(level[level.shape[0] - rows:, c0:c1])
    return out


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip((p - a) @ ab / max(ab @ ab, 1e-12), 0, 1))
    return float(np.linalg.norm(p - (a + t * ab)))


def _cross2(u: np.ndarray, v: np.ndarray) -> float:
    return float(u[0] * v[1] - u[1] * v[0])


def _in_triangle(p: np.ndarray, tri: Sequence[np.ndarray]) -> bool:
    a, b, c = tri
    d1 = _cross2(b - a, p - a)
    d2 = _cross2(c - b, p - b)
    d3 = _cross2(a - c, p - c)
    return bool((d1 >= 0 and d2 >= 0 and d3 >= 0) or (d1 <= 0 and d2 <= 0 and d3 <= 0))


class _Clearance:
    """Keeps props out of the camera's way: not near its path, not between it and the subject."""

    def __init__(self, subject_xy: np.ndarray, cameras: Sequence[np.ndarray]) -> None:
        self.subject = subject_xy
        self.cams = [np.asarray(c, float)[:2] for c in cameras]

    def ok(self, xy: np.ndarray, radius: float) -> bool:
        if np.linalg.norm(xy - self.subject) < radius + 1.2:
            return False
        for i, c in enumerate(self.cams):
            if np.linalg.norm(xy - c) < radius + 1.5:
                return False
            if _segment_distance(xy, c, self.subject) < radius + 0.9:
                return False
            for d in self.cams[i + 1:]:
                if _segment_distance(xy, c, d) < radius + 1.5:
                    return False
                if abs(_cross2(d - c, self.subject - c)) > 1e-6 and _in_triangle(xy, (c, d, self.subject)):
                    return False
        return True


def _box_shadow(centre: np.ndarray, size: Sequence[float], yaw: float, light: np.ndarray) -> np.ndarray:
    w, d, h = size
    rot = _rot_z(-yaw)
    corners = []
    for sx in (-0.5, 0.5):
        for sy in (-0.5, 0.5):
            for z in (0.0, h):
                p = centre + rot @ np.array([sx * w, sy * d, 0.0]) + np.array([0, 0, z])
                corners.append(p[:2] - light[:2] / light[2] * p[2])
    return cv2.convexHull(np.array(corners, np.float32))[:, 0, :].astype(np.float64)


def _ellipsoid_shadow(centre: np.ndarray, axes: np.ndarray, light: np.ndarray) -> np.ndarray:
    """The ground shadow (an ellipse, as a polygon) of an ellipsoid lit from direction ``light``."""
    proj = np.array([[1, 0, -light[0] / light[2]], [0, 1, -light[1] / light[2]]])
    c, m = proj @ centre, proj @ axes
    ang = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    # the shadow of {c + A u} is {Pc + PA u}: an ellipse with shape (PA)(PA)^T
    vals, vecs = np.linalg.eigh(m @ m.T)
    return c + ((vecs * np.sqrt(np.maximum(vals, 0))) @ np.stack([np.cos(ang), np.sin(ang)])).T


def build_scene(seed: int, location: str, subject: SubjectSpec, cameras: Sequence[np.ndarray]) -> Scene:
    """A scene around ``subject``: ground, sky, buildings, props and trees at many depths.

    ``cameras`` are the camera positions of the shot (start, middle, end): props are kept out of the camera's
    path and out of its line of sight to the subject, and the sun is placed on the camera's side so that the
    subject's face is lit.
    """
    if location not in LOCATIONS:
        raise ValueError(f"unknown location {location!r} (expected one of {LOCATIONS})")
    rng = np.random.default_rng(seed)

    def tint(amount: float = 0.12) -> np.ndarray:
        return np.clip(rng.uniform(1 - amount, 1 + amount) * rng.uniform(1 - amount / 2, 1 + amount / 2, 3), 0, 2)

    def texture(kind: str) -> tuple[np.ndarray, ...]:
        return _library(kind, int(rng.integers(_VARIANTS)))

    subject_xy = np.array([subject.x, subject.y])
    mid_cam = np.asarray(cameras[len(cameras) // 2], float)
    to_cam = mid_cam[:2] - subject_xy
    cam_az = math.degrees(math.atan2(to_cam[0], to_cam[1])) if np.linalg.norm(to_cam) > 1e-6 else rng.uniform(0, 360)
    sun_az = math.radians(cam_az + rng.uniform(-60, 60))
    sun_el = math.radians(rng.uniform(30, 62))
    light = np.array([math.sin(sun_az) * math.cos(sun_el), math.cos(sun_az) * math.cos(sun_el), math.sin(sun_el)])
    ambient, diffuse = float(rng.uniform(0.45, 0.58)), float(rng.uniform(0.45, 0.6))

    dusk = rng.random() < 0.2
    horizon = np.array((150, 185, 215) if dusk else (225, 215, 200), _F32) * tint(0.08).astype(_F32)
    cover = float(rng.uniform(0.15, 0.6))
    sky = Sky(zenith=np.array((150, 110, 90) if dusk else (205, 150, 95), _F32) * tint(0.12).astype(_F32),
              horizon=horizon, sun_colour=np.array((190, 235, 255), _F32),
              clouds=np.clip((_cloud_noise(int(rng.integers(_VARIANTS))) - (1.2 - 2.0 * cover)) / 1.2, 0, 1),
              cloud_colour=np.array((245, 245, 245) if not dusk else (200, 210, 235), _F32),
              cloud_scale=float(rng.uniform(0.6, 1.4)))
    gain = min(1.0, ambient + diffuse * float(light[2])) * tint(0.15)
    ground = [cv2.multiply(level, (float(gain[0]), float(gain[1]), float(gain[2]), 1.0))
              for level in texture(GROUND_KINDS[location])]

    clear = _Clearance(subject_xy, cameras)
    planes: list[Plane] = []
    shadows: list[np.ndarray] = []
    reach = max(np.linalg.norm(np.asarray(c)[:2] - subject_xy) for c in cameras)

    # buildings (or walls) in a ring around the subject, facing it
    n_build, r_lo, r_hi, styles = {
        "plaza": (8, 12, 32, ("plaster", "brick", "concrete", "panels")),
        "street": (9, 9, 26, ("brick", "panels", "plaster", "concrete")),
        "park": (5, 28, 55, ("plaster", "concrete")),
        "beach": (5, 16, 40, ("plaster", "panels")),
        "yard": (7, 7, 20, ("brick", "concrete", "panels")),
    }[location]
    r_lo = max(r_lo, min(reach + 6, 40))
    built = 0
    for k in range(n_build * 3):
        if built >= n_build:
            break
        az = 2 * math.pi * (k + rng.uniform(-0.3, 0.3)) / n_build
        r = rng.uniform(r_lo, max(r_hi, r_lo + 8))
        width, depth = rng.uniform(6, 20), rng.uniform(5, 12)
        height = rng.uniform(2.2, 3.5) if location == "yard" and rng.random() < 0.6 else rng.uniform(5, 22)
        if location == "beach":
            height = min(height, 7.0)
        pos = subject_xy + r * np.array([math.sin(az), math.cos(az)])
        if not clear.ok(pos, math.hypot(width, depth) / 2 + 1):
            continue
        yaw = math.degrees(az) + 180 + rng.uniform(-15, 15)  # the box's local +y faces the subject
        facade = texture(styles[int(rng.integers(len(styles)))])
        start = rng.uniform(0, 36 - width - depth)
        walls = [_facade_crop(facade, start, width, height), _facade_crop(facade, start + width, depth, height)]
        centre = np.array([pos[0], pos[1], 0.0])
        planes += _box_faces(centre, (width, depth, height), yaw, walls, texture("roof"), light, ambient, diffuse,
                             tint(0.2))
        shadows.append(_box_shadow(centre, (width, depth, height), yaw, light))
        built += 1

    # props at many depths: crates, pillars, posts, hedges, trees
    kinds = {"plaza": ("crate", "pillar", "post", "crate", "tree"), "street": ("post", "crate", "post", "pillar"),
             "park": ("tree", "hedge", "post", "tree", "crate"), "beach": ("post", "crate", "post", "pillar"),
             "yard": ("crate", "crate", "post", "pillar", "hedge")}[location]
    n_props = int(rng.integers(8, 14))
    fwd = (subject_xy - mid_cam[:2]) / max(np.linalg.norm(subject_xy - mid_cam[:2]), 1e-6)
    dist = max(np.linalg.norm(subject_xy - mid_cam[:2]), 1.0)
    placed = 0
    for k in range(n_props * 6):
        if placed >= n_props:
            break
        kind = kinds[int(rng.integers(len(kinds)))]
        if k % 2 == 0:  # in the camera's field of view, in front of and behind the subject
            ang = math.radians(rng.uniform(-35, 35))
            rot2 = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
            pos = mid_cam[:2] + rot2 @ fwd * rng.uniform(0.35, 2.5) * dist
        else:
            az = rng.uniform(0, 2 * np.pi)
            pos = subject_xy + rng.uniform(2, 24) * np.array([math.sin(az), math.cos(az)])
        yaw = float(rng.uniform(0, 90))
        if kind == "crate":
            e = rng.uniform(0.5, 1.1)
            size = (e, e * rng.uniform(0.8, 1.2), e * rng.uniform(0.7, 1.0))
        elif kind == "pillar":
            e = rng.uniform(0.35, 0.6)
            size = (e, e, rng.uniform(2.5, 5.0))
        elif kind == "post":
            e = rng.uniform(0.1, 0.18)
            size = (e, e, rng.uniform(2.2, 4.0))
        elif kind == "hedge":
            size = (rng.uniform(2.0, 5.0), rng.uniform(0.6, 1.0), rng.uniform(0.8, 1.4))
        else:  # tree trunk
            e = rng.uniform(0.22, 0.35)
            size = (e, e, rng.uniform(2.0, 3.2))
        crown = (rng.uniform(1.2, 2.0), rng.uniform(1.3, 2.2)) if kind == "tree" else None
        radius = max(math.hypot(size[0], size[1]) / 2, crown[0] if crown else 0)
        if not clear.ok(pos, radius):
            continue
        centre = np.array([pos[0], pos[1], 0.0])
        tex = texture("trunk" if kind == "tree" else kind)
        top = tex if kind in ("crate", "hedge") else [level[: level.shape[1]] for level in tex]
        planes += _box_faces(centre, size, yaw, [tex], top, light, ambient, diffuse, tint(0.2))
        shadows.append(_box_shadow(centre, size, yaw, light))
        if crown:
            c = centre + np.array([0, 0, size[2] + crown[1] * 0.75])
            planes += _crown(c, crown[0], crown[1], texture("crown"), light, ambient, diffuse, tint(0.15))
            shadows.append(_ellipsoid_shadow(c, np.diag([crown[0], crown[0], crown[1]]), light))
        placed += 1

    body = Body(subject)
    centres, axes = body.parts(0.0)
    # the subject's shadow: convex hulls of its parts' shadows, one for each leg and one for the rest
    groups: dict[str, list[np.ndarray]] = {}
    for name, c, a in zip(body.names, centres, axes):
        key = name[-2:] if name.split("_")[0] in ("thigh", "shin", "foot") else "rest"
        groups.setdefault(key, []).append(_ellipsoid_shadow(c, a, light))
    shadows += [cv2.convexHull(np.concatenate(g).astype(np.float32))[:, 0, :].astype(np.float64)
                for g in groups.values()]
    return Scene(
        ground_tiles=ground, ground_ppm=GROUND_PPM, sky=sky, planes=planes, body=body,
        face_atlas=_face_atlas(subject.skin, subject.hair, subject.eyes, subject.long_hair),
        light=light, ambient=ambient, diffuse=diffuse, haze=horizon.copy(),
        haze_distance=float(rng.uniform(90, 220)), shadows=shadows, shadow_gain=float(rng.uniform(0.55, 0.7)),
        location=location)


# ----------------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------------


def _clip_polygon(poly: np.ndarray, coef: np.ndarray, bound: float) -> np.ndarray:
    """Sutherland-Hodgman: the part of a convex polygon (n, d) where ``poly @ coef[:d] + coef[d] >= bound``
    (``coef`` has d + 1 entries, or d entries for a homogeneous test with no constant)."""
    if len(poly) == 0:
        return poly
    vals = poly @ coef[: poly.shape[1]] + (coef[poly.shape[1]] if len(coef) > poly.shape[1] else 0.0) - bound
    out = []
    n = len(poly)
    for i in range(n):
        j = (i + 1) % n
        if vals[i] >= 0:
            out.append(poly[i])
        if (vals[i] >= 0) != (vals[j] >= 0):
            t = vals[i] / (vals[i] - vals[j])
            out.append(poly[i] + t * (poly[j] - poly[i]))
    return np.array(out) if out else np.zeros((0, poly.shape[1]))


class Renderer:
    """Renders one scene at one image size; create one per shot and call :meth:`render` for each frame.

    The scene is drawn at ``1 / background_scale`` of the resolution and interpolated up, the face (head and nose)
    at full resolution on top of it: the rest is softer, like a lens focused on the face, and the frame costs about
    a quarter of the pixel work.
    """

    def __init__(self, scene: Scene, width: int, height: int, background_scale: int = 2) -> None:
        self.scene = scene
        self.width, self.height = width, height
        self.background_scale = max(1, int(background_scale))
        self._background_pose: CameraPose | None = None  # the pose whose background the buffers hold
        self._panorama: tuple[View, np.ndarray, np.ndarray] | None = None  # see hold_background
        # the face is drawn at full resolution, the rest of the subject (smooth shapes) with the background
        self._sharp = np.isin(scene.body.names, ("head", "nose"))
        self._buffers: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
        # ground levels tiled up so that a band's footprint fits without wrapping (the fast path of warpPerspective)
        big = 1 << max(8, math.ceil(math.log2(1.6 * max(width, height) / self.background_scale)))
        self._ground = [np.ascontiguousarray(np.tile(level, (max(1, big // level.shape[0]),) * 2 + (1,)))
                        for level in scene.ground_tiles]
        self._ground_mean = np.array(cv2.mean(scene.ground_tiles[-1])[:3] + (255,), np.uint8)
        self._period = scene.ground_tiles[0].shape[0] / scene.ground_ppm
        planes = scene.planes
        self._a = np.array([p.a for p in planes]).reshape(-1, 3)
        self._b = np.array([p.b for p in planes]).reshape(-1, 3)
        origins = np.array([p.origin for p in planes]).reshape(-1, 3)
        self._corners = np.stack([origins, origins + self._a, origins + self._a + self._b, origins + self._b], axis=1)
        normals = np.cross(self._a, self._b)
        self._normals = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        self._centres = self._corners.mean(axis=1)
        self._texels_per_m = np.array([p.texels_per_m for p in planes])
        self._two_sided = np.array([p.two_sided for p in planes], bool)
        self._n_levels = np.array([len(p.pyramid) for p in planes], int)
        top = int(self._n_levels.max(initial=1))
        self._tex_size = np.array([[p.pyramid[min(k, len(p.pyramid) - 1)].shape[1::-1] for k in range(top)]
                                   for p in planes], float).reshape(len(planes), top, 2)
        # shadow polygons, padded to a common vertex count by repeating their last vertex
        n = max((len(poly) for poly in scene.shadows), default=0)
        self._shadows = np.array([np.concatenate([poly, np.repeat(poly[-1:], n - len(poly), 0)]) for poly in
                                  scene.shadows]).reshape(len(scene.shadows), n, 2)
        self._shadows = np.concatenate([self._shadows, np.full(self._shadows.shape[:2] + (1,), 0.005)], axis=2)

    def _canvas(self, w: int, h: int) -> tuple[np.ndarray, ...]:
        """Per-size buffers: image, inverse-depth buffer, a haze-coloured image, a ground-mean image, pixel
        coordinates along x and y."""
        if (w, h) not in self._buffers:
            haze = np.empty((h, w, 4), np.uint8)
            haze[:] = np.append(self.scene.haze, 255).astype(np.uint8)
            ground = np.empty((h, w, 4), np.uint8)
            ground[:] = self._ground_mean
            self._buffers[(w, h)] = (np.empty((h, w, 4), np.uint8), np.empty((h, w), _F32), haze, ground,
                                     np.arange(w, dtype=_F32), np.arange(h, dtype=_F32))
        return self._buffers[(w, h)]

    def _low_view(self, pose: CameraPose) -> View:
        """The view the background is drawn in (1 / background_scale of the frame's resolution)."""
        W, H = self.width, self.height
        scale = self.background_scale if W % self.background_scale == 0 and H % self.background_scale == 0 else 1
        return View(pose, W // scale, H // scale, focal=pose.focal_px(H) / scale)

    def hold_background(self, poses: Sequence[CameraPose]) -> bool:
        """Announce that the camera stays at one point and only turns or zooms through ``poses`` (a pan, tilt or
        zoom): the background is then drawn once, as a panorama covering every one of them, and each frame's
        background is a homography of it (exact for a pinhole camera turning about its centre). Returns whether
        a panorama was made (not when the views would need too wide a picture); moving the camera drops it."""
        self._panorama = None
        if not poses or any((p.x, p.y, p.z) != (poses[0].x, poses[0].y, poses[0].z) for p in poses):
            return False
        frames = [self._low_view(p) for p in poses]
        w, h = frames[0].width, frames[0].height
        mid = poses[len(poses) // 2]
        focal = max(v.focal for v in frames)  # the sharpest view sets the panorama's resolution
        axes = View(mid, 2, 2, focal=focal).R
        corners = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1], [w / 2, 0, 1],
                            [w / 2, h - 1, 1], [0, h / 2, 1], [w - 1, h / 2, 1]], float)  # corners, edge middles
        rays = np.concatenate([corners @ (axes @ v.ray).T for v in frames])  # in the panorama camera's axes
        if (rays[:, 2] < 0.3 * np.linalg.norm(rays, axis=1)).any():
            return False  # more than ~145 degrees across: not one perspective picture
        half = np.abs(rays[:, :2] / rays[:, 2:3]).max(axis=0) * focal + 2
        size = (2 * int(math.ceil(half[0])), 2 * int(math.ceil(half[1])))
        if size[0] * size[1] > 8 * w * h:
            return False
        view = View(mid, size[0], size[1], focal=focal)
        self._draw_background(view)
        img, zbuf = self._canvas(*size)[:2]
        self._panorama = (view, img.copy(), zbuf.copy())
        return True

    def render(self, pose: CameraPose, t: float = 0.0) -> np.ndarray:
        """The frame seen from ``pose`` at time ``t`` (seconds; drives the subject's idle motion), BGR uint8."""
        W, H = self.width, self.height
        low = self._low_view(pose)
        img, zbuf = self._canvas(low.width, low.height)[:2]
        if self._panorama is not None and np.array_equal(pose.position, self._panorama[0].C):
            self._from_panorama(low, img, zbuf)
        elif pose != self._background_pose:
            self._panorama = None
            self._draw_background(low)
            self._background_pose = pose
        # (otherwise the camera has not moved and the background is still in its buffers)
        frame, zbuf = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR), zbuf.copy()  # (the background buffers stay intact)
        self._draw_body(low, frame, zbuf, t, ~self._sharp)
        if low.width != W:
            frame = cv2.resize(frame, (W, H), interpolation=cv2.INTER_LINEAR)
            zbuf = cv2.resize(zbuf, (W, H), interpolation=cv2.INTER_NEAREST_EXACT)
        self._draw_body(View(pose, W, H), frame, zbuf, t, self._sharp)
        return frame

    def _from_panorama(self, view: View, img: np.ndarray, zbuf: np.ndarray) -> None:
        """The background of ``view`` warped from the panorama (see :meth:`hold_background`)."""
        pano, pano_img, pano_z = self._panorama
        # pixel q of the view -> K_p R_p R^T K^-1 q in the panorama; a point's depth along the view's axis is its
        # depth along the panorama's times (R_p R^T K^-1 q)_z, an affine function of q
        to_pano = pano.K @ pano.R @ view.ray
        size = (view.width, view.height)
        flags = cv2.WARP_INVERSE_MAP
        cv2.warpPerspective(pano_img, to_pano, size, dst=img, flags=cv2.INTER_LINEAR | flags,
                            borderMode=cv2.BORDER_REPLICATE)
        cv2.warpPerspective(pano_z, to_pano, size, dst=zbuf, flags=cv2.INTER_NEAREST | flags,
                            borderMode=cv2.BORDER_REPLICATE)
        g = (pano.R[2] @ view.ray).astype(_F32)
        zbuf *= (g[0] * np.arange(view.width, dtype=_F32))[None, :] + (g[1] * np.arange(view.height, dtype=_F32)
                                                                         + g[2])[:, None]
        self._background_pose = None

    def _draw_background(self, view: View) -> None:
        """Everything but the subject, into the view's image and inverse-depth buffers: sky, ground, shadows,
        planes, haze.

        For a rolled camera the sky and ground are drawn unrolled on a larger canvas and rotated into place
        (exact for a pinhole camera), which keeps their bands of constant depth axis-aligned and tight."""
        img, zbuf, haze, ground_const, xs, ys = self._canvas(view.width, view.height)
        roll = view.pose.roll % 360
        if roll:
            W, H = view.width, view.height
            rad = math.radians(roll)
            cw = int(math.ceil(W * abs(math.cos(rad)) + H * abs(math.sin(rad)))) + 2
            ch = int(math.ceil(W * abs(math.sin(rad)) + H * abs(math.cos(rad)))) + 2
            p = view.pose
            flat = View(CameraPose(p.x, p.y, p.z, p.yaw, p.pitch, 0.0, p.vfov), cw, ch, focal=view.focal)
            cimg, czbuf, chaze, cground, cxs, cys = self._canvas(cw, ch)
            czbuf.fill(-1.0)
            cimg[:] = chaze
            ground = self._draw_sky_and_ground(flat, cimg, czbuf, cground, cxs, cys)
            rot = cv2.getRotationMatrix2D((flat.cx, flat.cy), roll, 1.0)
            rot[:, 2] += [view.cx - flat.cx, view.cy - flat.cy]
            cv2.warpAffine(cimg, rot, (W, H), dst=img, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            cv2.warpAffine(czbuf, rot, (W, H), dst=zbuf, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        else:
            zbuf.fill(-1.0)  # inverse depth; -1 marks the sky, which gets no haze
            img[:] = haze
            ground = self._draw_sky_and_ground(view, img, zbuf, ground_const, xs, ys)
        if ground:
            self._draw_shadows(view, img)
        self._draw_planes(view, img, zbuf, xs, ys)
        self._apply_haze(img, zbuf, haze)

    # --- helpers ------------------------------------------------------------------------------------------------
    @staticmethod
    def _outside(view: View, cam: np.ndarray) -> np.ndarray:
        """Which polygons (P, n, 3 in camera coordinates) lie wholly outside one side of the view frustum."""
        f, W, H = view.focal, view.width, view.height
        sides = np.array([[f, 0, view.cx + 0.5], [-f, 0, W - 0.5 - view.cx], [0, f, view.cy + 0.5],
                          [0, -f, H - 0.5 - view.cy]])
        vals = cam @ sides.T  # (P, n, 4)
        return (vals < 0).all(axis=1).any(axis=1) | (cam[..., 2] <= NEAR).all(axis=1)

    @staticmethod
    def _roi(pts: np.ndarray, W: int, H: int) -> tuple[int, int, int, int] | None:
        x0, y0 = max(0, int(math.floor(pts[:, 0].min()))), max(0, int(math.floor(pts[:, 1].min())))
        x1, y1 = min(W, int(math.ceil(pts[:, 0].max())) + 1), min(H, int(math.ceil(pts[:, 1].max())) + 1)
        return (x0, y0, x1, y1) if x1 - x0 >= 2 and y1 - y0 >= 2 else None

    @staticmethod
    def _near_clipped(view: View, cam: np.ndarray) -> np.ndarray:
        """Pixel coordinates of a camera-space polygon clipped to the near plane (empty if nothing is left)."""
        poly = _clip_polygon(cam, np.array([0, 0, 1.0]), NEAR)
        if len(poly) < 3:
            return np.zeros((0, 2))
        return view.focal * poly[:, :2] / poly[:, 2:3] + [view.cx, view.cy]

    # --- sky and ground -----------------------------------------------------------------------------------------
    @staticmethod
    def _level_boxes(view: View, coef: np.ndarray, thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Bounding boxes (x0, y0, x1, y1; empty if x1 <= x0) and centres of the image regions where the affine
        function ``coef . (x, y, 1)`` lies between consecutive (decreasing) ``thresholds`` (plain Python: cheaper
        than numpy for a handful of points)."""
        W, H = view.width, view.height
        c0, c1, c2 = (float(c) for c in coef)
        corners = [(-0.5, -0.5), (W - 0.5, -0.5), (W - 0.5, H - 0.5), (-0.5, H - 0.5)]
        points = [(x, y, c0 * x + c1 * y + c2) for x, y in corners]  # the corners, and where the edges cross lines
        for i in range(4):
            xa, ya, wa = points[i]
            xb, yb, wb = points[(i + 1) % 4]
            if wa != wb:
                for t in thresholds:
                    f = (t - wa) / (wb - wa)
                    if 0 <= f <= 1:
                        points.append((xa + f * (xb - xa), ya + f * (yb - ya), t))
        boxes = np.zeros((len(thresholds) - 1, 4), int)
        centres = np.zeros((len(thresholds) - 1, 2))
        for k in range(len(thresholds) - 1):
            hi, lo = thresholds[k], thresholds[k + 1]
            sel = [(x, y) for x, y, w in points if lo - 1e-9 * (1 + abs(w)) <= w <= hi + 1e-9 * (1 + abs(w))]
            if len(sel) < 3:
                continue
            px, py = [x for x, _ in sel], [y for _, y in sel]
            boxes[k] = (max(0, math.floor(min(px) + 0.5)), max(0, math.floor(min(py) + 0.5)),
                        min(W, math.ceil(max(px) + 0.5)), min(H, math.ceil(max(py) + 0.5)))
            centres[k] = (sum(px) / len(px), sum(py) / len(py))
        return boxes, centres

    def _draw_sky_and_ground(self, view: View, img: np.ndarray, zbuf: np.ndarray, ground_const: np.ndarray,
                             xs: np.ndarray, ys: np.ndarray) -> bool:
        """Sky above the horizon, ground below it in bands of one mip level each; False if no ground is seen."""
        W, H = view.width, view.height
        height = view.C[2]
        if height <= 1e-3:
            self._draw_sky(view, img, (0, 0, W, H))
            return False
        coef = view.plane_inverse_depth(np.array([0, 0, 1.0]), np.zeros(3))
        ppm = self.scene.ground_ppm
        n = len(self._ground)
        # texel footprint of a ground pixel ~ ppm |ray| / (f h w^2): level k where it is about 2^k texels; then
        # a flat band (the mean colour) down to the horizon (w = 0), and the sky beyond it
        thresholds = [math.inf] + [math.sqrt(ppm * 1.1 / (view.focal * height * 2 ** (k - 0.5)))
                                   for k in range(1, n + 1)] + [1e-12, -math.inf]
        boxes, centres = self._level_boxes(view, coef, thresholds)
        x0, y0, x1, y1 = boxes[-1].tolist()
        if x1 > x0 and y1 > y0:
            self._draw_sky(view, img, (x0, y0, min(W, x1 + 1), min(H, y1 + 1)))
        # ground textures: texel (i, j) of level k -> world (ox + (i + .5) t, oy + (j + .5) t, 0), t = 2^k / ppm,
        # with the origin a whole number of periods putting the band in the middle of its texture
        texel = 2.0 ** np.arange(n) / ppm
        depth = 1.0 / np.maximum(centres[:n] @ coef[:2] + coef[2], 1e-9)
        hits = view.unproject(centres[:n], depth)
        span = np.array([tex.shape[0] for tex in self._ground]) * texel
        origin = self._period * np.round((hits[:, :2] - span[:, None] / 2) / self._period)
        cols = np.zeros((n, 3, 3))
        cols[:, 0, 0] = cols[:, 1, 1] = texel
        cols[:, :2, 2] = origin + 0.5 * texel[:, None] - view.C[:2]
        cols[:, 2, 2] = -view.C[2]
        homs = (view.K @ view.R) @ cols
        c0, c1, c2 = (_F32(c) for c in coef)
        drawn = False
        for k, (x0, y0, x1, y1) in enumerate(boxes[:-1].tolist()):
            if x1 <= x0 or y1 <= y0:
                continue
            # at least 2 x 2 (OpenCV would take a 1 x 1 array for a scalar); the mask keeps the band exact
            x0, y0 = min(x0, W - 2), min(y0, H - 2)
            x1, y1 = max(x1, x0 + 2), max(y1, y0 + 2)
            w = (c0 * xs[x0:x1])[None, :] + (c1 * ys[y0:y1] + c2)[:, None]
            mask = cv2.compare(w, float(thresholds[k + 1]), cv2.CMP_GE)
            if k:
                mask &= cv2.compare(w, float(thresholds[k]), cv2.CMP_LT)
            if k < n:
                hom = homs[k].copy()
                hom[0] -= x0 * hom[2]
                hom[1] -= y0 * hom[2]
                src = cv2.warpPerspective(self._ground[k], hom, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                          borderMode=cv2.BORDER_WRAP)
            else:
                src = ground_const[y0:y1, x0:x1]
            cv2.copyTo(src, mask, img[y0:y1, x0:x1])
            cv2.copyTo(w, mask, zbuf[y0:y1, x0:x1])
            drawn = True
        return drawn

    def _draw_sky(self, view: View, img: np.ndarray, roi: tuple[int, int, int, int]) -> None:
        """Gradient, sun glow and clouds at infinity, computed on a 4x coarser grid (the sky is smooth)."""
        x0, y0, x1, y1 = roi
        step = 4
        gx = x0 + step * np.arange(-(-(x1 - x0) // step), dtype=_F32) + (step - 1) / 2
        gy = y0 + step * np.arange(-(-(y1 - y0) // step), dtype=_F32) + (step - 1) / 2
        ray = view.ray.astype(_F32)
        d = [(ray[i, 0] * gx)[None, :] + (ray[i, 1] * gy + ray[i, 2])[:, None] for i in range(3)]
        norm = np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
        elev = d[2] / norm
        sky = self.scene.sky
        g = np.sqrt(np.clip(elev, 0, 1))[..., None]
        col = sky.horizon + (sky.zenith - sky.horizon) * g
        light = self.scene.light.astype(_F32)
        glow = np.clip((d[0] * light[0] + d[1] * light[1] + d[2] * light[2]) / norm, 0, 1)
        glow = (0.35 * glow ** 8 + 0.65 * glow ** 400)[..., None]
        col += (sky.sun_colour - col) * glow
        # clouds: directions mapped onto a far horizontal layer, faded toward the horizon
        safe = np.maximum(d[2], _F32(1e-3))
        scale = _F32(sky.cloud_scale * sky.clouds.shape[0])
        alpha = cv2.remap(sky.clouds, d[0] / safe * scale, d[1] / safe * scale, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_WRAP)
        alpha = (alpha * np.clip((elev - 0.02) / 0.25, 0, 1))[..., None]
        col += (sky.cloud_colour * (0.85 + 0.15 * g) - col) * alpha
        small = cv2.cvtColor(np.clip(col, 0, 255).astype(np.uint8), cv2.COLOR_BGR2BGRA)
        img[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)

    def _draw_shadows(self, view: View, img: np.ndarray) -> None:
        """Darken the ground inside the shadow polygons (before anything standing on the ground is drawn)."""
        if not len(self._shadows):
            return
        W, H = view.width, view.height
        cam = view.to_camera(self._shadows)
        keep = ~self._outside(view, cam)
        front = keep & (cam[..., 2].min(axis=1) > NEAR)
        mask = np.zeros((H, W), np.uint8)
        if front.any():
            sel = cam[front]
            pts = np.round((view.focal * sel[..., :2] / sel[..., 2:3] + [view.cx, view.cy]) * 16).astype(np.int32)
            for poly in pts:
                cv2.fillConvexPoly(mask, poly, 255, cv2.LINE_AA, shift=4)
        for i in np.nonzero(keep & ~front)[0]:  # crossing the near plane: clip first
            pts = self._near_clipped(view, cam[i])
            if len(pts) >= 3:
                cv2.fillConvexPoly(mask, np.round(pts * 16).astype(np.int32), 255, cv2.LINE_AA, shift=4)
        x, y, w, h = cv2.boundingRect(mask)
        if w == 0:
            return
        roi = img[y:y + h, x:x + w]
        cv2.copyTo(cv2.multiply(roi, (self.scene.shadow_gain,) * 3 + (1.0,)), mask[y:y + h, x:x + w], roi)

    # --- planes -------------------------------------------------------------------------------------------------
    def _draw_planes(self, view: View, img: np.ndarray, zbuf: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> None:
        if not len(self._corners):
            return
        W, H = view.width, view.height
        C = view.C
        cam = view.to_camera(self._corners)  # (P, 4, 3)
        facing = self._two_sided | (np.einsum("pi,pi->p", self._normals, C - self._centres) > 0)
        idx = np.nonzero(facing & ~self._outside(view, cam))[0]
        if not len(idx):
            return
        cam = cam[idx]
        normals = self._normals[idx]
        z = cam[..., 2]
        zmin, zmax = z.min(axis=1), z.max(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = view.focal * cam[..., :2] / np.maximum(z, NEAR)[..., None] + [view.cx, view.cy]
        # inverse depth on each plane: 1/depth = coef . (x, y, 1)
        coefs = (normals @ view.ray) / np.einsum("pi,pi->p", normals, self._centres[idx] - C)[:, None]
        # mip level from the texel footprint at a representative depth and obliquity
        to_cam = C - self._centres[idx]
        dist = np.linalg.norm(to_cam, axis=1)
        obliquity = np.maximum(np.abs(np.einsum("pi,pi->p", normals, to_cam)) / np.maximum(dist, 1e-9), 0.25)
        footprint = self._texels_per_m[idx] * np.sqrt(np.maximum(zmin, NEAR) * zmax) / (view.focal * obliquity)
        levels = np.clip(np.floor(np.log2(np.maximum(footprint, 1e-9)) + 0.5), 0, self._n_levels[idx] - 1)
        levels = levels.astype(int)
        size = self._tex_size[idx, levels]
        # homographies texel (i, j) -> pixel: origin + (i + .5)/tw a + (j + .5)/th b
        a = self._a[idx] / size[:, :1]
        b = self._b[idx] / size[:, 1:]
        cols = np.stack([a, b, self._corners[idx, 0] + 0.5 * (a + b) - C], axis=2)
        homs = (view.K @ view.R) @ cols
        lo = np.floor(uv.min(axis=1)).clip(0, None)
        hi = np.minimum(np.ceil(uv.max(axis=1)) + 1, [W, H])
        boxes = np.concatenate([lo, hi], axis=1).astype(int).tolist()
        for j, i in enumerate(idx):
            if zmin[j] > NEAR:
                x0, y0, x1, y1 = boxes[j]
                if x1 - x0 < 2 or y1 - y0 < 2:
                    continue
            else:
                pts = self._near_clipped(view, cam[j])
                roi = self._roi(pts, W, H) if len(pts) >= 3 else None
                if roi is None:
                    continue
                x0, y0, x1, y1 = roi
            hom = homs[j].copy()
            hom[0] -= x0 * hom[2]
            hom[1] -= y0 * hom[2]
            src = cv2.warpPerspective(self.scene.planes[i].level(levels[j]), hom, (x1 - x0, y1 - y0),
                                      flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            c0, c1, c2 = coefs[j]
            w = (_F32(c0) * xs[x0:x1])[None, :] + (_F32(c1) * ys[y0:y1] + _F32(c2))[:, None]
            zroi = zbuf[y0:y1, x0:x1]
            mask = cv2.compare(w, zroi, cv2.CMP_GT) & cv2.compare(cv2.extractChannel(src, 3), 127, cv2.CMP_GT)
            cv2.copyTo(src, mask, img[y0:y1, x0:x1])
            cv2.copyTo(w, mask, zroi)

    # --- the subject ----------------------------------------------------------------------------------------------
    def _draw_body(self, view: View, img: np.ndarray, zbuf: np.ndarray, t: float, select: np.ndarray) -> None:
        """Ray-cast the ``select``-ed parts of the subject at time ``t`` into ``img`` and ``zbuf``."""
        body = self.scene.body
        centres, axes = body.parts(t)
        xs, ys = np.arange(view.width, dtype=_F32), np.arange(view.height, dtype=_F32)
        bounds, in_front = ellipsoid_bounds(view, centres, axes)
        inverse = np.linalg.inv(axes)
        keep = self._haze_keep(np.maximum((centres - view.C) @ view.R[2], NEAR))
        colours = body.colours * keep[:, None] + self.scene.haze * (1 - keep[:, None])
        W, H = view.width, view.height
        visible = ((bounds[:, 2:] - bounds[:, :2]) >= 2).any(axis=1)
        for k in np.nonzero(~in_front)[0]:  # crossing the near plane (a camera close to the body)
            bounds[k], visible[k] = self._near_bounds(view, centres[k], axes[k])
        lo = np.floor(bounds[:, :2]).clip(0, None)
        hi = np.minimum(np.ceil(bounds[:, 2:]) + 1, [W, H])
        size = hi - lo
        visible &= (size >= 2).all(axis=1) & select
        rois = np.concatenate([lo, hi], axis=1).astype(int).tolist()
        batch = []
        for k in range(len(centres)):
            if not visible[k]:
                continue
            if body.textured[k] or not in_front[k] or size[k, 0] * size[k, 1] > _BATCH_AREA:
                self._cast(view, img, zbuf, xs, ys, tuple(rois[k]), centres[k], inverse[k],
                           self.scene.face_atlas if body.textured[k] else None, colours[k], float(keep[k]))
            else:
                batch.append(k)
        # two batches, the larger and the smaller half, so that padding to a common size wastes little
        batch.sort(key=lambda k: size[k, 0] * size[k, 1])
        for group in (batch[: len(batch) // 2], batch[len(batch) // 2:]):
            if group:
                self._cast_batch(view, img, zbuf, [rois[k] for k in group], centres[group], inverse[group],
                                 colours[group])

    @staticmethod
    def _near_bounds(view: View, centre: np.ndarray, axes: np.ndarray) -> tuple[np.ndarray, bool]:
        """Image box of the part of an ellipsoid in front of the near plane (from surface samples, with a small
        margin), and whether any of it can be in view."""
        cam = view.to_camera(centre + _SPHERE @ axes.T)
        if Renderer._outside(view, cam[None])[0]:
            return np.zeros(4), False
        uv = view.focal * cam[:, :2] / np.maximum(cam[:, 2:3], NEAR) + [view.cx, view.cy]
        lo, hi = uv.min(axis=0), uv.max(axis=0)
        pad = 0.05 * (hi - lo) + 2
        return np.concatenate([lo - pad, hi + pad]), True

    def _cast_batch(self, view: View, img: np.ndarray, zbuf: np.ndarray, rois: list[list[int]],
                    centres: np.ndarray, inverse: np.ndarray, colours: np.ndarray) -> None:
        """Ray-cast several small untextured ellipsoids at once, in ROIs padded to a common size (the same maths
        as :meth:`_cast`, vectorised over the ellipsoids), then z-buffer them one by one."""
        box = np.array(rois)
        hm, wm = int((box[:, 3] - box[:, 1]).max()), int((box[:, 2] - box[:, 0]).max())
        X = (box[:, 0:1] + np.arange(wm)).astype(_F32)[:, None, :]  # (N, 1, wm)
        Y = (box[:, 1:2] + np.arange(hm)).astype(_F32)[:, :, None]  # (N, hm, 1)
        origin = np.einsum("nij,nj->ni", inverse, view.C - centres)
        G = inverse @ view.ray
        M = np.einsum("nki,nkj->nij", G, G)
        lit = inverse @ self.scene.light
        lit /= np.linalg.norm(lit, axis=1, keepdims=True)
        ob, dl = np.einsum("ni,nij->nj", origin, G), np.einsum("ni,nij->nj", lit, G)

        def c(v: np.ndarray) -> np.ndarray:
            return v.astype(_F32)[:, None, None]

        qa = (c(2 * M[:, 0, 1]) * Y) * X
        qa += (c(M[:, 0, 0]) * X + c(2 * M[:, 0, 2])) * X
        qa += (c(M[:, 1, 1]) * Y + c(2 * M[:, 1, 2])) * Y + c(M[:, 2, 2])
        qb = c(ob[:, 0]) * X + (c(ob[:, 1]) * Y + c(ob[:, 2]))
        disc = qb * qb
        disc -= c(np.einsum("ni,ni->n", origin, origin) - 1) * qa
        tt = np.sqrt(np.maximum(disc, 0))
        tt += qb
        tt /= -qa
        shade = c(dl[:, 0]) * X + (c(dl[:, 1]) * Y + c(dl[:, 2]))
        shade *= tt
        shade += c(np.einsum("ni,ni->n", origin, lit))
        np.maximum(shade, 0, out=shade)
        shade *= _F32(self.scene.diffuse)
        shade += _F32(self.scene.ambient)
        np.minimum(shade, 1, out=shade)
        col = (shade[..., None] * colours[:, None, None, :]).astype(np.uint8)
        invd = 1 / tt
        hit = (disc > 0).view(np.uint8)
        for j, (x0, y0, x1, y1) in enumerate(rois):
            w, h = x1 - x0, y1 - y0
            zroi = zbuf[y0:y1, x0:x1]
            mask = cv2.compare(invd[j, :h, :w], zroi, cv2.CMP_GT) & hit[j, :h, :w]
            cv2.copyTo(col[j, :h, :w], mask, img[y0:y1, x0:x1])
            cv2.copyTo(invd[j, :h, :w], mask, zroi)

    def _cast(self, view: View, img: np.ndarray, zbuf: np.ndarray, xs: np.ndarray, ys: np.ndarray,
              roi: tuple[int, int, int, int], centre: np.ndarray, inv: np.ndarray, atlas: np.ndarray | None,
              colour: np.ndarray, keep: float) -> None:
        """Ray-cast one ellipsoid ``{centre + A u : |u| <= 1}`` (``inv`` = A^-1) inside ``roi``, z-buffered; large
        ones on a coarse grid whose smooth per-pixel quantities are interpolated up. ``colour`` is used for an
        untextured ellipsoid; a textured one is blended toward the haze by ``keep``."""
        x0, y0, x1, y1 = roi
        w, h = x1 - x0, y1 - y0
        origin = inv @ (view.C - centre)  # the camera in the frame where the ellipsoid is the unit sphere
        qc = float(origin @ origin) - 1.0
        if qc <= 0:
            return  # the camera is inside
        area = w * h
        step = 1 if area <= _COARSE_AREA else 2 if area <= 4 * _COARSE_AREA else 4 if area <= 25 * _COARSE_AREA else 8
        if step == 1:
            gx, gy = xs[x0:x1], ys[y0:y1]
        else:
            gx = x0 + step * np.arange(-(-w // step), dtype=_F32) + _F32((step - 1) / 2)
            gy = y0 + step * np.arange(-(-h // step), dtype=_F32) + _F32((step - 1) / 2)
        # the ray of pixel (x, y) in the sphere's frame is G (x, y, 1); |ray|^2 is the quadratic form G^T G
        G = inv @ view.ray
        M = (G.T @ G).astype(_F32)
        lit = inv @ self.scene.light
        lit /= np.linalg.norm(lit)
        # |ray|^2 = 2 M01 x y + (M00 x + 2 M02) x + (M11 y + 2 M12) y + M22; the products of the ray with the
        # camera's position (ob) and with the light (dl) are affine in (x, y)
        coef = np.array([[M[0, 0], 2 * M[0, 2], 0], [M[1, 1], 2 * M[1, 2], M[2, 2]]], _F32)
        ob = (origin @ G).astype(_F32)
        dl = (lit @ G).astype(_F32)
        qa = np.multiply.outer(gy * (2 * M[0, 1]), gx)
        qa += (coef[0, 0] * gx + coef[0, 1]) * gx
        qa += ((coef[1, 0] * gy + coef[1, 1]) * gy + coef[1, 2])[:, None]
        qb = (ob[0] * gx)[None, :] + (ob[1] * gy + ob[2])[:, None]
        disc = qb * qb
        disc -= _F32(qc) * qa
        tt = np.sqrt(np.maximum(disc, 0))
        tt += qb
        tt /= -qa  # the nearer root: depth along the optical axis (continued smoothly outside the silhouette)
        # Lambert shading with the unit sphere's normal p = origin + tt ray (exact for spheres, close for limbs)
        shade = (dl[0] * gx)[None, :] + (dl[1] * gy + dl[2])[:, None]
        shade *= tt
        shade += _F32(origin @ lit)
        np.maximum(shade, 0, out=shade)
        shade *= _F32(self.scene.diffuse)
        shade += _F32(self.scene.ambient)
        np.minimum(shade, 1, out=shade)
        geometry = [disc, cv2.divide(1.0, tt)]  # discriminant (> 0 on the ellipsoid) and inverse depth
        if atlas is None:
            colour_grid = (shade[..., None] * colour).astype(np.uint8)  # flat colour, shaded: smooth, interpolates
        else:
            shade_grid = cv2.convertScaleAbs(shade, alpha=255.0 * keep)  # the haze's share is added below
            Gf, of = G.astype(_F32), origin.astype(_F32)
            p = [of[i] + tt * ((Gf[i, 0] * gx)[None, :] + (Gf[i, 1] * gy + Gf[i, 2])[:, None]) for i in range(3)]
            # U = p0 on the front (p1 > 0) and 2 sign(p0) - p0 on the back: continuous across the silhouette, so
            # it interpolates well from a coarse grid; the only jump (U = +-2) is in the middle of the back
            u = np.where(p[1] >= 0, p[0], np.copysign(_F32(2), p[0]) - p[0])
            geometry.append((u + 2) * _F32((atlas.shape[1] - 1) / 4))
            geometry.append((1 - p[2]) * _F32((atlas.shape[0] - 1) / 2))
        if step > 1:  # (at most 4 channels: OpenCV's split is slow beyond that)
            geometry = cv2.split(cv2.resize(cv2.merge(geometry), (w, h), interpolation=cv2.INTER_LINEAR))
            if atlas is None:
                colour_grid = cv2.resize(colour_grid, (w, h), interpolation=cv2.INTER_LINEAR)
            else:
                shade_grid = cv2.resize(shade_grid, (w, h), interpolation=cv2.INTER_LINEAR)
        disc, invd = geometry[:2]
        zroi = zbuf[y0:y1, x0:x1]
        mask = cv2.compare(disc, 0, cv2.CMP_GT) & cv2.compare(invd, zroi, cv2.CMP_GT)
        if atlas is None:
            col = colour_grid
        else:
            tex = cv2.remap(atlas, geometry[2], geometry[3], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            col = cv2.multiply(tex, cv2.cvtColor(shade_grid, cv2.COLOR_GRAY2BGR), scale=1 / 255)
            if keep < 0.995:
                col = cv2.add(col, tuple(float(c) for c in (1 - keep) * self.scene.haze) + (0.0,))
        cv2.copyTo(col, mask, img[y0:y1, x0:x1])
        cv2.copyTo(invd, mask, zroi)

    # --- haze -----------------------------------------------------------------------------------------------------
    def _haze_keep(self, depth: np.ndarray) -> np.ndarray:
        """How much of a surface's own colour survives the haze at the given distances (see _apply_haze)."""
        dist = self.scene.haze_distance
        over = np.maximum(depth - 0.05 * dist, 0)
        return dist / (over + dist)

    def _apply_haze(self, img: np.ndarray, zbuf: np.ndarray, haze: np.ndarray) -> None:
        """Blend toward the haze colour beyond ``d0``: weight (d - d0) / (d - d0 + D); the sky is exempt."""
        dist = self.scene.haze_distance
        d0 = 0.05 * dist
        far = cv2.inRange(zbuf, 1e-12, 1.0 / d0)
        rows = np.nonzero(cv2.reduce(far, 1, cv2.REDUCE_MAX)[:, 0])[0]
        if len(rows) == 0:
            return
        y0, y1 = int(rows[0]), int(rows[-1]) + 1
        w = zbuf[y0:y1]
        # keep = D w / (1 + (D - d0) w): 1 at d0, > 1 nearer and for the sky (w = -1), clipped to 1
        keep = cv2.divide(w, w * _F32(1 - d0 / dist) + _F32(1 / dist))
        np.minimum(keep, 1, out=keep)
        img[y0:y1] = cv2.blendLinear(img[y0:y1], haze[y0:y1], keep, 1 - keep)
