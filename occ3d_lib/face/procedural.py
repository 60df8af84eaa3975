"""The embedded procedural morphable face model (paper Eq. 3 without downloads).

Taught in notebook 01, section 1. :func:`procedural_face_model` builds, from code
only, a :class:`~occ3d_lib.face.facemodel.FaceModel` in exactly the BFM_model_front
layout, so every later notebook runs the same code on it as on the real Basel
Face Model. :func:`load_or_build_procedural` caches it under
``cache_dir()/face_models/``.

How the procedural model is built
---------------------------------
1. **Mesh.** A front-facing face mask (like ``BFM_model_front``, not a full head)
   is a grid of ``rows x cols`` vertices. Row ``j`` sits at height ``Y_j`` (rows
   are denser around the eyes and the mouth; one row lies exactly on the mouth
   line, the *mouth seam*) and spans the face outline ``|X| <= w(Y)``: an egg
   shape, widest at the cheekbones, narrowing along the jaw to the chin. Each
   grid square becomes two triangles wound counter-clockwise seen from +z, so
   normals point out of the face; the diagonals are mirrored about ``X = 0`` so
   the mesh is left/right symmetric (an odd column count puts a column on
   ``X = 0``). ``light``: 72 x 65 = 4680 vertices, 9088 triangles; ``dense``:
   189 x 189 = 35721 vertices, 70688 triangles (BFM: 35709 / 70789).
2. **Mean shape.** Depth is a height field ``z(X, Y)``: an elliptic head profile
   that wraps back towards the ears and under the chin, plus smooth bumps and
   dents for the brow ridge, eye sockets and eyeballs, the nose (bridge, tip,
   wings, nostrils), cheekbones, lips with a crease at the mouth line, the chin
   and the temples. Units are BFM's (1 unit = 10 cm): about 1.5 units wide and
   1.8 tall, so a face at ``trans = 0`` fills most of a 224 px crop. The shape
   is re-centred on its vertex centroid (as Deep3DFaceRecon does with BFM).
3. **Mean albedo** (0..255): skin, redder lips, a dark mouth seam, dark brows,
   eyes (white, dark iris, pupil, lash line), darker nostrils, slightly red cheeks.
4. **Bases.** For each of identity (80), expression (64) and albedo (80) the
   first components are hand-written displacement (or colour) fields with a
   name (:data:`COMPONENT_NAMES`) and a physical size per standard deviation
   (e.g. "mouth open": the jaw drops 9 mm and the lips part along the mouth
   seam; "eye close": the upper lids travel half-way down). The rest are
   smooth random fields (sums of mostly left/right-symmetric Gaussian bumps,
   seeded by ``seed``). The columns of each set are orthonormalised in order
   (Gram-Schmidt, computed as CholeskyQR2): the named directions come first and
   keep their meaning, the random ones are made orthogonal to them. Each unit
   column is then multiplied by its standard deviation: for a named component
   the norm of its hand-written field, for the random ones a geometric tail
   below it, forced strictly decreasing, like a PCA spectrum. So
   ``base = Q diag(sigma)`` with ``Q^T Q = I`` and coefficients ~ N(0, 1);
   ``info["std_rms"]`` holds sigma / sqrt(N) (RMS per-vertex change per std).
   As in any linear model, large negative values are not physical (mouth open
   below about -1: the lower lip slides up over the upper one). The lips are
   parted by 1.2 mm at rest so that small negative values just close them.
5. **Landmarks.** The 68 iBUG keypoints are the grid vertices nearest to target
   positions on the features (jaw contour along the outline from image-left to
   image-right, brows, nose bridge and lower nose, eye corners and lids, outer
   and inner lips; the inner lips 61-63 / 65-67 are on the rows just above / below
   the mouth seam so that "mouth open" separates them). Image-left is ``X < 0``.
6. **Skin mask**: 1 on skin, 0 on eyes, brows, lips, mouth and nostrils.

Everything is deterministic: the same ``(resolution, seed)`` gives byte-identical
tensors; the seed only changes the random components.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from occ3d_lib.core.artifacts import cache_dir, load_or_build
from occ3d_lib.core.config import config_hash
from occ3d_lib.face.facemodel import N_LANDMARKS, FaceModel, build_point_buf

VERSION = 1

#: Grid size (rows, cols) per mesh resolution.
RESOLUTIONS: dict[str, tuple[int, int]] = {"light": (72, 65), "dense": (189, 189)}

N_ID, N_EXP, N_TEX = 80, 64, 80

# ----------------------------------------------------------------- face layout
# All positions are in model units (BFM's: 1 unit = 10 cm) before re-centring.
Y_TOP, Y_BOT = 0.85, -0.98
EYE_X, EYE_Y = 0.32, 0.25          # eye centres (+-EYE_X, EYE_Y)
EYE_A, EYE_UP, EYE_LO = 0.15, 0.05, 0.035  # eye half-width, upper / lower lid height
BROW_Y = 0.41
NOSE_TIP_Y = -0.08
SUBNASALE_Y = -0.2
MOUTH_Y = -0.43                    # the mouth seam row
MOUTH_W = 0.25                     # mouth half-width
CHIN_Y = -0.8
REST_PARTING = 0.012               # the lips are parted by 1.2 mm at rest
HEAD_DEPTH = 0.6

_ID_NAMED: list[tuple[str, float]] = [  # (name, largest displacement per std in model units)
    ("face width", 0.055), ("face height", 0.05), ("face depth", 0.042), ("chin length", 0.04),
    ("jaw width", 0.04), ("forehead slope", 0.05), ("cheek fullness", 0.04), ("chin prominence", 0.03),
    ("mouth width", 0.02), ("nose length", 0.03), ("eye spacing", 0.018), ("nose projection", 0.035),
    ("brow height", 0.02), ("nose width", 0.02), ("lip thickness", 0.012), ("eye size", 0.012),
]
_EXP_NAMED: list[tuple[str, float]] = [  # eye close / squint: fraction of the lid travel per std
    ("mouth open", 0.09), ("smile", 0.04), ("brow raise", 0.04), ("pucker", 0.03), ("frown", 0.035),
    ("cheek puff", 0.03), ("jaw sideways", 0.015), ("eye close", 0.5), ("smirk", 0.025), ("lip press", 0.02),
    ("sneer", 0.02), ("squint", 0.3),
]
_TEX_NAMED: list[tuple[str, float]] = [  # largest change per std on the 0..255 scale
    ("skin tone (darker)", 27.0), ("redness", 9.0), ("yellowness", 7.0), ("beard shadow", 10.0),
    ("lip colour", 20.0), ("brow darkness", 30.0), ("iris colour", 40.0), ("T-zone lightness", 8.0),
    ("cheek blush", 12.0), ("under-eye darkness", 12.0),
]


def _names(named: list[tuple[str, float]], k: int) -> list[str]:
    return [n for n, _ in named] + [f"random {i}" for i in range(len(named), k)]


#: Names of the components of each basis (same for both resolutions and every seed).
COMPONENT_NAMES: dict[str, list[str]] = {
    "id": _names(_ID_NAMED, N_ID), "exp": _names(_EXP_NAMED, N_EXP), "tex": _names(_TEX_NAMED, N_TEX),
}


def component_index(part: str, name: str) -> int:
    """Column of the component called ``name`` in basis ``part`` ("id", "exp" or "tex")."""
    if part not in COMPONENT_NAMES:
        raise ValueError(f"part must be one of {list(COMPONENT_NAMES)}, got {part!r}")
    try:
        return COMPONENT_NAMES[part].index(name)
    except ValueError:
        raise ValueError(f"no {part} component called {name!r}; named ones: "
                         f"{[n for n in COMPONENT_NAMES[part] if not n.startswith('random')]}") from None


# -------------------------------------------------------------- small helpers
def _g(x: np.ndarray, s: float) -> np.ndarray:
    return np.exp(-(x / s) ** 2)


def _gauss2(X: np.ndarray, Y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-((X - cx) / sx) ** 2 - ((Y - cy) / sy) ** 2)


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def half_width(Y: np.ndarray) -> np.ndarray:
    """Half-width w(Y) of the face outline (model units): egg-shaped, widest at the cheekbones."""
    Y = np.asarray(Y, dtype=np.float64)
    top = 0.75 - 0.3 * (np.clip(Y, 0, None) / Y_TOP) ** 2.5
    bot = 0.75 * np.sqrt(np.clip(1 - (np.clip(-Y, 0, None) / 0.995) ** 2.2, 0.0, None))
    return np.where(Y >= 0, top, np.maximum(bot, 0.1))


def _row_heights(rows: int) -> tuple[np.ndarray, int]:
    """Row heights Y_j (ascending), denser at the eyes and mouth; one row exactly on MOUTH_Y."""
    fine = np.linspace(Y_BOT, Y_TOP, 20001)
    rho = (1 + 1.2 * _g(fine - EYE_Y, 0.07) + 2.0 * _g(fine - MOUTH_Y, 0.06) + 0.5 * _g(fine - NOSE_TIP_Y, 0.1))
    cdf = np.concatenate([[0.0], np.cumsum((rho[1:] + rho[:-1]) / 2 * np.diff(fine))])
    cdf /= cdf[-1]
    t = np.linspace(0.0, 1.0, rows)
    tm = float(np.interp(MOUTH_Y, fine, cdf))
    seam = int(np.argmin(np.abs(t - tm)))
    # piecewise-linear re-mapping so that grid point `seam` lands exactly on the mouth line
    t2 = np.where(t <= t[seam], t / t[seam] * tm, tm + (t - t[seam]) / (1 - t[seam]) * (1 - tm))
    ys = np.interp(t2, cdf, fine)
    ys[seam] = MOUTH_Y
    return ys, seam


class _Grid:
    """Rest-pose parametrisation of the mesh: X, Y (N,), row and column ids, the seam row."""

    def __init__(self, rows: int, cols: int) -> None:
        ys, seam = _row_heights(rows)
        u = np.linspace(-1.0, 1.0, cols)
        self.rows, self.cols, self.seam = rows, cols, seam
        self.row = np.repeat(np.arange(rows), cols)
        self.col = np.tile(np.arange(cols), rows)
        self.Y = ys[self.row]
        self.X = half_width(self.Y) * u[self.col]
        self.u = u[self.col]
        self.ys = ys

    @property
    def n(self) -> int:
        return self.rows * self.cols

    def triangles(self) -> np.ndarray:
        """(F, 3) triangles, counter-clockwise seen from +z (outward normals), mirrored diagonals."""
        r, c = self.rows, self.cols
        jj, ii = np.meshgrid(np.arange(r - 1), np.arange(c - 1), indexing="ij")
        jj, ii = jj.reshape(-1), ii.reshape(-1)
        a = jj * c + ii          # bottom-left
        b = a + 1                # bottom-right
        cc = a + c + 1           # top-right
        d = a + c                # top-left
        left = ii < (c - 1) // 2
        t1 = np.where(left[:, None], np.stack([a, b, cc], 1), np.stack([a, b, d], 1))
        t2 = np.where(left[:, None], np.stack([a, cc, d], 1), np.stack([b, cc, d], 1))
        return np.stack([t1, t2], 1).reshape(-1, 3)


# ----------------------------------------------------------- feature geometry
def _eye_lids(X: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper and lower lid heights and the opening profile (1 - s^2)_+ of one eye (side = -1 / +1)."""
    s = (X - side * EYE_X) / EYE_A
    prof = np.clip(1 - s ** 2, 0.0, None)
    return EYE_Y + 0.008 + EYE_UP * prof ** 0.8, EYE_Y + 0.008 - EYE_LO * prof ** 0.8, prof


def _lip_curves(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outer upper / lower lip heights and the lip profile across the mouth."""
    p = np.clip(1 - (X / MOUTH_W) ** 2, 0.0, None)
    upper = MOUTH_Y + 0.06 * p ** 0.5 - 0.012 * _g(X, 0.035) * p
    lower = MOUTH_Y - 0.085 * p ** 0.7
    return upper, lower, p


def _brow_curve(ax: np.ndarray) -> np.ndarray:
    """Brow centre height at |X| = ax (an arch)."""
    t = np.clip((ax - 0.1) / 0.47, 0.0, 1.0)
    return BROW_Y + 0.045 * np.sin(np.pi * (0.25 + 0.7 * t)) - 0.01


def _regions(gr: _Grid) -> dict[str, np.ndarray]:
    """Soft 0..1 region weights per vertex (eyes, iris, pupil, lash, brows, lips, seam, nostrils)."""
    X, Y = gr.X, gr.Y
    out = {k: np.zeros(gr.n) for k in ("eye", "iris", "pupil", "lash", "brow", "lip", "seam", "nostril")}
    for side in (-1.0, 1.0):
        up, lo, prof = _eye_lids(X, side)
        inside = _smoothstep(up - Y, -0.004, 0.006) * _smoothstep(Y - lo, -0.004, 0.006) * (prof > 0)
        out["eye"] = np.maximum(out["eye"], inside)
        r = np.hypot(X - side * EYE_X, Y - (EYE_Y + 0.006))
        out["iris"] = np.maximum(out["iris"], inside * _smoothstep(-r, -0.05, -0.038))
        out["pupil"] = np.maximum(out["pupil"], inside * _smoothstep(-r, -0.02, -0.012))
        lash = _g(Y - up - 0.004, 0.01) * _smoothstep(prof, 0.0, 0.3) * (prof > 0)
        out["lash"] = np.maximum(out["lash"], lash)
        out["nostril"] = np.maximum(out["nostril"], _gauss2(X, Y, side * 0.05, SUBNASALE_Y + 0.03, 0.028, 0.018))
    ax = np.abs(X)
    thick = 0.03 - 0.012 * np.clip((ax - 0.1) / 0.47, 0, 1)
    out["brow"] = (np.exp(-((Y - _brow_curve(ax)) / thick) ** 4) * _smoothstep(ax, 0.08, 0.13)
                   * (1 - _smoothstep(ax, 0.53, 0.6)))
    upper, lower, p = _lip_curves(X)
    out["lip"] = _smoothstep(upper - Y, -0.006, 0.008) * _smoothstep(Y - lower, -0.006, 0.008) * _smoothstep(p, 0, 0.08)
    out["seam"] = (gr.row == gr.seam) * _smoothstep(p, 0.0, 0.25)
    return out


def _mean_depth(gr: _Grid) -> np.ndarray:
    """Height field z(X, Y) of the mean face (before re-centring)."""
    X, Y = gr.X, gr.Y
    ax = np.abs(X)
    w = half_width(Y)
    z = HEAD_DEPTH * np.clip(1 - (X / (1.06 * w)) ** 2, 0.0, None) ** 0.8
    z -= 0.6 * np.clip(Y - 0.45, 0, None) ** 2                       # forehead slopes back
    z -= 0.35 * (np.clip(-0.78 - Y, 0, None) / 0.2) ** 2              # under the chin
    z += 0.07 * _gauss2(X, Y, 0, -0.38, 0.28, 0.22)                   # muzzle (maxilla / teeth)
    z += 0.045 * _g(Y - 0.41, 0.06) * np.exp(-(X / 0.5) ** 4)          # brow ridge
    z += 0.03 * _gauss2(X, Y, 0, 0.36, 0.08, 0.06)                    # glabella
    for side in (-1.0, 1.0):
        z -= 0.12 * _gauss2(X, Y, side * EYE_X, EYE_Y + 0.01, 0.15, 0.1)  # eye socket
        z += 0.065 * _gauss2(X, Y, side * EYE_X, EYE_Y + 0.008, 0.1, 0.055)  # eyeball
        z -= 0.025 * _gauss2(X, Y, side * 0.62, 0.42, 0.1, 0.15)      # temple
    # nose: a ridge rising from the bridge to the tip, falling fast underneath
    t = np.clip((0.34 - Y) / (0.34 - NOSE_TIP_Y), 0, 1)
    prof = np.where(Y >= NOSE_TIP_Y, t ** 1.25, _g(NOSE_TIP_Y - Y, 0.08))
    width = 0.045 + 0.04 * t
    z += 0.21 * prof * _g(X, width)
    z += 0.04 * _gauss2(X, Y, 0, NOSE_TIP_Y - 0.005, 0.055, 0.045)   # tip bulb
    z += 0.075 * (_gauss2(ax, Y, 0.095, NOSE_TIP_Y - 0.06, 0.045, 0.045))  # alae (wings)
    z -= 0.02 * _gauss2(ax, Y, 0.15, NOSE_TIP_Y - 0.05, 0.02, 0.06)  # alar groove
    z -= 0.03 * _gauss2(ax, Y, 0.05, SUBNASALE_Y + 0.03, 0.025, 0.02)  # nostrils
    z += 0.055 * _gauss2(ax, Y, 0.42, 0.0, 0.16, 0.15)                 # cheekbones
    # nasolabial folds: a shallow crease from the nose wings to the mouth corners
    d = (ax - 0.16 - (NOSE_TIP_Y - 0.06 - Y) * 0.35)
    z -= (0.012 * _g(d, 0.025) * _smoothstep(Y, MOUTH_Y - 0.05, MOUTH_Y + 0.03)
          * (1 - _smoothstep(Y, NOSE_TIP_Y - 0.08, NOSE_TIP_Y)))
    z += 0.012 * _gauss2(X, Y, 0, (SUBNASALE_Y + MOUTH_Y) / 2 + 0.02, 0.02, 0.05)  # philtrum ridge
    upper, lower, p = _lip_curves(X)
    lipx = np.exp(-(X / 0.23) ** 4)
    z += 0.04 * lipx * _g(Y - (MOUTH_Y + 0.032), 0.03)                 # upper lip
    z += 0.045 * lipx * _g(Y - (MOUTH_Y - 0.045), 0.035)               # lower lip
    z -= 0.018 * _g(Y - MOUTH_Y, 0.008) * _smoothstep(p, 0, 0.3)       # mouth crease
    z -= 0.02 * np.exp(-(X / 0.18) ** 4) * _g(Y - (MOUTH_Y - 0.13), 0.03)  # mentolabial sulcus
    z += 0.05 * _gauss2(X, Y, 0, CHIN_Y + 0.02, 0.16, 0.1)             # chin
    return z


def _mean_albedo(gr: _Grid, reg: dict[str, np.ndarray]) -> np.ndarray:
    """(N, 3) mean albedo on the 0..255 scale."""
    skin = np.array([200.0, 150.0, 125.0])
    col = np.tile(skin, (gr.n, 1))
    col += 22 * _gauss2(np.abs(gr.X), gr.Y, 0.4, -0.08, 0.15, 0.13)[:, None] * np.array([1.0, -0.5, -0.4])

    def paint(w: np.ndarray, c: tuple[float, float, float]) -> None:
        col[:] = col * (1 - w[:, None]) + np.asarray(c) * w[:, None]

    paint(0.8 * reg["nostril"], (95, 55, 50))
    paint(reg["lip"], (175, 88, 88))
    paint(reg["seam"], (55, 20, 22))
    paint(0.85 * reg["brow"], (70, 50, 40))
    paint(reg["eye"], (235, 228, 222))
    paint(reg["iris"], (85, 55, 35))
    paint(reg["pupil"], (15, 10, 10))
    paint(0.8 * reg["lash"], (45, 32, 30))
    return col


# ------------------------------------------------------------- named fields
Field = Callable[[_Grid], np.ndarray]  # -> (N, 3) displacement per std


def _vec(dx: np.ndarray | float = 0.0, dy: np.ndarray | float = 0.0, dz: np.ndarray | float = 0.0, n: int = 0) -> np.ndarray:
    out = np.zeros((n, 3))
    out[:, 0], out[:, 1], out[:, 2] = dx, dy, dz
    return out


def _unit_max(f: np.ndarray) -> np.ndarray:
    m = np.abs(f).max()
    return f / m if m > 0 else f


def _id_fields(gr: _Grid, z: np.ndarray) -> list[np.ndarray]:
    X, Y, n = gr.X, gr.Y, gr.n
    ax, sx = np.abs(X), np.sign(X)
    lower_face = _sigmoid((-0.3 - Y) / 0.1)
    lips_up, lips_lo, lp = _lip_curves(X)
    f = {
        "face width": _vec(dx=X / 0.75, n=n),
        "face height": _vec(dy=(Y - 0.0) / 0.95, n=n),
        "face depth": _vec(dz=(z - z.min()) / (z.max() - z.min()), n=n),
        "jaw width": _vec(dx=X / 0.7 * lower_face, n=n),
        "cheek fullness": _vec(dx=0.5 * sx * _gauss2(ax, Y, 0.45, -0.1, 0.2, 0.2),
                               dz=_gauss2(ax, Y, 0.42, -0.1, 0.18, 0.18), n=n),
        "chin length": _vec(dy=-_sigmoid((MOUTH_Y - 0.12 - Y) / 0.06) * _g(X, 0.5), n=n),
        "nose length": _vec(dy=-_g(X, 0.13) * np.where(Y > NOSE_TIP_Y, np.clip((0.3 - Y) / (0.3 - NOSE_TIP_Y), 0, 1),
                                                     _g(NOSE_TIP_Y - Y, 0.12)), n=n),
        "nose projection": _vec(dz=_g(X, 0.09) * np.where(Y > NOSE_TIP_Y, np.clip((0.3 - Y) / (0.3 - NOSE_TIP_Y), 0, 1),
                                                         _g(NOSE_TIP_Y - Y, 0.08)), n=n),
        "brow height": _vec(dy=_gauss2(ax, Y, 0.3, BROW_Y + 0.02, 0.3, 0.08),
                            dz=0.4 * _gauss2(ax, Y, 0.3, BROW_Y, 0.3, 0.05), n=n),
        "forehead slope": _vec(dz=-(np.clip(Y - 0.3, 0, None) / 0.55) ** 2, n=n),
        "eye spacing": _vec(dx=np.tanh(X / 0.08) * _gauss2(ax, Y, EYE_X, EYE_Y, 0.18, 0.13), n=n),
        "nose width": _vec(dx=(X / 0.12) * _gauss2(X, Y, 0, NOSE_TIP_Y - 0.05, 0.15, 0.1), n=n),
        "chin prominence": _vec(dz=_gauss2(X, Y, 0, CHIN_Y, 0.2, 0.12), n=n),
        "mouth width": _vec(dx=(X / MOUTH_W) * _gauss2(X, Y, 0, MOUTH_Y, 0.3, 0.08), n=n),
        "lip thickness": _vec(dy=np.exp(-(X / 0.22) ** 4) * (_g(Y - (MOUTH_Y + 0.05), 0.035) - _g(Y - (MOUTH_Y - 0.07), 0.04)),
                              dz=0.5 * np.exp(-(X / 0.22) ** 4) * _g(Y - MOUTH_Y, 0.07), n=n),
        "eye size": _vec(dy=sum(np.clip((Y - EYE_Y) / 0.05, -1.5, 1.5) * _gauss2(X, Y, s * EYE_X, EYE_Y, 0.15, 0.07)
                                for s in (-1, 1)), n=n),
    }
    return [_unit_max(f[name]) * size for name, size in _ID_NAMED]


def _mouth_parting(gr: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """Where the lips part: a lens across the mouth (N,) and the side of the seam (1 below, 0.5 on, 0 above)."""
    lens = np.clip(1 - (gr.X / (MOUTH_W * 0.95)) ** 2, 0, None) ** 0.7
    below = np.where(gr.row < gr.seam, 1.0, np.where(gr.row == gr.seam, 0.5, 0.0))
    return lens, below


def _exp_fields(gr: _Grid) -> list[np.ndarray]:
    X, Y, n = gr.X, gr.Y, gr.n
    ax, sx = np.abs(X), np.sign(X)
    # mouth open: the jaw drops; inside the mouth the lips part along the seam row
    lens, below = _mouth_parting(gr)
    jaw = _smoothstep(-Y, -MOUTH_Y - 0.06, -MOUTH_Y + 0.16) * (0.35 + 0.65 * _g(X, 0.55))
    drop = lens * np.maximum(below, jaw) + (1 - lens) * jaw
    # the jaw rotates about a hinge behind the face: what drops also moves back (and, for a negative
    # coefficient, the lower lip moves up in front of the upper lip instead of through it)
    mouth_open = _vec(dy=-drop, dz=-0.5 * drop, n=n)
    corners = _gauss2(ax, Y, MOUTH_W, MOUTH_Y, 0.12, 0.1)
    cheeks = _gauss2(ax, Y, 0.35, -0.18, 0.13, 0.12)
    smile = _vec(dx=0.6 * sx * corners, dy=corners + 0.4 * cheeks, dz=0.6 * cheeks, n=n)
    brows = _gauss2(ax, Y, 0.3, BROW_Y, 0.3, 0.1) + 0.4 * _smoothstep(Y, BROW_Y, Y_TOP) * _g(X, 0.6)
    brow_raise = _vec(dy=brows, n=n)
    inner_brow = _gauss2(ax, Y, 0.15, BROW_Y, 0.12, 0.08)
    frown = _vec(dx=-0.6 * sx * inner_brow, dy=-inner_brow - 0.8 * corners, dz=0.2 * inner_brow, n=n)
    jaw_sideways = _vec(dx=_smoothstep(-Y, -MOUTH_Y - 0.02, -MOUTH_Y + 0.2) * _g(X, 0.6), n=n)
    mouth = np.exp(-(X / 0.3) ** 4) * _g(Y - MOUTH_Y, 0.09)
    pucker = _vec(dx=-X / MOUTH_W * mouth, dz=1.0 * mouth, n=n)
    puff = _vec(dx=0.5 * sx * _gauss2(ax, Y, 0.38, -0.35, 0.14, 0.14), dz=_gauss2(ax, Y, 0.36, -0.35, 0.13, 0.13), n=n)
    close = np.zeros(n)
    squint = np.zeros(n)
    for side in (-1.0, 1.0):
        up, lo, prof = _eye_lids(X, side)
        h = up - lo
        inside = np.clip(Y - lo, 0, None)
        c = np.where(up >= Y, inside, h * _g(np.clip(Y - up, 0, None), 0.05))
        close -= c * (np.abs(X - side * EYE_X) < 0.25)
        sq = np.where(lo <= Y, np.clip(up - Y, 0, None), h * _g(np.clip(lo - Y, 0, None), 0.05))
        squint += sq * (np.abs(X - side * EYE_X) < 0.25)
    eye_close = _vec(dy=close, n=n)  # 1 = lids fully closed
    squint_f = _vec(dy=squint, n=n)  # 1 = lower lids fully raised
    left = _gauss2(X, Y, -MOUTH_W, MOUTH_Y, 0.12, 0.1)
    smirk = _vec(dx=-0.6 * left, dy=left, n=n)
    sneer_w = _gauss2(ax, Y, 0.1, NOSE_TIP_Y - 0.1, 0.1, 0.1) + 0.6 * np.exp(-(X / 0.2) ** 4) * _g(Y - (MOUTH_Y + 0.04), 0.04)
    sneer = _vec(dy=sneer_w, n=n)
    press = _vec(dz=-np.exp(-(X / 0.22) ** 4) * _g(Y - MOUTH_Y, 0.06), n=n)
    f = {"mouth open": mouth_open, "smile": smile, "brow raise": brow_raise, "frown": frown,
         "jaw sideways": jaw_sideways, "pucker": pucker, "cheek puff": puff, "eye close": eye_close,
         "smirk": smirk, "sneer": sneer, "lip press": press, "squint": squint_f}
    out = []
    for name, size in _EXP_NAMED:
        v = f[name] if name in ("eye close", "squint") else _unit_max(f[name])
        out.append(v * size)
    return out


def _tex_fields(gr: _Grid, reg: dict[str, np.ndarray], mean_tex: np.ndarray) -> list[np.ndarray]:
    X, Y, n = gr.X, gr.Y, gr.n
    ax = np.abs(X)
    eyes = np.clip(reg["eye"], 0, 1)
    skin = (1 - eyes)[:, None]
    tone = -skin * mean_tex * np.array([0.85, 1.0, 1.1]) / 150.0
    one = np.ones(n)
    f = {
        "skin tone (darker)": tone,
        "redness": skin * np.array([1.0, -0.4, -0.5]) * one[:, None],
        "yellowness": skin * np.array([0.4, 0.5, -1.0]) * one[:, None],
        "beard shadow": (_smoothstep(-Y, 0.25, 0.4) * (1 - reg["lip"]) * _smoothstep(-ax, -0.62, -0.45))[:, None]
        * np.array([-1.0, -0.9, -0.75]),
        "lip colour": reg["lip"][:, None] * np.array([-0.3, -1.0, -0.7]),
        "brow darkness": reg["brow"][:, None] * np.array([-1.0, -0.9, -0.8]),
        "cheek blush": _gauss2(ax, Y, 0.4, -0.08, 0.15, 0.13)[:, None] * np.array([1.0, -0.3, -0.2]),
        "T-zone lightness": ((_g(X, 0.1) * _smoothstep(Y, NOSE_TIP_Y - 0.05, 0.3) + _g(X, 0.4) * _smoothstep(Y, 0.45, 0.6))
                             * (1 - eyes))[:, None] * np.array([1.0, 1.0, 0.9]),
        "under-eye darkness": sum(_gauss2(X, Y, s * EYE_X, EYE_Y - 0.07, 0.1, 0.035) for s in (-1, 1))[:, None]
        * (1 - eyes)[:, None] * np.array([-0.8, -1.0, -0.7]),
        "iris colour": (reg["iris"] * (1 - reg["pupil"]))[:, None] * np.array([-0.2, 0.3, 1.0]),
    }
    return [_unit_max(f[name]) * size for name, size in _TEX_NAMED]


# ------------------------------------------------------------ random fields
def _random_fields(gr: _Grid, k: int, rng: np.random.Generator, region: str) -> list[np.ndarray]:
    """k smooth random fields (N, 3) of unit RMS: sums of Gaussian bumps, mostly mirror-symmetric.

    region: "face" (identity, anywhere), "expr" (around eyes, brows, mouth, cheeks) or
    "colour" (RGB blotches). Later fields use smaller bumps (higher frequencies, like PCA).
    """
    X, Y = gr.X, gr.Y
    out = []
    hot = np.array([[EYE_X, EYE_Y], [0.3, BROW_Y], [0.15, MOUTH_Y], [0.0, MOUTH_Y - 0.05], [0.35, -0.2],
                    [0.1, NOSE_TIP_Y - 0.05], [0.25, 0.6]])
    for i in range(k):
        frac = i / max(k - 1, 1)
        f = np.zeros((gr.n, 3))
        for _ in range(int(rng.integers(2, 5))):
            if region == "expr":
                cx, cy = hot[int(rng.integers(len(hot)))] + rng.normal(0, 0.05, 2)
                cx *= rng.choice([-1.0, 1.0])
            else:
                cx, cy = rng.uniform(-0.65, 0.65), rng.uniform(-0.9, 0.8)
            s = rng.uniform(0.12, 0.3) * (1 - 0.35 * frac)
            sx, sy = s * rng.uniform(0.7, 1.4), s * rng.uniform(0.7, 1.4)
            if region == "colour":
                a = rng.normal(0, 1, 3) * 0.4 + rng.normal(0, 1) * np.array([1.0, 0.9, 0.8])
            else:
                a = rng.normal(0, 1, 3) * np.array([0.6, 0.6, 1.0])
            bump = _gauss2(X, Y, cx, cy, sx, sy)
            f += bump[:, None] * a
            if rng.uniform() < (0.8 if region == "face" else 0.6):  # mirror copy: a symmetric change
                mirror = a * (np.array([-1.0, 1.0, 1.0]) if region != "colour" else 1.0)
                f += _gauss2(X, Y, -cx, cy, sx, sy)[:, None] * mirror
        rms = np.sqrt((f ** 2).sum(1).mean())
        out.append(f / max(rms, 1e-12))
    return out


def _orthonormal_basis(fields: list[np.ndarray], stds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gram-Schmidt (QR with a positive diagonal) of the fields in order, scaled by ``stds``.

    fields: K arrays (N, 3); stds (K,) strictly decreasing L2 norms. -> (3N, K) base, (3N, K) Q.
    """
    q = np.stack([f.reshape(-1) for f in fields], 1)
    # CholeskyQR2: A = Q R with R upper-triangular and a positive diagonal, i.e. exactly
    # Gram-Schmidt in column order; two passes make Q orthonormal to float64 precision.
    for _ in range(2):
        r = np.linalg.cholesky(q.T @ q).T
        q = q @ np.linalg.inv(r)
    return q * stds[None, :], q


def _decreasing(norms: np.ndarray, n_total: int, tail_start: float, tail_decay: float) -> np.ndarray:
    """Strictly decreasing stds: the named norms (forced monotone), then a geometric tail."""
    s = np.zeros(n_total)
    prev = np.inf
    for i, v in enumerate(norms):
        prev = min(v, prev * 0.995)
        s[i] = prev
    k0 = len(norms)
    start = min(tail_start, s[k0 - 1] * 0.9)
    s[k0:] = start * tail_decay ** np.arange(n_total - k0)
    return s


# ------------------------------------------------------------------ landmarks
def _nearest(gr: _Grid, x: float, y: float, mask: np.ndarray | None = None) -> int:
    d = (gr.X - x) ** 2 + (gr.Y - y) ** 2
    if mask is not None:
        d = np.where(mask, d, np.inf)
    return int(np.argmin(d))


def _jaw_targets() -> np.ndarray:
    """17 points spaced evenly along the lower outline, from image-left (X < 0) at eye level to image-right."""
    ys = np.linspace(0.2, Y_BOT, 400)
    x_left = -0.94 * half_width(ys)
    # lowest part: continue horizontally at the chin to X = 0
    y_chin = Y_BOT + 0.05
    keep = ys >= y_chin
    pts = np.stack([x_left[keep], ys[keep]], 1)
    pts = np.concatenate([pts, np.stack([np.linspace(pts[-1, 0], 0, 50), np.full(50, y_chin)], 1)])
    seg = np.hypot(*np.diff(pts, axis=0).T)
    s = np.concatenate([[0], np.cumsum(seg)])
    t = np.linspace(0, s[-1], 9)
    half = np.stack([np.interp(t, s, pts[:, 0]), np.interp(t, s, pts[:, 1])], 1)
    right = half[:-1][::-1] * np.array([-1.0, 1.0])
    return np.concatenate([half, right])


def _landmarks(gr: _Grid, z: np.ndarray) -> np.ndarray:
    """(68,) vertex ids in iBUG order (0-based), image-left = X < 0."""
    ids: list[int] = [_nearest(gr, x, y) for x, y in _jaw_targets()]                  # 0-16 jaw
    for xs in (np.linspace(-0.53, -0.13, 5), np.linspace(0.13, 0.53, 5)):              # 17-26 brows
        ids += [_nearest(gr, x, float(_brow_curve(np.abs(np.array(x))))) for x in xs]
    for y in (EYE_Y + 0.04, 0.15, 0.04):                                              # 27-29 bridge
        ids.append(_nearest(gr, 0.0, y))
    near_tip = (np.abs(gr.X) < 0.05) & (np.abs(gr.Y - NOSE_TIP_Y) < 0.06)
    ids.append(int(np.flatnonzero(near_tip)[np.argmax(z[near_tip])]))                  # 30 tip (max z)
    for x, y in ((-0.11, -0.165), (-0.055, -0.185), (0.0, SUBNASALE_Y), (0.055, -0.185), (0.11, -0.165)):
        ids.append(_nearest(gr, x, y))                                                  # 31-35
    for side in (-1.0, 1.0):                                                            # 36-47 eyes
        cx = side * EYE_X
        xo, xi = cx + side * EYE_A * 0.97, cx - side * EYE_A * 0.97
        xa, xb = cx + side * EYE_A * 0.35, cx - side * EYE_A * 0.35
        def up(x: float, side: float = side) -> float:
            return float(_eye_lids(np.array(x), side)[0])

        def lo(x: float, side: float = side) -> float:
            return float(_eye_lids(np.array(x), side)[1])
        # iBUG order runs clockwise in the image starting at the image-left corner
        if side < 0:
            seq = [(xo, EYE_Y + 0.008), (xa, up(xa)), (xb, up(xb)), (xi, EYE_Y + 0.008), (xb, lo(xb)), (xa, lo(xa))]
        else:
            seq = [(xi, EYE_Y + 0.008), (xb, up(xb)), (xa, up(xa)), (xo, EYE_Y + 0.008), (xa, lo(xa)), (xb, lo(xb))]
        ids += [_nearest(gr, x, y) for x, y in seq]

    def lipu(x: float) -> float:
        return float(_lip_curves(np.array(x))[0])

    def lipl(x: float) -> float:
        return float(_lip_curves(np.array(x))[1])
    outer = [(-MOUTH_W * 0.98, MOUTH_Y)] + [(x, lipu(x)) for x in (-0.15, -0.055, 0.0, 0.055, 0.15)] \
        + [(MOUTH_W * 0.98, MOUTH_Y)] + [(x, lipl(x)) for x in (0.15, 0.055, 0.0, -0.055, -0.15)]
    ids += [_nearest(gr, x, y) for x, y in outer]                                        # 48-59
    above, on, below = gr.row == gr.seam + 1, gr.row == gr.seam, gr.row == gr.seam - 1
    inner = [(-0.2, on), (-0.08, above), (0.0, above), (0.08, above), (0.2, on), (0.08, below), (0.0, below),
             (-0.08, below)]
    ids += [_nearest(gr, x, MOUTH_Y, m) for x, m in inner]                               # 60-67
    if len(ids) != N_LANDMARKS:  # pragma: no cover - construction invariant
        raise RuntimeError(f"built {len(ids)} landmarks, expected {N_LANDMARKS}")
    return np.asarray(ids, dtype=np.int64)


# ------------------------------------------------------------------- builder
def procedural_face_model(resolution: str = "light", seed: int = 0) -> FaceModel:
    """Build the procedural morphable model (paper Eq. 3; notebook 01, section 1).

    resolution: "light" (4680 vertices / 9088 triangles, CPU training) or "dense"
    (35721 / 70688, about BFM's size). seed: changes only the random components.
    Returns a FaceModel with 80 identity, 64 expression and 80 albedo components,
    bases (3N, K) = Q diag(sigma) with Q^T Q = I and sigma strictly decreasing.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {list(RESOLUTIONS)}, got {resolution!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    rows, cols = RESOLUTIONS[resolution]
    gr = _Grid(rows, cols)
    z = _mean_depth(gr)
    reg = _regions(gr)
    lens, below = _mouth_parting(gr)
    shape = np.stack([gr.X, gr.Y - REST_PARTING * lens * below, z], 1)  # lips slightly parted at rest
    keypoints = _landmarks(gr, z)
    shape = shape - shape.mean(0, keepdims=True)
    mean_tex = _mean_albedo(gr, reg)
    tri = gr.triangles()
    sq = np.sqrt(gr.n)

    def build(named: list[np.ndarray], k: int, region: str, salt: int, tail_rms: float,
              decay: float) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([int(seed), salt, VERSION])
        rand = _random_fields(gr, k - len(named), rng, region)
        norms = np.array([np.linalg.norm(f) for f in named])
        stds = _decreasing(norms, k, tail_rms * sq, decay)
        base, _ = _orthonormal_basis(named + rand, stds)
        return base, stds / sq

    id_base, id_std = build(_id_fields(gr, z), N_ID, "face", 1, 0.006, 0.96)
    exp_base, exp_std = build(_exp_fields(gr), N_EXP, "expr", 2, 0.004, 0.95)
    tex_base, tex_std = build(_tex_fields(gr, reg, mean_tex), N_TEX, "colour", 3, 4.0, 0.96)

    skin = 1.0 - np.clip(np.maximum.reduce([reg[k] for k in ("eye", "brow", "lip", "seam", "nostril", "lash")]) * 2, 0, 1)
    skin = (skin > 0.5).astype(np.float32)
    tri_t = torch.from_numpy(tri.astype(np.int64))
    info = {
        "name": "procedural", "resolution": resolution, "seed": int(seed), "version": VERSION,
        "grid": [rows, cols], "seam_row": int(gr.seam),
        "component_names": {k: list(v) for k, v in COMPONENT_NAMES.items()},
        "std_rms": {"id": [float(s) for s in id_std], "exp": [float(s) for s in exp_std],
                    "tex": [float(s) for s in tex_std]},
    }
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return FaceModel(
        mean_shape=f32(shape), id_base=f32(id_base), exp_base=f32(exp_base), mean_tex=f32(mean_tex),
        tex_base=f32(tex_base), tri=tri_t, point_buf=build_point_buf(tri_t, gr.n),
        keypoints=torch.from_numpy(keypoints), skin_mask=torch.from_numpy(skin), info=info,
    )


def procedural_settings(resolution: str = "light", seed: int = 0) -> dict:
    """Everything that determines the procedural model's bytes (its cache key)."""
    return {"name": "procedural", "resolution": resolution, "seed": int(seed), "version": VERSION}


def procedural_cache_path(resolution: str = "light", seed: int = 0) -> Path:
    """``cache_dir()/face_models/procedural_<resolution>_<config_hash(settings)>.npz``."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {list(RESOLUTIONS)}, got {resolution!r}")
    settings = procedural_settings(resolution, seed)
    return Path(cache_dir()) / "face_models" / f"procedural_{resolution}_{config_hash(settings)}.npz"


def load_or_build_procedural(resolution: str = "light", seed: int = 0) -> FaceModel:
    """The procedural model, cached under ``cache_dir()/face_models/`` (notebook 01, section 1).

    The file is keyed by ``config_hash`` of (name, resolution, seed, VERSION), written atomically
    with :meth:`FaceModel.save` and a manifest recording those settings; a damaged or unreadable file,
    or one whose manifest records other settings or another file name, is rebuilt.
    """
    settings = procedural_settings(resolution, seed)
    return load_or_build(procedural_cache_path(resolution, seed), FaceModel.load,
                         lambda: procedural_face_model(resolution, seed), lambda m, p: m.save(p, settings),
                         "procedural face model", settings=settings)
