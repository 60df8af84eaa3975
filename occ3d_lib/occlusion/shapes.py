"""Occluder geometry and the batched scan-line rasteriser behind :mod:`occ3d_lib.occlusion.apply`.

Taught in notebook 02 (sections 2-4: the square taxonomy, random patterns,
natural occluders); paper Sec. 1 item 3, Sec. 3.2.1, Sec. 4, 4.1.1, 4.2.2.

Every occluder of one image is described as a handful of closed polygon
*loops* (squares, stars, crowns, sunglasses lenses, fingers as stadiums, ...)
plus, for scribbles, thick polylines. Geometry is built per image in float64
numpy from a fixed row of uniform numbers (drawn in one block from the caller's
``torch.Generator``), which makes every sample's geometry depend only on its
own row, its kind and its landmarks. Rasterisation is batched in torch:

* :func:`rasterize_edges` - all loops of all images at once, nonzero-winding
  rule evaluated by a scan line per pixel row: for every edge and row the
  crossing column is computed (``(B, E, H)``), a signed +-1 is scattered into a
  ``(B, H, W + 1)`` difference array and a cumulative sum along the row gives
  the winding number of every pixel centre. Cost ``O(B E H + B H W)``; no
  per-pixel Python. Outer loops are oriented positively and holes negatively,
  so overlapping parts of one occluder form a union and holes (the mouth in a
  beard) stay open.
* :func:`rasterize_scribbles` - distance-to-polyline fields whose stroke
  half-width is set to the quantile that makes the stroke cover exactly the
  requested fraction of the face region.

Coordinates: pixel (r, c) is centred at (x = c, y = r); the face region of an
image is the set of pixel centres inside its face box (see
:func:`occ3d_lib.occlusion.kinds.face_boxes_from_landmarks`), summarised here by the
inclusive integer bounds :class:`Region`.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

# ---------------------------------------------------------------------------------------------
# Quantitative definitions (documented in occ3d_lib.occlusion.kinds.KIND_DESCRIPTIONS)
# ---------------------------------------------------------------------------------------------
#: Area of each rectangle as a fraction of the face region (paper Sec. 4.1.1 taxonomy + 'full').
RECT_AREA: dict[str, tuple[float, float]] = {
    "dsofi": (0.05, 0.15),  # two slight squares
    "dhofi": (0.15, 0.30),  # two heavy squares
    "shofi": (0.30, 0.60),  # one heavy square
    "full": (0.60, 0.80),  # one rectangle of any aspect
}
#: The two squares of DSOFI / DHOFI may overlap by at most this fraction of the smaller one.
MAX_SQUARE_OVERLAP = 0.10
#: Area fraction of a single random pattern (star, crown, ellipse, polygon, scribble).
PATTERN_AREA: tuple[float, float] = (0.08, 0.25)
#: 'random_pattern': 1-3 shapes, each with this area fraction.
MULTI_PATTERN_AREA: tuple[float, float] = (0.05, 0.15)
MULTI_PATTERN_COUNT: tuple[int, int] = (1, 3)

PATTERN_TYPES = ("star", "crown", "ellipse", "polygon", "scribble")
NATURAL_TYPES = ("sunglasses", "surgical_mask", "hand", "scarf", "fringe", "beard", "microphone", "cup")

#: Plausible base colours of the natural occluders (RGB in [0, 1]); one is picked per sample and
#: every channel is jittered by +-NATURAL_COLOR_JITTER.
NATURAL_PALETTES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "sunglasses": ((0.04, 0.04, 0.05), (0.18, 0.11, 0.07), (0.10, 0.12, 0.18), (0.22, 0.22, 0.22)),
    "surgical_mask": ((0.55, 0.76, 0.90), (0.62, 0.80, 0.86), (0.93, 0.93, 0.93), (0.10, 0.10, 0.11)),
    "hand": ((0.96, 0.80, 0.69), (0.87, 0.67, 0.53), (0.76, 0.57, 0.45), (0.55, 0.38, 0.26),
             (0.36, 0.22, 0.14)),
    "scarf": ((0.70, 0.10, 0.12), (0.12, 0.18, 0.40), (0.20, 0.40, 0.22), (0.50, 0.50, 0.52),
              (0.82, 0.74, 0.58), (0.85, 0.62, 0.12)),
    "fringe": ((0.08, 0.06, 0.05), (0.23, 0.15, 0.10), (0.42, 0.28, 0.16), (0.76, 0.61, 0.38),
               (0.50, 0.20, 0.10), (0.62, 0.62, 0.62)),
    "beard": ((0.08, 0.06, 0.05), (0.23, 0.15, 0.10), (0.42, 0.28, 0.16), (0.70, 0.56, 0.36),
              (0.50, 0.22, 0.10), (0.60, 0.60, 0.60)),
    "microphone": ((0.12, 0.12, 0.13), (0.30, 0.30, 0.32), (0.55, 0.56, 0.58)),
    "cup": ((0.95, 0.95, 0.93), (0.80, 0.15, 0.15), (0.18, 0.35, 0.70), (0.95, 0.80, 0.20),
            (0.25, 0.55, 0.30)),
}
NATURAL_COLOR_JITTER = 0.06

#: Uniform numbers drawn per sample for the geometry (a fixed budget keeps streams aligned).
N_UNIFORMS = 128


# ---------------------------------------------------------------------------------------------
# Small data types
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Region:
    """Inclusive pixel bounds of the face region inside the image (columns c_lo..c_hi, rows r_lo..r_hi).

    The region's continuous extent is [c_lo - 0.5, c_hi + 0.5] x [r_lo - 0.5, r_hi + 0.5]; its
    area in pixels is ``width * height``. Taught in notebook 02, section 6.
    """

    c_lo: int
    c_hi: int
    r_lo: int
    r_hi: int

    @property
    def width(self) -> int:
        return self.c_hi - self.c_lo + 1

    @property
    def height(self) -> int:
        return self.r_hi - self.r_lo + 1

    @property
    def area(self) -> int:
        return self.width * self.height


@dataclass
class Drawing:
    """The occluder of one image: polygon loops ``(V, 2)`` in pixel (x, y) with a hole flag,
    scribbles ``(points (K, 2), area fraction)`` and a JSON-friendly description ``info``."""

    loops: list[tuple[np.ndarray, bool]] = field(default_factory=list)
    scribbles: list[tuple[np.ndarray, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class Draws:
    """Sequential reader over one sample's row of uniform numbers in [0, 1)."""

    def __init__(self, row: np.ndarray) -> None:
        self.row = row
        self.k = 0

    def u(self, lo: float = 0.0, hi: float = 1.0) -> float:
        if self.k >= len(self.row):
            raise RuntimeError("occluder geometry ran out of random numbers; raise N_UNIFORMS")
        v = float(self.row[self.k])
        self.k += 1
        return lo + (hi - lo) * v

    def i(self, lo: int, hi: int) -> int:
        """An integer uniform in [lo, hi] (inclusive)."""
        return min(hi, lo + int(self.u() * (hi - lo + 1)))

    def sign(self) -> float:
        return 1.0 if self.u() < 0.5 else -1.0


# ---------------------------------------------------------------------------------------------
# Polygon helpers (numpy, float64)
# ---------------------------------------------------------------------------------------------
def signed_area(loop: np.ndarray) -> float:
    """Shoelace signed area of a closed loop ``(V, 2)`` (positive = clockwise on screen, y down)."""
    x, y = loop[:, 0], loop[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _rot(pts: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def superellipse(a: float, b: float, p: float = 2.0, n: int = 40) -> np.ndarray:
    """Loop ``(n, 2)`` of |x/a|^p + |y/b|^p = 1 centred at the origin (p = 2: an ellipse)."""
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / p
    return np.stack([a * np.sign(c) * np.abs(c) ** e, b * np.sign(s) * np.abs(s) ** e], 1)


def stadium(p0: np.ndarray, p1: np.ndarray, r: float, n_cap: int = 8) -> np.ndarray:
    """Loop of the set of points within ``r`` of segment p0-p1 (a capsule), caps as ``n_cap`` chords."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    phi = math.atan2(d[1], d[0]) if np.hypot(*d) > 1e-9 else 0.0
    a1 = np.linspace(phi - math.pi / 2, phi + math.pi / 2, n_cap + 1)
    a0 = np.linspace(phi + math.pi / 2, phi + 3 * math.pi / 2, n_cap + 1)
    cap1 = p1 + r * np.stack([np.cos(a1), np.sin(a1)], 1)
    cap0 = p0 + r * np.stack([np.cos(a0), np.sin(a0)], 1)
    return np.concatenate([cap1, cap0], 0)


def loops_to_edges(loops: list[tuple[np.ndarray, bool]]) -> np.ndarray:
    """Edges ``(E, 4)`` = (x0, y0, x1, y1) of all loops, outer loops oriented to positive signed
    area and holes to negative, so that the nonzero-winding rule gives union-minus-holes."""
    out = []
    for loop, hole in loops:
        loop = np.asarray(loop, float)
        if len(loop) < 3:
            continue
        a = signed_area(loop)
        if (a < 0) != hole:
            loop = loop[::-1]
        out.append(np.concatenate([loop, np.roll(loop, -1, 0)], 1))
    return np.concatenate(out, 0) if out else np.zeros((0, 4))


# ---------------------------------------------------------------------------------------------
# Rasterisation (torch, batched)
# ---------------------------------------------------------------------------------------------
def rasterize_edges(edges: Tensor, height: int, width: int) -> Tensor:
    """Nonzero-winding fill of polygon edges on the pixel-centre grid, batched.

    edges ``(B, E, 4)`` = (x0, y0, x1, y1) in pixel coordinates (x = column, y = row; pad with
    zero rows) -> ``(B, H, W)`` bool, True where the winding number of the pixel centre is
    nonzero. A pixel centre exactly on a left edge is outside, on a right edge inside
    (half-open rule), so an axis-aligned rectangle with corners at half-integers covers exactly
    the pixels it encloses. Scan line: for each edge and row the crossing column is computed,
    +-1 is scattered into a difference array and summed along the row. Taught in notebook 02,
    section 3 (how shapes become masks).
    """
    if edges.ndim != 3 or edges.shape[-1] != 4:
        raise ValueError(f"edges must have shape (B, E, 4), got {tuple(edges.shape)}")
    b, e = edges.shape[:2]
    dev = edges.device
    if e == 0:
        return torch.zeros(b, height, width, dtype=torch.bool, device=dev)
    x0, y0, x1, y1 = edges.unbind(-1)  # (B, E)
    ys = torch.arange(height, dtype=edges.dtype, device=dev).view(1, 1, height)
    y0, y1, x0, x1 = y0[..., None], y1[..., None], x0[..., None], x1[..., None]
    dy = y1 - y0
    cross = (y0 > ys) != (y1 > ys)  # (B, E, H)
    xi = x0 + (ys - y0) * (x1 - x0) / torch.where(dy == 0, torch.ones_like(dy), dy)
    idx = (torch.floor(xi) + 1).clamp_(0, width).long()
    sgn = torch.where(dy > 0, 1, -1).to(torch.int32) * cross.to(torch.int32)
    counts = torch.zeros(b, height, width + 1, dtype=torch.int32, device=dev)
    counts.scatter_add_(2, idx.transpose(1, 2), sgn.expand(-1, -1, height).transpose(1, 2).contiguous())
    return counts.cumsum_(2)[..., :width] != 0


def distance_to_polyline(points: Tensor, height: int, width: int) -> Tensor:
    """Squared distance of every pixel centre to a polyline. points ``(K, 2)`` -> ``(H, W)``.

    Taught in notebook 02, section 3 (scribbles).
    """
    ys = torch.arange(height, dtype=points.dtype, device=points.device).view(1, height, 1)
    xs = torch.arange(width, dtype=points.dtype, device=points.device).view(1, 1, width)
    a, b = points[:-1], points[1:]
    d = b - a
    len2 = (d * d).sum(1).clamp_min(1e-12).view(-1, 1, 1)
    ax, ay = a[:, 0].view(-1, 1, 1), a[:, 1].view(-1, 1, 1)
    dx, dy = d[:, 0].view(-1, 1, 1), d[:, 1].view(-1, 1, 1)
    px, py = xs - ax, ys - ay
    t = ((px * dx + py * dy) / len2).clamp_(0, 1)
    return ((px - t * dx) ** 2 + (py - t * dy) ** 2).amin(0)


def rasterize_scribbles(scribbles: list[tuple[int, np.ndarray, float]], regions: list[Region],
                        height: int, width: int, out: Tensor) -> None:
    """OR thick polylines into ``out (B, H, W)`` bool, each covering exactly its fraction of the
    face region: the stroke is ``{p : dist(p, polyline) <= tau}`` with tau the k-th smallest
    distance over the region's pixels, k = round(fraction * region area). Entries are
    (sample index, points (K, 2), fraction). Taught in notebook 02, section 3."""
    for bi, pts, frac in scribbles:
        reg = regions[bi]
        d2 = distance_to_polyline(torch.as_tensor(pts, dtype=torch.float32), height, width)
        inside = d2[reg.r_lo:reg.r_hi + 1, reg.c_lo:reg.c_hi + 1].reshape(-1)
        k = int(min(max(round(frac * reg.area), 1), inside.numel()))
        tau = torch.kthvalue(inside, k).values
        out[bi] |= (d2 <= tau).to(out.device)


# ---------------------------------------------------------------------------------------------
# Rectangles: the square taxonomy and 'full'
# ---------------------------------------------------------------------------------------------
def _rect_dims(dr: Draws, reg: Region, lo: float, hi: float, square: bool) -> tuple[int, int]:
    """Integer (w, h) with lo <= w*h/area <= hi (whenever the region is large enough)."""
    area = reg.area
    f = dr.u(lo, hi)
    aspect_u = dr.u()
    n = f * area
    n_lo, n_hi = math.ceil(lo * area - 1e-9), math.floor(hi * area + 1e-9)
    # a rectangle's width fraction is in [f, 1] so that its height fraction f / wf is <= 1 as well
    w = round(math.sqrt(n)) if square else round((f + (1 - f) * aspect_u) * reg.width)
    w = min(max(w, math.ceil(n / reg.height), 1), reg.width)
    h = round(n / w)
    h = min(max(h, math.ceil(n_lo / w)), n_hi // w, reg.height)
    return w, max(h, 1)


def _place_rect(dr: Draws, reg: Region, w: int, h: int,
                position: tuple[float, float] | None = None) -> tuple[int, int]:
    """Top-left pixel of a w x h rectangle inside the region; ``position`` (u, v) in [0, 1]^2
    replaces the two random draws (0 = left/top-most, 1 = right/bottom-most), which are still
    consumed so the stream stays aligned."""
    u, v = dr.u(), dr.u()
    if position is not None:
        u, v = position
    c0 = reg.c_lo + min(int(u * (reg.width - w + 1)), reg.width - w)
    r0 = reg.r_lo + min(int(v * (reg.height - h + 1)), reg.height - h)
    return c0, r0


def _rect_loop(c0: int, r0: int, w: int, h: int) -> np.ndarray:
    x0, y0, x1, y1 = c0 - 0.5, r0 - 0.5, c0 + w - 0.5, r0 + h - 0.5
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    ox = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    oy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(ox, 0) * max(oy, 0)


def draw_rects(kind: str, dr: Draws, reg: Region, rng: tuple[float, float],
               position: tuple[float, float] | None = None) -> Drawing:
    """DSOFI / DHOFI (two squares), SHOFI (one square), full (one rectangle); paper Sec. 4.1.1.

    Each shape's pixel area is a fraction in ``rng`` of the region's area; squares become
    rectangles only when the (clipped) region is too narrow for the square. ``position`` fixes
    where the first shape sits (see :func:`_place_rect`)."""
    lo, hi = rng
    n_rect = 2 if kind in ("dsofi", "dhofi") else 1
    dims = [_rect_dims(dr, reg, lo, hi, square=kind != "full") for _ in range(n_rect)]
    rects = []
    w, h = dims[0]
    rects.append((*_place_rect(dr, reg, w, h, position), w, h))
    if n_rect == 2:
        w2, h2 = dims[1]
        limit = MAX_SQUARE_OVERLAP * min(w * h, w2 * h2)
        cands = [(*_place_rect(dr, reg, w2, h2), w2, h2) for _ in range(12)]
        diag = dr.u() < 0.5
        ok = [c for c in cands if _overlap(rects[0], c) <= limit]
        if ok:
            rects.append(ok[0])
        else:  # opposite corners: the least overlap two such rectangles can have
            if diag:
                rects = [(reg.c_lo, reg.r_lo, w, h), (reg.c_hi - w2 + 1, reg.r_hi - h2 + 1, w2, h2)]
            else:
                rects = [(reg.c_hi - w + 1, reg.r_lo, w, h), (reg.c_lo, reg.r_hi - h2 + 1, w2, h2)]
    loops = [(_rect_loop(*r), False) for r in rects]
    return Drawing(loops=loops, info={"rects_xywh": [list(map(int, r)) for r in rects],
                                      "area_fractions": [r[2] * r[3] / reg.area for r in rects]})


# ---------------------------------------------------------------------------------------------
# Random patterns (paper Sec. 3.2.1, Sec. 4, Table 5: stars, crowns, ... "no specific shape")
# ---------------------------------------------------------------------------------------------
def _unit_star(dr: Draws) -> tuple[np.ndarray, dict]:
    n = dr.i(4, 7)
    rho = dr.u(0.38, 0.6)
    ang = np.arange(2 * n) * math.pi / n
    rad = np.where(np.arange(2 * n) % 2 == 0, 1.0, rho)
    return np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1), {"points": n, "inner_ratio": rho}


def _unit_crown(dr: Draws) -> tuple[np.ndarray, dict]:
    k = dr.i(3, 5)
    hb, hs = dr.u(0.5, 0.8), dr.u(0.6, 1.1)
    pts = [(-1.0, 0.0), (1.0, 0.0)]
    tips = np.linspace(1.0, -1.0, k)
    for j, x in enumerate(tips):
        pts.append((x, hb + hs))
        if j < k - 1:
            pts.append((0.5 * (x + tips[j + 1]), hb + dr.u(0.05, 0.35) * hs))
    loop = np.array(pts)
    loop[:, 1] = -loop[:, 1]  # y up -> image y down
    return loop, {"spikes": k}


def _unit_ellipse(dr: Draws) -> tuple[np.ndarray, dict]:
    ratio = dr.u(0.35, 1.0)
    return superellipse(1.0, ratio, 2.0, 48), {"axis_ratio": ratio}


def _unit_polygon(dr: Draws) -> tuple[np.ndarray, dict]:
    v = dr.i(3, 8)
    ang = (np.arange(v) + np.array([dr.u(-0.3, 0.3) for _ in range(v)])) * 2 * math.pi / v
    rad = np.array([dr.u(0.45, 1.0) for _ in range(v)])
    return np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1), {"vertices": v}


_UNIT_SHAPES: dict[str, Callable[[Draws], tuple[np.ndarray, dict]]] = {
    "star": _unit_star, "crown": _unit_crown, "ellipse": _unit_ellipse, "polygon": _unit_polygon,
}


def _pattern(ptype: str, dr: Draws, reg: Region, frac: float,
             position: tuple[float, float] | None = None) -> tuple[list, list, dict]:
    """One random pattern scaled to area ``frac`` of the region and placed fully inside it.

    ``position`` (u, v) in [0, 1]^2 replaces the random placement (0 = left/top-most feasible
    place, 1 = right/bottom-most); the random draws are consumed anyway."""
    x_lo, x_hi, y_lo, y_hi = reg.c_lo - 0.5, reg.c_hi + 0.5, reg.r_lo - 0.5, reg.r_hi + 0.5
    if ptype == "scribble":
        k = dr.i(3, 6)
        mx, my = 0.12 * reg.width, 0.12 * reg.height
        pts = np.array([[dr.u(x_lo + mx, x_hi - mx), dr.u(y_lo + my, y_hi - my)] for _ in range(k)])
        if position is not None:  # move the control points' box centre there, then clip into the margin box
            box_lo, box_hi = np.array([x_lo + mx, y_lo + my]), np.array([x_hi - mx, y_hi - my])
            target = box_lo + np.asarray(position, float) * (box_hi - box_lo)
            pts = np.clip(pts - 0.5 * (pts.min(0) + pts.max(0)) + target, box_lo, box_hi)
        return [], [(pts, frac)], {"type": ptype, "fraction": frac, "control_points": k}
    unit, extra = _UNIT_SHAPES[ptype](dr)
    angle = dr.u(-0.5, 0.5) if ptype == "crown" else dr.u(0, 2 * math.pi)
    unit = _rot(unit - 0.5 * (unit.min(0) + unit.max(0)), angle)
    scale = math.sqrt(frac * reg.area / abs(signed_area(unit)))
    pts = unit * scale
    span = pts.max(0) - pts.min(0)
    fit = min(1.0, (x_hi - x_lo) / span[0], (y_hi - y_lo) / span[1]) * (1 - 1e-6)
    pts = pts * fit
    lo, hi = pts.min(0), pts.max(0)
    cx = dr.u(x_lo - lo[0], x_hi - hi[0])
    cy = dr.u(y_lo - lo[1], y_hi - hi[1])
    if position is not None:
        cx = (x_lo - lo[0]) + position[0] * ((x_hi - hi[0]) - (x_lo - lo[0]))
        cy = (y_lo - lo[1]) + position[1] * ((y_hi - hi[1]) - (y_lo - lo[1]))
    pts = pts + np.array([cx, cy])
    info = {"type": ptype, "fraction": frac * fit * fit, "centre": [cx, cy], "angle": angle,
            "shrunk_to_fit": fit < 1 - 1e-5, **extra}
    return [(pts, False)], [], info


def draw_pattern(kind: str, dr: Draws, reg: Region, rng: tuple[float, float] | None,
                 position: tuple[float, float] | None = None) -> Drawing:
    """A single random pattern (kind in PATTERN_TYPES) or 1-3 of them ('random_pattern';
    ``position`` then places the first one). Paper Sec. 4.2.2, Table 5."""
    d = Drawing()
    if kind == "random_pattern":
        lo, hi = rng or MULTI_PATTERN_AREA
        n = dr.i(*MULTI_PATTERN_COUNT)
        shapes = []
        for j in range(n):
            ptype = PATTERN_TYPES[dr.i(0, len(PATTERN_TYPES) - 1)]
            loops, scr, info = _pattern(ptype, dr, reg, dr.u(lo, hi), position if j == 0 else None)
            d.loops += loops
            d.scribbles += scr
            shapes.append(info)
        d.info = {"shapes": shapes}
    else:
        lo, hi = rng or PATTERN_AREA
        loops, scr, info = _pattern(kind, dr, reg, dr.u(lo, hi), position)
        d.loops, d.scribbles, d.info = loops, scr, {"shapes": [info]}
    return d


# ---------------------------------------------------------------------------------------------
# Natural occluders placed from the 68 landmarks
# ---------------------------------------------------------------------------------------------
class FaceFrame:
    """A face-aligned frame: origin at landmark 27 (nose bridge), s along the eye line (from the
    36-41 eye to the 42-47 eye), t perpendicular, towards the chin. Units stay pixels."""

    def __init__(self, lm: np.ndarray) -> None:
        eye_a, eye_b = lm[36:42].mean(0), lm[42:48].mean(0)
        e = eye_b - eye_a
        n = float(np.hypot(*e))
        self.e = e / n if n > 1e-6 else np.array([1.0, 0.0])
        self.d = np.array([-self.e[1], self.e[0]])
        if np.dot(lm[8] - lm[27], self.d) < 0:  # chin must be at positive t
            self.d = -self.d
        self.o = lm[27].astype(float)
        self.p = np.stack([(lm - self.o) @ self.e, (lm - self.o) @ self.d], 1)
        self.fw = max(abs(self.p[16, 0] - self.p[0, 0]), 1.0)
        self.brow_t = float(self.p[17:27, 1].min())
        self.fh = max(self.p[8, 1] - self.brow_t, 1.0)

    def img(self, st: np.ndarray) -> np.ndarray:
        st = np.asarray(st, float).reshape(-1, 2)
        return self.o + st[:, :1] * self.e + st[:, 1:] * self.d

    def mean(self, idx: slice | list[int]) -> np.ndarray:
        return self.p[idx].mean(0)


def _pushed_jaw(ff: FaceFrame, margin: float, chin_extra: float) -> np.ndarray:
    """Jaw 0-16 in the face frame pushed outward (away from the nose tip) by ``margin`` and the
    chin further down by up to ``chin_extra``."""
    jaw = ff.p[0:17].copy()
    c = ff.p[30]
    v = jaw - c
    v /= np.maximum(np.hypot(v[:, 0], v[:, 1]), 1e-6)[:, None]
    jaw += margin * v
    w = np.exp(-((np.arange(17) - 8) / 3.0) ** 2)
    jaw[:, 1] += chin_extra * w
    return jaw


def _below(poly: np.ndarray, t_cut: float) -> np.ndarray:
    """The part of an open polyline (going down then up, e.g. jaw 0..16) with t >= t_cut,
    with interpolated end points on t = t_cut."""
    out = []
    for i in range(len(poly)):
        a = poly[i]
        if i > 0:
            p = poly[i - 1]
            if (p[1] < t_cut) != (a[1] < t_cut):
                r = (t_cut - p[1]) / (a[1] - p[1])
                out.append(p + r * (a - p))
        if a[1] >= t_cut:
            out.append(a)
    return np.array(out)


def _sunglasses(dr: Draws, ff: FaceFrame) -> Drawing:
    ea, eb = ff.mean(slice(36, 42)), ff.mean(slice(42, 48))
    de = max(eb[0] - ea[0], 1.0)
    a = dr.u(0.36, 0.44) * de
    b = dr.u(0.62, 0.85) * a
    p = dr.u(2.0, 4.5)
    drop = dr.u(0.0, 0.08) * de
    r = max(dr.u(0.03, 0.05) * de, 0.75)
    lens = superellipse(a, b, p, 40)
    ca, cb = ea + [0, drop], eb + [0, drop]
    loops = [lens + ca, lens + cb]
    loops.append(stadium(ca + [0.9 * a, -0.25 * b], cb + [-0.9 * a, -0.25 * b], r))
    ear_lift = dr.u(0.0, 0.1) * ff.fh
    loops.append(stadium(ca + [-0.95 * a, -0.3 * b], ff.p[0] + [-0.03 * ff.fw, -ear_lift], r))
    loops.append(stadium(cb + [0.95 * a, -0.3 * b], ff.p[16] + [0.03 * ff.fw, -ear_lift], r))
    return Drawing(loops=[(ff.img(lp), False) for lp in loops],
                   info={"lens_semi_axes_px": [a, b], "lens_exponent": p})


def _surgical_mask(dr: Draws, ff: FaceFrame) -> Drawing:
    t27, t30 = ff.p[27, 1], ff.p[30, 1]
    t_top = t27 + dr.u(0.35, 0.6) * (t30 - t27)
    t_side = t_top + dr.u(0.0, 0.12) * ff.fh
    margin = dr.u(0.02, 0.05) * ff.fw + 1.0
    jaw = _pushed_jaw(ff, margin, dr.u(0.04, 0.1) * ff.fh)
    body = _below(jaw, t_side)
    peak = np.array([ff.p[30, 0], t_top - dr.u(0.0, 0.04) * ff.fh])
    outline = np.concatenate([body, peak[None]], 0)
    r = max(0.012 * ff.fw, 0.75)
    ear_a, ear_b = ff.p[0] + [-0.02 * ff.fw, 0.0], ff.p[16] + [0.02 * ff.fw, 0.0]
    low_a, low_b = jaw[4], jaw[12]
    loops = [outline, stadium(body[0], ear_a, r), stadium(body[-1], ear_b, r),
             stadium(low_a, ear_a, r), stadium(low_b, ear_b, r)]
    return Drawing(loops=[(ff.img(lp), False) for lp in loops], info={"top_t_fraction": (t_top - t27) / max(t30 - t27, 1e-6)})


def _hand(dr: Draws, ff: FaceFrame) -> Drawing:
    anchors = {
        "mouth": ff.mean(slice(48, 68)),
        "eye": ff.mean(slice(36, 42)) if dr.u() < 0.5 else ff.mean(slice(42, 48)),
        "cheek": 0.5 * (ff.p[3] + ff.p[31]) if dr.u() < 0.5 else 0.5 * (ff.p[13] + ff.p[35]),
        "chin": ff.p[8] + [0.0, -0.1 * ff.fh],
    }
    names = list(anchors)
    where = names[dr.i(0, len(names) - 1)]
    k = dr.u(0.85, 1.15) * ff.fw
    centre = anchors[where] + [dr.u(-0.08, 0.08) * ff.fw, dr.u(-0.08, 0.08) * ff.fh]
    alpha = dr.u(-0.9, 0.9)
    up = np.array([math.sin(alpha), -math.cos(alpha)])
    across = np.array([math.cos(alpha), math.sin(alpha)])

    def hp(v: float, u: float) -> np.ndarray:  # hand frame (across, up) -> face frame
        return centre + v * k * across + u * k * up

    palm = superellipse(0.25 * k, 0.29 * k, 2.4, 32)
    palm = _rot(palm, alpha) + centre  # rotate the palm with the hand
    loops = [palm]
    r = 0.055 * k
    for v, length, spread in ((-0.18, 0.36, -0.12), (-0.06, 0.43, -0.04), (0.06, 0.41, 0.04), (0.18, 0.33, 0.12)):
        length *= dr.u(0.85, 1.1)
        base = hp(v, 0.2)
        tip = base + length * k * (math.cos(spread) * up + math.sin(spread) * across)
        loops.append(stadium(base, tip, r))
    side = dr.sign()
    loops.append(stadium(hp(side * 0.2, -0.05), hp(side * 0.42, 0.2), 0.065 * k))
    loops.append(stadium(centre, hp(0.0, -1.6 * ff.fh / k), 0.21 * k))
    return Drawing(loops=[(ff.img(lp), False) for lp in loops], info={"anchor": where, "angle": alpha})


def _scarf(dr: Draws, ff: FaceFrame) -> Drawing:
    t33, t57 = ff.p[33, 1], ff.p[57, 1]
    t_top = t33 + dr.u(-0.3, 0.9) * (t57 - t33)
    s_l = ff.p[0, 0] - dr.u(0.1, 0.25) * ff.fw
    s_r = ff.p[16, 0] + dr.u(0.1, 0.25) * ff.fw
    sag = dr.u(-0.08, 0.08) * ff.fh
    tilt = dr.u(-0.06, 0.06) * ff.fh
    xs = np.linspace(0.0, 1.0, 9)
    top = [(s_l + x * (s_r - s_l),
            t_top + sag * (1 - (2 * x - 1) ** 2) + tilt * (2 * x - 1) + dr.u(-0.03, 0.03) * ff.fh) for x in xs]
    t_bot = ff.p[8, 1] + 1.5 * ff.fh
    loop = np.array(top + [(s_r, t_bot), (s_l, t_bot)])
    return Drawing(loops=[(ff.img(loop), False)], info={"top_t_fraction": (t_top - t33) / max(t57 - t33, 1e-6)})


def _fringe(dr: Draws, ff: FaceFrame, forehead: float) -> Drawing:
    brows = ff.p[17:27]
    gap = max(float(ff.p[36:48, 1].mean() - brows[:, 1].mean()), 1.0)
    d_l, d_r = dr.u(0.15, 0.9) * gap, dr.u(0.15, 0.9) * gap
    w = np.linspace(0.0, 1.0, 10)
    delta = np.maximum(d_l + w * (d_r - d_l), 1.5)
    lower = brows + np.stack([np.zeros(10), delta], 1)
    pts = []
    for i in range(10):
        pts.append(lower[i])
        if i < 9:
            mid = 0.5 * (lower[i] + lower[i + 1])
            pts.append([mid[0], max(lower[i, 1], lower[i + 1, 1]) + dr.u(0.1, 0.6) * gap])
    s_l, s_r = ff.p[0, 0] - 0.05 * ff.fw, ff.p[16, 0] + 0.05 * ff.fw
    t_top = ff.brow_t - (forehead + 0.15) * ff.fh
    side_l = lower[0, 1] + dr.u(0.0, 0.5) * gap
    side_r = lower[-1, 1] + dr.u(0.0, 0.5) * gap
    loop = np.array([[s_l, t_top], [s_l, side_l], *pts, [s_r, side_r], [s_r, t_top]])
    return Drawing(loops=[(ff.img(loop), False)], info={"depth_px": [d_l, d_r]})


def _beard(dr: Draws, ff: FaceFrame) -> Drawing:
    margin = dr.u(0.01, 0.04) * ff.fw + 1.5
    jaw = _pushed_jaw(ff, margin, dr.u(0.03, 0.08) * ff.fh + 1.0)
    full = dr.u() < 0.6
    hole = dr.u() < 0.8
    t33, t51, t57 = ff.p[33, 1], ff.p[51, 1], ff.p[57, 1]
    if full:
        k = dr.i(2, 4)
        t_m = t33 + dr.u(0.15, 0.4) * (t51 - t33)
        s48, s54 = ff.p[48, 0], ff.p[54, 0]
        top = [[s54 + 0.06 * ff.fw, t_m], [ff.p[33, 0], t33 + 0.1 * (t51 - t33)], [s48 - 0.06 * ff.fw, t_m]]
        outer = np.concatenate([jaw[k:17 - k], np.array(top)], 0)
        loops = [(outer, False)]
        if hole:
            loops.append((ff.p[48:60].copy(), True))
    else:
        t_c = t57 + dr.u(0.15, 0.45) * (ff.p[8, 1] - t57)
        loops = [(_below(jaw, t_c), False)]
    return Drawing(loops=[(ff.img(lp), h) for lp, h in loops],
                   info={"style": "full" if full else "chin", "mouth_open": bool(full and hole)})


def _microphone(dr: Draws, ff: FaceFrame) -> Drawing:
    mouth = ff.mean(slice(48, 68))
    c = mouth + [dr.u(-0.25, 0.25) * ff.fw, dr.u(0.05, 0.3) * ff.fh]
    rad = dr.u(0.13, 0.2) * ff.fw
    head = superellipse(rad, rad * dr.u(1.0, 1.25), 2.0, 32) + c
    beta = dr.u(-0.6, 0.6)
    dvec = np.array([math.sin(beta), math.cos(beta)])
    nvec = np.array([dvec[1], -dvec[0]])
    end = c + dvec * dr.u(1.0, 1.6) * ff.fh
    handle = np.array([c + 0.6 * rad * nvec, end + 0.45 * rad * nvec, end - 0.45 * rad * nvec, c - 0.6 * rad * nvec])
    return Drawing(loops=[(ff.img(head), False), (ff.img(handle), False)], info={"head_radius_px": rad})


def _cup(dr: Draws, ff: FaceFrame) -> Drawing:
    mouth = ff.mean(slice(48, 68))
    top = mouth + [dr.u(-0.15, 0.15) * ff.fw, dr.u(0.0, 0.15) * ff.fh]
    w = dr.u(0.4, 0.6) * ff.fw
    h = dr.u(0.5, 0.75) * ff.fw
    gamma = dr.u(-0.35, 0.35)
    side = dr.sign()
    th = dr.u(0.04, 0.06) * w + 0.5
    body = np.array([[-w / 2, 0.0], [w / 2, 0.0], [0.4 * w, h], [-0.4 * w, h]])
    ang = np.linspace(-1.2, 1.2, 7)
    hc = np.array([side * 0.45 * w, 0.45 * h])
    arc = hc + 0.24 * h * np.stack([side * np.cos(ang), np.sin(ang)], 1)
    loops = [body] + [stadium(arc[i], arc[i + 1], th, 4) for i in range(len(arc) - 1)]
    loops = [_rot(lp, -gamma) + top for lp in loops]
    return Drawing(loops=[(ff.img(lp), False) for lp in loops], info={"width_px": w, "height_px": h})


def draw_natural(kind: str, dr: Draws, lm: np.ndarray, forehead: float) -> Drawing:
    """A natural occluder placed from the 68 landmarks ``lm (68, 2)``; kind in NATURAL_TYPES
    or 'natural' (one of them at random). Paper Sec. 1 item 3 ("goggles, facial hair")."""
    if kind == "natural":
        kind = NATURAL_TYPES[dr.i(0, len(NATURAL_TYPES) - 1)]
    ff = FaceFrame(np.asarray(lm, float))
    fn = {"sunglasses": _sunglasses, "surgical_mask": _surgical_mask, "hand": _hand, "scarf": _scarf,
          "beard": _beard, "microphone": _microphone, "cup": _cup}.get(kind)
    d = _fringe(dr, ff, forehead) if kind == "fringe" else fn(dr, ff)
    d.info = {"type": kind, **d.info}
    return d
