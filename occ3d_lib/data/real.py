"""Real image sets for the real track: CelebA, AFLW2000-3D, any folder of photos (docs/facts.md §11).

Taught in notebook 05, section "Running on real data" (and notebook 00,
section 4, data tracks: ``dataset = "celeba:<root>" | "aflw2000:<root>" |
"photos:<folder>"``). Every set yields faces aligned to RNet's crop exactly as
Deep3DFaceRecon aligns them (:mod:`occ3d_lib.data.align`, docs/facts.md §8):

- :class:`CelebA`: torchvision's folder layout, read by our own loader (no MD5
  check, so hand-made fixtures and partial copies work): ``<root>/celeba/``
  (or ``<root>`` itself) with ``img_align_celeba/``, ``list_eval_partition.txt``
  (0 train, 1 valid, 2 test), ``identity_CelebA.txt`` and
  ``list_landmarks_align_celeba.txt`` (5 points per image: left eye, right eye,
  nose, left / right mouth corner), which drive the alignment.
- :class:`AFLW2000`: ``imageNNNNN.jpg`` + ``imageNNNNN.mat`` pairs with
  ``pt3d_68`` (3, 68) landmarks and ``Pose_Para`` (1, 7) = pitch, yaw, roll
  (radians), tx, ty, tz, scale. The 68 ground-truth landmarks (x, y rows) are
  carried into the crop for the NME of the 3DDFA protocol.
- :class:`PhotoFolder`: any images, aligned from MTCNN's 5 points.

Bad inputs never crash deep inside torch: a corrupt or unreadable image, a
.mat without its fields, or a photo without a face is skipped, counted, and
reported by :meth:`AlignedImageSet.collect`.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from occ3d_lib.core.external import AFLW2000_FROM, CELEBA_FROM, require_file, user_path
from occ3d_lib.core.progress import progress_bar
from occ3d_lib.data import align
from occ3d_lib.data.landmarks import detect_landmarks68

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
CELEBA_SPLITS = {"train": 0, "valid": 1, "val": 1, "test": 2}
#: The pixel budget of one photo (width x height, read from the file's header before anything is decoded):
#: 40 megapixels, about 120 MB once decoded as RGB, more than most cameras' photos. A larger image is skipped
#: and counted as 'too large' (a small file can hold a huge image); downscale it, or pass ``max_pixels``.
MAX_PIXELS = 40_000_000


class SkipImage(Exception):
    """One image that cannot be used; counted, not fatal. Messages start with a category and a colon:
    'corrupt image', 'too large', 'no face', 'annotation' or 'missing file'."""


def _not_regular(path: Path) -> str:
    """What a path that exists but is not a regular file is, in words."""
    import stat

    mode = path.stat().st_mode
    for test, what in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return "not a file"


def load_rgb(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB (EXIF rotation applied; grayscale, CMYK, palette converted;
    transparent pixels composited over white, with a warning).

    The image's size is read from its header first: more than ``max_pixels`` pixels (:data:`MAX_PIXELS`)
    is a :class:`SkipImage` 'too large' without decoding it. A missing file is a ``FileNotFoundError``;
    a folder, a broken link, a FIFO or a device, an unreadable or truncated image are a
    :class:`SkipImage` (a skip that data sets count) naming the file.
    """
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ValueError(f"max_pixels must be a positive int, got {max_pixels!r}")
    if not path.is_file():  # checked before opening: opening a FIFO would wait for a writer forever
        if path.is_dir() or (path.is_symlink() and not path.exists()):
            raise SkipImage(f"missing file: {path} is {'a folder' if path.is_dir() else 'a broken link'}, not an image")
        if path.exists():
            raise SkipImage(f"missing file: {path} is {_not_regular(path)}, not a regular file")
        raise FileNotFoundError(f"image not found: {path}")
    too_large = (f"too large: {path} has more than Pillow's limit of {2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} "
                 "megapixels; downscale it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the budget below decides
            im = Image.open(path)  # reads the header only
        with im:
            w, h = im.size
            if w * h > max_pixels:
                raise SkipImage(f"too large: {path} is {w} x {h} = {w * h / 1e6:.1f} megapixels, over the budget of "
                                f"{max_pixels / 1e6:g} megapixels; downscale it, or raise max_pixels")
            im.load()
            im = ImageOps.exif_transpose(im)
            rgb = align.as_pil_rgb(im, name=str(path))
            arr = np.asarray(rgb, dtype=np.uint8).copy()
    except Image.DecompressionBombError:
        raise SkipImage(too_large) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError, MemoryError) as exc:
        raise SkipImage(f"corrupt image: {path} is unreadable ({type(exc).__name__}: {exc})") from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 8:
        raise SkipImage(f"corrupt image: {path} has shape {arr.shape}, too small")
    return arr


# ----------------------------------------------------------------------------------------- base class
@dataclass
class AlignedBatch:
    """Aligned faces of a set: images (B, 3, S, S) in [0, 1]; landmarks (B, 68, 2) in crop pixels (NaN if
    the set has none); identity (B,) (-1 unknown); yaw_deg (B,) (NaN unknown); names; skipped (name, reason)."""

    images: Tensor
    landmarks: Tensor
    identity: Tensor
    yaw_deg: Tensor
    names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def report(self) -> str:
        """One line: how many loaded, how many skipped and why."""
        n, k = len(self.names), len(self.skipped)
        if not k:
            return f"loaded {n} images, skipped 0"
        reasons: dict[str, int] = {}
        for _, why in self.skipped:
            key = why.split(":")[0]  # category: corrupt image / no face / annotation / missing file
            reasons[key] = reasons.get(key, 0) + 1
        return f"loaded {n} of {n + k} images, skipped {k}: " + ", ".join(f"{v} {r}" for r, v in sorted(reasons.items()))


class AlignedImageSet(ABC):
    """A list of items, each turned into one aligned face on demand; subclasses implement :meth:`load_item`."""

    name = "images"

    def __init__(self, size: int = align.CROP_SIZE, template: np.ndarray | None = None,
                 max_pixels: int = MAX_PIXELS) -> None:
        if not isinstance(size, int) or size < 16:
            raise ValueError(f"size must be an int >= 16, got {size!r}")
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
            raise ValueError(f"max_pixels must be a positive int, got {max_pixels!r}")
        self.size = size
        self.max_pixels = max_pixels  # the pixel budget of one image (load_rgb)
        self.template = None if template is None else np.asarray(template, np.float64)
        self.items: list[Any] = []

    def __len__(self) -> int:
        return len(self.items)

    def item_name(self, item: Any) -> str:
        return str(item)

    @abstractmethod
    def load_item(self, item: Any) -> dict[str, Any]:
        """Load and align one item: the dict that :meth:`__getitem__` returns (or raise SkipImage)."""

    def __getitem__(self, i: int) -> dict[str, Any]:
        """One aligned sample: image (3, S, S) float, landmarks (68, 2) or None, identity, yaw_deg, name.

        Raises :class:`SkipImage` for an unusable item.
        """
        return self.load_item(self.items[i])

    def _aligned(self, img: np.ndarray, lm5: np.ndarray, lm68: np.ndarray | None = None) -> tuple[Tensor, Tensor | None]:
        try:
            crop, _, lm = align.align_face(img, lm5, self.template, self.size, lm68=lm68)
        except ValueError as exc:
            raise SkipImage(f"annotation: cannot align ({exc})") from exc
        image = torch.from_numpy(crop).permute(2, 0, 1).float() / 255.0
        return image, (torch.from_numpy(lm).float() if lm is not None else None)

    def iter_samples(self, limit: int | None = None) -> Iterator[tuple[str, dict[str, Any] | None, str | None]]:
        """(name, sample or None, skip reason or None) for the first ``limit`` items."""
        n = len(self) if limit is None else min(limit, len(self))
        for i in range(n):
            name = self.item_name(self.items[i])
            try:
                sample = self[i]
            except SkipImage as exc:
                yield name, None, str(exc)
            except Exception as exc:  # noqa: BLE001 - one bad file never aborts the whole set
                yield name, None, f"corrupt image: {name} failed ({type(exc).__name__}: {exc})"
            else:
                yield name, sample, None

    def collect(self, limit: int | None = None, progress: bool = False) -> AlignedBatch:
        """Load and align up to ``limit`` items into one batch; unusable items are skipped and listed."""
        imgs, lms, ids, yaws, names, skipped = [], [], [], [], [], []
        it = self.iter_samples(limit)
        total = len(self) if limit is None else min(limit, len(self))
        for name, s, why in progress_bar(it, total=total, desc=self.name, disable=not progress):
            if s is None:
                skipped.append((name, why or "skipped"))
                continue
            imgs.append(s["image"])
            lm = s.get("landmarks")
            lms.append(lm if lm is not None else torch.full((68, 2), float("nan")))
            ids.append(int(s.get("identity", -1)))
            yaws.append(float(s.get("yaw_deg", float("nan"))))
            names.append(name)
        size = self.size
        return AlignedBatch(
            images=torch.stack(imgs) if imgs else torch.zeros(0, 3, size, size),
            landmarks=torch.stack(lms) if lms else torch.zeros(0, 68, 2),
            identity=torch.tensor(ids, dtype=torch.long), yaw_deg=torch.tensor(yaws, dtype=torch.float32),
            names=names, skipped=skipped)


# --------------------------------------------------------------------------------------------- CelebA
def _read_table(path: Path, n_values: int, skip_header: int = 0) -> dict[str, list[str]]:
    """'name v1 v2 ...' lines -> {name: [v1, ...]}; a malformed line is a ValueError naming file and line."""
    out: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as fh:
        for ln, line in enumerate(fh, 1):
            if ln <= skip_header or not line.strip():
                continue
            parts = line.split()
            if len(parts) != n_values + 1:
                raise ValueError(f"{path}, line {ln}: expected a file name and {n_values} value(s), got {line.strip()!r}")
            out[parts[0]] = parts[1:]
    return out


def celeba_folder(root: str | Path) -> Path:
    """The folder holding img_align_celeba/ and the text files: ``root/celeba`` (torchvision) or ``root``."""
    root = Path(root)
    if (root / "celeba" / "img_align_celeba").is_dir() or (root / "celeba" / "list_eval_partition.txt").is_file():
        return root / "celeba"
    return root


CELEBA_FILES = ("img_align_celeba", "list_eval_partition.txt", "identity_CelebA.txt", "list_landmarks_align_celeba.txt")


def check_celeba(root: str | Path) -> Path:
    """Check that a CelebA root has every needed file; returns the folder. Missing -> FileNotFoundError."""
    base = celeba_folder(root)
    for f in CELEBA_FILES:
        require_file(base / f, f"CelebA {f}", CELEBA_FROM, f"{Path(root) / 'celeba' / f} (torchvision's layout)")
    return base


class CelebA(AlignedImageSet):
    """CelebA aligned-and-cropped images, split by ``list_eval_partition.txt``, aligned from their 5 landmarks.

    Samples carry ``identity`` from ``identity_CelebA.txt``; no 68-point ground truth
    (landmarks None). Notebook 05, "Running on real data".
    """

    name = "celeba"

    def __init__(self, root: str | Path, split: str = "test", size: int = align.CROP_SIZE,
                 template: np.ndarray | None = None, max_pixels: int = MAX_PIXELS) -> None:
        super().__init__(size, template, max_pixels)
        if split not in CELEBA_SPLITS and split != "all":
            raise ValueError(f"split must be one of {sorted(CELEBA_SPLITS)} or 'all', got {split!r}")
        self.root = check_celeba(root)
        part = _read_table(self.root / "list_eval_partition.txt", 1)
        ident = _read_table(self.root / "identity_CelebA.txt", 1)
        lmk = _read_table(self.root / "list_landmarks_align_celeba.txt", 10, skip_header=2)
        self.identity = {k: int(v[0]) for k, v in ident.items()}
        self.lm5 = {k: np.array(v, dtype=np.float64).reshape(5, 2) for k, v in lmk.items()}
        want = None if split == "all" else CELEBA_SPLITS[split]
        self.items = sorted(k for k, v in part.items() if want is None or int(v[0]) == want)
        self.split = split

    def load_item(self, item: str) -> dict[str, Any]:
        if item not in self.lm5:
            raise SkipImage(f"annotation: {item} has no entry in list_landmarks_align_celeba.txt")
        p = self.root / "img_align_celeba" / item
        if not p.is_file():
            raise SkipImage(f"missing file: {p}")
        image, _ = self._aligned(load_rgb(p, self.max_pixels), self.lm5[item])
        return {"image": image, "landmarks": None, "identity": self.identity.get(item, -1),
                "yaw_deg": float("nan"), "name": item}


# ---------------------------------------------------------------------------------------- AFLW2000-3D
def check_aflw2000(root: str | Path) -> Path:
    """The folder with imageNNNNN.jpg / .mat pairs (``root`` or ``root/AFLW2000``); missing -> FileNotFoundError."""
    root = Path(root)
    require_file(root, "AFLW2000-3D folder", AFLW2000_FROM, f"{root} (unzipped: imageNNNNN.jpg + imageNNNNN.mat)")
    for base in (root, root / "AFLW2000"):
        if base.is_dir() and any(base.glob("image*.mat")):
            return base
    raise FileNotFoundError(f"no AFLW2000-3D files (imageNNNNN.jpg + imageNNNNN.mat) in {root}. Download it from "
                            f"{AFLW2000_FROM} and unzip it there. See data/README.md.")


def read_aflw2000_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """An AFLW2000-3D annotation: pt3d_68 as (68, 3) (x, y, z) and Pose_Para (7,) (pitch, yaw, roll, tx, ty, tz, s)."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        m = loadmat(str(path))
    except Exception as exc:
        raise SkipImage(f"annotation: cannot read {path} ({type(exc).__name__}: {exc})") from exc
    if "pt3d_68" not in m or "Pose_Para" not in m:
        raise SkipImage(f"annotation: {path} lacks 'pt3d_68' [3, 68] or 'Pose_Para' [1, 7]")
    pts, pose = np.asarray(m["pt3d_68"], np.float64), np.asarray(m["Pose_Para"], np.float64).reshape(-1)
    if pts.shape != (3, 68) or pose.size != 7 or not np.all(np.isfinite(pts)):
        raise SkipImage(f"annotation: {path}: pt3d_68 must be [3, 68] and Pose_Para [1, 7], got "
                        f"{list(pts.shape)} and {pose.size} values")
    return pts.T.copy(), pose


class AFLW2000(AlignedImageSet):
    """AFLW2000-3D: images aligned from the 5 points of their 68 ground-truth landmarks (docs/facts.md §11).

    Samples carry ``landmarks`` (68, 2) in crop pixels, ``yaw_deg`` from Pose_Para and
    ``box_size`` sqrt(w h) of the landmark box in crop pixels (NME normaliser).
    """

    name = "aflw2000"

    def __init__(self, root: str | Path, size: int = align.CROP_SIZE, template: np.ndarray | None = None,
                 max_pixels: int = MAX_PIXELS) -> None:
        super().__init__(size, template, max_pixels)
        self.root = check_aflw2000(root)
        self.items = sorted(p.stem for p in self.root.glob("image*.mat"))

    def load_item(self, item: str) -> dict[str, Any]:
        pts, pose = read_aflw2000_mat(self.root / f"{item}.mat")
        img_path = next((self.root / f"{item}{e}" for e in (".jpg", ".png", ".jpeg")
                         if (self.root / f"{item}{e}").is_file()), None)
        if img_path is None:
            raise SkipImage(f"missing file: no image for {item}.mat in {self.root}")
        lm68 = pts[:, :2]
        image, lm = self._aligned(load_rgb(img_path, self.max_pixels), align.extract_5p(lm68), lm68)
        assert lm is not None
        wh = (lm.max(0).values - lm.min(0).values).clamp_min(1e-6)
        return {"image": image, "landmarks": lm, "identity": -1, "yaw_deg": math.degrees(pose[1]),
                "box_size": float(torch.sqrt(wh[0] * wh[1])), "name": item}


# ----------------------------------------------------------------------------------------- photo folder
class PhotoFolder(AlignedImageSet):
    """Any folder of photos, each aligned from MTCNN's 5 points (the most probable face); no face -> skipped."""

    name = "photos"

    def __init__(self, folder: str | Path, size: int = align.CROP_SIZE, template: np.ndarray | None = None,
                 min_prob: float = 0.9, detector: Callable[[np.ndarray], np.ndarray | None] | None = None,
                 max_pixels: int = MAX_PIXELS) -> None:
        super().__init__(size, template, max_pixels)
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"photo folder not found: {folder}. Put your photos (jpg/png) in a folder and "
                                    "pass dataset = \"photos:<folder>\". See data/README.md.")
        self.root = folder
        # folders and broken links with an image name are kept, so they are skipped and counted
        self.items = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        self.min_prob = min_prob
        self.detector = detector

    def load_item(self, item: str) -> dict[str, Any]:
        img = load_rgb(self.root / item, self.max_pixels)
        lm5 = self.detector(img) if self.detector is not None else align.detect_5p(img, self.min_prob)
        if lm5 is None:
            raise SkipImage(f"no face: MTCNN found no face in {item}")
        image, _ = self._aligned(img, np.asarray(lm5, np.float64))
        return {"image": image, "landmarks": None, "identity": -1, "yaw_deg": float("nan"), "name": item}


# ------------------------------------------------------------------------------------------- specs
DATASET_KINDS = ("celeba", "aflw2000", "photos")


def parse_dataset_spec(spec: str) -> tuple[str, Path | None]:
    """'synthetic' -> ('synthetic', None); 'celeba:<root>' etc. -> (kind, Path). Bad form -> ValueError."""
    if spec == "synthetic":
        return "synthetic", None
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in DATASET_KINDS or not rest:
        raise ValueError(f"dataset must be 'synthetic' or one of 'celeba:<root>', 'aflw2000:<root>', "
                         f"'photos:<folder>'; got {spec!r}")
    return kind, user_path(rest)


def check_dataset_spec(spec: str) -> None:
    """The files a dataset spec needs exist and their index files parse (no images are read)."""
    kind, root = parse_dataset_spec(spec)
    if kind == "celeba":
        base = check_celeba(root)  # type: ignore[arg-type]
        _read_table(base / "list_eval_partition.txt", 1)
        _read_table(base / "list_landmarks_align_celeba.txt", 10, skip_header=2)
    elif kind == "aflw2000":
        check_aflw2000(root)  # type: ignore[arg-type]
    elif kind == "photos" and not root.is_dir():  # type: ignore[union-attr]
        raise FileNotFoundError(f"photo folder not found: {root}. Put your photos (jpg/png) in a folder and "
                                "pass dataset = \"photos:<folder>\". See data/README.md.")


def open_dataset(spec: str, size: int = align.CROP_SIZE, template: np.ndarray | None = None,
                 split: str = "test", max_pixels: int = MAX_PIXELS) -> AlignedImageSet | str:
    """The aligned image set of a dataset spec, or the string 'synthetic'. ``max_pixels``: the pixel
    budget of one image (:data:`MAX_PIXELS`; larger ones are skipped as 'too large')."""
    kind, root = parse_dataset_spec(spec)
    if kind == "synthetic":
        return "synthetic"
    if kind == "celeba":
        return CelebA(root, split=split, size=size, template=template, max_pixels=max_pixels)  # type: ignore[arg-type]
    if kind == "aflw2000":
        return AFLW2000(root, size=size, template=template, max_pixels=max_pixels)  # type: ignore[arg-type]
    return PhotoFolder(root, size=size, template=template, max_pixels=max_pixels)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- demo
def sample_photo() -> np.ndarray:
    """A real face photo that ships with an installed package: scikit-image's astronaut (512, 512, 3) uint8
    (NASA portrait of Eileen Collins, public domain)."""
    try:
        from skimage import data as skdata
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the sample photo comes from scikit-image: pip install scikit-image") from exc
    return np.asarray(skdata.astronaut(), dtype=np.uint8)


def photo_demo(image: Any = None, size: int = align.CROP_SIZE, template: np.ndarray | None = None,
               with_dlib: bool = True) -> dict[str, Any]:
    """The real-photo path of notebook 05 on one photo (default: :func:`sample_photo`).

    MTCNN detection -> 5-point alignment to the crop (docs/facts.md §8) -> dlib's 68
    landmarks (in the photo and carried into the crop). Returns a dict: ``photo``
    (H, W, 3) uint8, ``box`` (4,), ``prob``, ``points5`` (5, 2), ``crop`` (S, S, 3) uint8,
    ``transform`` (:class:`align.AlignTransform`), ``landmarks68`` (68, 2) in the photo or
    None, ``landmarks68_crop`` (68, 2) or None. No face -> ``ValueError``.
    """
    photo = sample_photo() if image is None else np.asarray(align.as_pil_rgb(image), dtype=np.uint8)
    dets = align.detect_faces(photo)
    if not dets:
        raise ValueError("MTCNN found no face in the photo")
    det = dets[0]
    crop, tf, _ = align.align_face(photo, det.points, template, size)
    lm68 = None
    if with_dlib:
        lm68 = detect_landmarks68(photo)
    return {"photo": photo, "box": det.box, "prob": det.prob, "points5": det.points, "crop": crop,
            "transform": tf, "landmarks68": lm68, "landmarks68_crop": tf.points(lm68) if lm68 is not None else None}
