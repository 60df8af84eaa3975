"""Align a real photo to RNet's 224 crop from 5 facial points (docs/facts.md §8).

Taught in notebook 05, section "Running on real data". Deep3DFaceRecon aligns
every image the same way before RNet sees it, and so does this module:

1. 5 points in the image: left eye, right eye, nose tip, left mouth corner,
   right mouth corner ("left" = image-left), from CelebA's landmark file, from
   MTCNN (:func:`detect_faces`) or from 68 landmarks (:func:`extract_5p`).
2. A least-squares fit (Deep3DFaceRecon's ``POS``) of a scaled orthographic
   projection of 5 standard 3D points of the face model onto them gives a
   scale ``s_pos`` (pixels per model unit) and the image position ``t`` of the
   model origin. Only scale and translation are used: the crop is not rotated,
   so head roll stays in the image for RNet to predict.
3. The image is resized by ``s = 102 / s_pos`` (bicubic) and cropped 224 x 224
   so that the model origin lands on the camera's principal point. 102 px per
   unit is the camera's 1015 / 10 (focal / distance), so a face of the model's
   size in the crop is the size the renderer draws it.

Coordinates are occ3d_lib's pixel frame (x = column, y = row, pixel centres at
integers). At other crop sizes S everything scales by S / 224 and the origin
goes to the centre of the crop, ((S - 1) / 2, (S - 1) / 2) = (111.5, 111.5) at 224,
exactly where :func:`occ3d_lib.render.camera.project` puts the point (0, 0, 0): the
principal point c = S/2 of the image plane, whose pixel (r, c) has its centre at
u = c + 1/2 (Deep3DFaceRecon's renderer's convention, :mod:`occ3d_lib.render.camera`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from occ3d_lib.core.external import LM3D_HELP

# Deep3DFaceRecon's 5 standard 3D points (from similarity_Lm3D_all.mat via load_lm3d), model units
# (decimetres, y up): left eye, right eye, nose tip, left mouth corner, right mouth corner. These values
# are quoted from memory of that file's output and are approximate; pass the face model in use
# (template_from_face_model) or the real file (load_lm3d) for the exact template.
DEFAULT_TEMPLATE_5P = np.array([
    [-0.31148657, 0.29036078, 0.13377953],
    [0.30979887, 0.28972036, 0.13179526],
    [0.00325350, -0.04617932, 0.55244243],
    [-0.25216928, -0.38133916, 0.22405732],
    [0.24846620, -0.38128236, 0.22235769],
])
RESCALE_FACTOR = 102.0
CROP_SIZE = 224
# 0-based iBUG-68 ids used for the 5 points: nose tip 30, eye corners 36/39 and 42/45, mouth 48/54
_LM_IDX = np.array([30, 36, 39, 42, 45, 48, 54])


def extract_5p(lm68: np.ndarray) -> np.ndarray:
    """5 points (left eye, right eye, nose, left mouth, right mouth) from 68. (68, D) -> (5, D).

    Eye points are the mean of the two eye corners (Deep3DFaceRecon's ``extract_5p``).
    """
    lm = np.asarray(lm68, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] != 68:
        raise ValueError(f"landmarks must have shape (68, 2) or (68, 3), got {lm.shape}")
    i = _LM_IDX
    return np.stack([lm[i[1:3]].mean(0), lm[i[3:5]].mean(0), lm[i[0]], lm[i[5]], lm[i[6]]])


def template_from_face_model(model: Any) -> np.ndarray:
    """The 5-point 3D template of a :class:`FaceModel`'s mean face. -> (5, 3) in model units."""
    lm3d = model.mean_shape[model.keypoints].detach().cpu().double().numpy()
    return extract_5p(lm3d)


def load_lm3d(path: str | Path) -> np.ndarray:
    """Deep3DFaceRecon's ``similarity_Lm3D_all.mat`` (field ``lm``, (68, 3)) as the 5-point template (5, 3)."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {LM3D_HELP}")
    lm = np.asarray(loadmat(str(path)).get("lm", np.zeros(0)), dtype=np.float64)
    if lm.shape != (68, 3):
        raise ValueError(f"{path}: field 'lm' must have shape [68, 3], got {list(lm.shape)}")
    return extract_5p(lm)


def pos_fit(lm2d: np.ndarray, lm3d: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares scaled-orthographic fit (Deep3DFaceRecon ``POS``). (K, 2), (K, 3) -> t (2,), s.

    Solves x = r1 . P + tx, y = r2 . P + ty for r1, r2 (3 each) and t by least squares;
    s = (|r1| + |r2|) / 2 is the scale in pixels per model unit and t the image
    position of the model origin (same frame as ``lm2d``).
    """
    xp, x = np.asarray(lm2d, np.float64), np.asarray(lm3d, np.float64)
    if xp.ndim != 2 or xp.shape[1] != 2 or x.shape != (xp.shape[0], 3) or xp.shape[0] < 4:
        raise ValueError(f"need (K, 2) image points and (K, 3) model points with K >= 4, got {xp.shape}, {x.shape}")
    if not (np.all(np.isfinite(xp)) and np.all(np.isfinite(x))):
        raise ValueError("landmarks contain NaN or Inf")
    k = xp.shape[0]
    a = np.zeros((2 * k, 8))
    a[0::2, 0:3], a[0::2, 3] = x, 1
    a[1::2, 4:7], a[1::2, 7] = x, 1
    sol = np.linalg.lstsq(a, xp.reshape(-1), rcond=None)[0]
    s = (np.linalg.norm(sol[0:3]) + np.linalg.norm(sol[4:7])) / 2
    if not s > 0:
        raise ValueError("degenerate landmarks: the fitted scale is zero")
    return np.array([sol[3], sol[7]]), float(s)


@dataclass(frozen=True)
class AlignTransform:
    """The crop map ``out = scale * (p - origin) + centre`` (no rotation) and its inverse. Points are (x, y)."""

    scale: float
    origin: tuple[float, float]
    centre: tuple[float, float]
    size: int

    def points(self, pts: np.ndarray) -> np.ndarray:
        """Image points -> crop points. (..., 2) -> (..., 2)."""
        p = np.asarray(pts, np.float64)
        return self.scale * (p - np.asarray(self.origin)) + np.asarray(self.centre)

    def inverse_points(self, pts: np.ndarray) -> np.ndarray:
        """Crop points -> image points. (..., 2) -> (..., 2)."""
        p = np.asarray(pts, np.float64)
        return (p - np.asarray(self.centre)) / self.scale + np.asarray(self.origin)

    def as_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "origin": list(self.origin), "centre": list(self.centre), "size": self.size}


def crop_centre(size: int = CROP_SIZE) -> tuple[float, float]:
    """Where the model origin goes in an S x S crop: where :func:`occ3d_lib.render.camera.project` puts (0, 0, 0),
    (c - 1/2, S - 1/2 - c) with c = 112 S/224, i.e. the crop's centre ((S - 1)/2, (S - 1)/2)."""
    c = 112.0 * size / 224.0
    return c - 0.5, (size - 0.5) - c


def estimate_alignment(lm5: np.ndarray, template: np.ndarray | None = None, size: int = CROP_SIZE,
                       rescale_factor: float = RESCALE_FACTOR) -> AlignTransform:
    """The crop transform for 5 image points (5, 2) against a 3D template (5, 3) (docs/facts.md §8).

    scale = rescale_factor * (size / 224) / s_pos; the template origin goes to :func:`crop_centre`.
    Template y is up and image y is down, so the template's y is flipped before the fit.
    """
    lm5 = np.asarray(lm5, np.float64)
    if lm5.shape != (5, 2):
        raise ValueError(f"lm5 must have shape (5, 2) (left eye, right eye, nose, left/right mouth), got {lm5.shape}")
    tpl = np.asarray(DEFAULT_TEMPLATE_5P if template is None else template, np.float64)
    if tpl.shape != (5, 3):
        raise ValueError(f"template must have shape (5, 3), got {tpl.shape}")
    t, s_pos = pos_fit(lm5, tpl * np.array([1.0, -1.0, 1.0]))
    if not int(size) == size or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    scale = rescale_factor * (size / 224.0) / s_pos
    return AlignTransform(scale=float(scale), origin=(float(t[0]), float(t[1])), centre=crop_centre(int(size)),
                          size=int(size))


def to_uint8(a: np.ndarray) -> np.ndarray:
    """Pixel values of any depth -> uint8, keeping the full range: uint8 as is; 16-bit integers
    (0-65535) divided by 257; other integers in 0-255 as is, in 0-65535 as 16-bit; floats in
    [0, 1] times 255, floats with a maximum above 1 and up to 255 taken as 0-255 values.
    Anything else (negative, NaN, larger) is a ``ValueError`` naming the range."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise ValueError(f"image array of {a.dtype} holds values in [{lo}, {hi}]; expected 0-255 or 0-65535")
        if a.dtype.itemsize == 2 or hi > 255:  # 16-bit depth: map 0-65535 onto 0-255 exactly
            return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if a.size and not np.isfinite(a).all():
            raise ValueError("image array holds NaN or inf values")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < -1e-3 or hi > 255 + 1e-3:
            raise ValueError(f"float image holds values in [{lo:.4g}, {hi:.4g}]; expected [0, 1] or 0-255")
        scale = 1.0 if hi > 1 + 1e-3 else 255.0  # a float image in 0-255 is not clipped to white
        return (np.clip(a * scale, 0, 255) + 0.5).astype(np.uint8)
    raise TypeError(f"image array must hold integers or floats, got {a.dtype}")


#: What transparent pixels of a photo become: composited over white (as image viewers show them).
TRANSPARENT_BACKGROUND = (255, 255, 255)


def _transparency_warning(name: str | None, fraction: float) -> None:
    import warnings

    warnings.warn(f"{name or 'the image'} has transparent pixels ({100 * fraction:.0f} % not opaque): composited "
                  f"over white {TRANSPARENT_BACKGROUND}; save it without an alpha channel to choose another "
                  "background", UserWarning, stacklevel=3)


def as_pil_rgb(image: Any, name: str | None = None):
    """Any image (PIL of any mode, uint8/uint16/float array (H, W[, C]), tensor (3, H, W)) -> 8-bit PIL RGB.

    Grayscale, 16-bit and 32-bit (modes I;16, I, F), palette and CMYK images are converted
    without clipping their range (:func:`to_uint8`); an image with transparency (RGBA, LA, PA, a
    palette with a transparent colour, (H, W, 4) arrays) is composited over
    :data:`TRANSPARENT_BACKGROUND` with a warning naming it (``name``) when any pixel is not
    opaque. Anything else is a ``TypeError``/``ValueError``.
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode in ("I", "F") or image.mode.startswith("I;16"):
            image = np.asarray(image)
        elif image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            alpha = np.asarray(rgba.getchannel("A"))
            if alpha.min() == 255:
                return rgba.convert("RGB")
            _transparency_warning(name, float((alpha < 255).mean()))
            flat = Image.new("RGBA", rgba.size, (*TRANSPARENT_BACKGROUND, 255))
            flat.alpha_composite(rgba)
            return flat.convert("RGB")
        else:
            return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"image tensor must have shape (3, H, W) or (1, H, W) in [0, 1], got {tuple(t.shape)}")
        image = t.permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        a = to_uint8(image)
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        if a.ndim == 2:
            return Image.fromarray(a, "L").convert("RGB")
        if a.ndim == 3 and a.shape[2] == 4 and a[..., 3].min() < 255:
            _transparency_warning(name, float((a[..., 3] < 255).mean()))
            alpha = a[..., 3:].astype(np.float64) / 255.0
            flat = a[..., :3] * alpha + np.asarray(TRANSPARENT_BACKGROUND, np.float64) * (1 - alpha)
            a = np.concatenate([np.round(flat).astype(np.uint8), a[..., 3:]], axis=2)
        if a.ndim == 3 and a.shape[2] in (3, 4):
            return Image.fromarray(np.ascontiguousarray(a[..., :3]), "RGB")
        raise ValueError(f"image array must be (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    raise TypeError(f"unsupported image type {type(image).__name__}")


def warp_to_crop(image: Any, tf: AlignTransform) -> np.ndarray:
    """Resize (bicubic, antialiased) and crop ``image`` by ``tf``. -> (S, S, 3) uint8; outside is black."""
    from PIL import Image

    im = as_pil_rgb(image)
    w, h = im.size
    ox, oy = tf.origin
    cx, cy = tf.centre
    # PIL box coordinates: pixel i spans [i, i + 1); crop pixel X samples image x = (X - cx) / s + ox
    x0 = ox + 0.5 - (cx + 0.5) / tf.scale
    y0 = oy + 0.5 - (cy + 0.5) / tf.scale
    bw = tf.size / tf.scale
    pl, pt = max(0, int(np.ceil(-x0)) + 2), max(0, int(np.ceil(-y0)) + 2)
    pr, pb = max(0, int(np.ceil(x0 + bw - w)) + 2), max(0, int(np.ceil(y0 + bw - h)) + 2)
    if pl or pt or pr or pb:
        canvas = Image.new("RGB", (w + pl + pr, h + pt + pb))
        canvas.paste(im, (pl, pt))
        im, x0, y0 = canvas, x0 + pl, y0 + pt
    out = im.resize((tf.size, tf.size), Image.BICUBIC, box=(x0, y0, x0 + bw, y0 + bw))
    return np.asarray(out, dtype=np.uint8).copy()


def align_face(image: Any, lm5: np.ndarray, template: np.ndarray | None = None, size: int = CROP_SIZE,
               lm68: np.ndarray | None = None) -> tuple[np.ndarray, AlignTransform, np.ndarray | None]:
    """Align one photo to RNet's crop (docs/facts.md §8; notebook 05, real data).

    image: anything :func:`as_pil_rgb` takes; lm5 (5, 2) image points; template (5, 3) or the
    default; lm68 optional (68, 2) landmarks carried into the crop.
    Returns (crop (S, S, 3) uint8, transform, lm68 in crop pixels or None).
    """
    tf = estimate_alignment(lm5, template, size)
    crop = warp_to_crop(image, tf)
    return crop, tf, (tf.points(lm68) if lm68 is not None else None)


# ---------------------------------------------------------------------------------------------- MTCNN
@dataclass(frozen=True)
class Detection:
    """One MTCNN face: box (x1, y1, x2, y2), probability, 5 points (5, 2) in image pixels."""

    box: np.ndarray
    prob: float
    points: np.ndarray


@functools.lru_cache(maxsize=2)
def _mtcnn(device: str = "cpu"):
    try:
        from facenet_pytorch import MTCNN
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("MTCNN needs facenet-pytorch: pip install --no-deps facenet-pytorch==2.6.0 "
                          "(its weights ship inside the wheel)") from exc
    return MTCNN(keep_all=True, device=device)


def detect_faces(image: Any, min_prob: float = 0.9, device: str = "cpu") -> list[Detection]:
    """All MTCNN faces with probability >= ``min_prob``, most probable first ([] when none).

    facenet-pytorch's MTCNN (weights in the wheel). Its 5 points are in the same order
    as :func:`extract_5p` (left eye, right eye, nose, left/right mouth corner).
    """
    im = as_pil_rgb(image)
    with torch.no_grad():
        boxes, probs, points = _mtcnn(device).detect(im, landmarks=True)
    if boxes is None:
        return []
    # under numpy 2 MTCNN returns object arrays: cast (docs/facts.md §9)
    boxes = np.asarray(boxes).astype(np.float64).reshape(-1, 4)
    probs = np.asarray(probs).astype(np.float64).reshape(-1)
    points = np.asarray(points).astype(np.float64).reshape(-1, 5, 2)
    dets = [Detection(b, float(p), q) for b, p, q in zip(boxes, probs, points) if p >= min_prob]
    return sorted(dets, key=lambda d: -d.prob)


def detect_5p(image: Any, min_prob: float = 0.9) -> np.ndarray | None:
    """The 5 points (5, 2) of the most probable MTCNN face, or None when no face is found."""
    dets = detect_faces(image, min_prob)
    return dets[0].points if dets else None
