"""The real Basel Face Model: read ``BFM_model_front.mat`` and build it from BFM 2009 (paper Eq. 3).

Taught in notebook 01, section 1 (the real track) and notebook 00, section 4
(data tracks). The real-track face model is Deep3DFaceRecon's
``BFM_model_front.mat`` (docs/facts.md §2): a front-face crop of the Basel Face
Model 2009 (35709 vertices, 70789 triangles) with 80 identity, 64 expression
(Guo et al.) and 80 albedo components, pre-multiplied by their standard
deviations and scaled from micrometres to decimetres (1 unit = 100 mm).

Nobody may redistribute BFM 2009, so the file cannot ship here. A user either
has ``BFM_model_front.mat`` already, or builds it with

    python -m occ3d_lib.face.bfm build-bfm --bfm 01_MorphableModel.mat \\
        --exp Exp_Pca.bin --index-dir <Deep3DFaceRecon BFM folder> --out data/BFM/BFM_model_front.mat

which follows Deep3DFaceRecon's ``transferBFM09`` step for step (see
:func:`build_bfm_front`). All index fields in the file are 1-based; the loader
makes them 0-based and re-centres the mean shape (centroid subtracted), as
Deep3DFaceRecon's ``ParametricFaceModel(recenter=True)`` does.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from occ3d_lib.core.artifacts import atomic_path
from occ3d_lib.core.external import BFM_HELP, EXP_PCA_HELP, user_path
from occ3d_lib.core.external import BFM_INDEX_FILES as INDEX_FILES
from occ3d_lib.face.facemodel import N_LANDMARKS, FaceModel

N_ID, N_EXP, N_TEX = 80, 64, 80
BFM09_N_VERTICES = 53490  # 01_MorphableModel.mat
EXP_N_VERTICES = 53215    # Exp_Pca.bin (Guo et al.), BFM_exp_idx.mat 'trimIndex'
FRONT_N_VERTICES = 35709  # BFM_model_front.mat
FRONT_N_TRIANGLES = 70789

DEFAULT_BFM_PATH = Path("data/BFM/BFM_model_front.mat")



def _missing(path: Path, what: str, how: str) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found at {path}. {how}")


def _loadmat(path: Path, what: str) -> dict[str, Any]:
    """scipy.io.loadmat with a clear error for a missing or unreadable file."""
    from scipy.io import loadmat

    if not path.is_file():
        raise _missing(path, what, BFM_HELP)
    try:
        return loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a corrupt/v7.3 file
        raise ValueError(f"{path}: cannot read {what} as a MATLAB .mat file ({type(exc).__name__}: {exc}). "
                         "It must be a MATLAB v5/v7 file as written by scipy.io.savemat or MATLAB's save -v7.") from exc


def _field(mat: dict[str, Any], name: str, path: Path, shape: tuple[int | None, ...]) -> np.ndarray:
    """``mat[name]`` as a numeric array of ``shape`` (None = any size); clear error otherwise."""
    want = "[" + ", ".join("any" if s is None else str(s) for s in shape) + "]"
    if name not in mat:
        present = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: missing field {name!r} (expected shape {want}); fields present: {present}")
    a = np.asarray(mat[name])
    if a.dtype == object or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{path}: field {name!r} must be numeric, got dtype {a.dtype}")
    if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
        raise ValueError(f"{path}: field {name!r} has shape {list(a.shape)}, expected {want}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{path}: field {name!r} contains NaN or Inf")
    return a


def _index(a: np.ndarray, name: str, path: Path, upper: int) -> np.ndarray:
    """1-based index array (any numeric dtype) -> 0-based int64, checked to lie in [0, upper)."""
    r = np.rint(a)
    if not np.array_equal(r, a):
        raise ValueError(f"{path}: field {name!r} must hold whole numbers (1-based indices)")
    r = r.astype(np.int64) - 1
    if r.size and (r.min() < 0 or r.max() >= upper):
        raise ValueError(f"{path}: field {name!r} holds 1-based indices in [{r.min() + 1}, {r.max() + 1}], "
                         f"expected within [1, {upper}]")
    return r


def read_bfm_front_mat(path: str | Path) -> dict[str, np.ndarray]:
    """Read and check every field of ``BFM_model_front.mat`` (docs/facts.md §2); indices made 0-based.

    Returns arrays: meanshape (N, 3) (not re-centred), idBase (3N, 80), exBase (3N, 64),
    meantex (N, 3), texBase (3N, 80), tri (F, 3), point_buf (N, 8) (padding = F),
    keypoints (68,), skinmask (N,), and when present tri_mask2 (F2, 3) and frontmask2_idx (M,).
    Shapes are checked against each other (N from meanshape, F from tri), so tiny
    test files in the same layout load too; the real file has N = 35709, F = 70789.
    """
    path = user_path(path)
    mat = _loadmat(path, "BFM_model_front.mat")
    ms = _field(mat, "meanshape", path, (None, None))
    if ms.size % 3 or 1 not in ms.shape:
        raise ValueError(f"{path}: field 'meanshape' has shape {list(ms.shape)}, expected [1, 3N] (x0 y0 z0 x1 ...)")
    n = ms.size // 3
    tri = _field(mat, "tri", path, (None, 3))
    f = tri.shape[0]
    out: dict[str, np.ndarray] = {"meanshape": ms.reshape(n, 3).astype(np.float64)}
    for name, k in (("idBase", N_ID), ("exBase", N_EXP), ("texBase", N_TEX)):
        out[name] = _field(mat, name, path, (3 * n, k)).astype(np.float32)
    mt = _field(mat, "meantex", path, (None, None))
    if mt.size != 3 * n or 1 not in mt.shape:
        raise ValueError(f"{path}: field 'meantex' has shape {list(mt.shape)}, expected [1, {3 * n}]")
    out["meantex"] = mt.reshape(n, 3).astype(np.float32)
    out["tri"] = _index(tri, "tri", path, n)
    out["point_buf"] = _index(_field(mat, "point_buf", path, (n, 8)), "point_buf", path, f + 1)
    kp = _field(mat, "keypoints", path, (None, None))
    if kp.size != N_LANDMARKS:
        raise ValueError(f"{path}: field 'keypoints' has shape {list(kp.shape)}, expected [1, {N_LANDMARKS}]")
    out["keypoints"] = _index(kp.reshape(-1), "keypoints", path, n)
    sk = _field(mat, "skinmask", path, (None, None))
    if sk.size != n:
        raise ValueError(f"{path}: field 'skinmask' has shape {list(sk.shape)}, expected [1, {n}]")
    out["skinmask"] = (sk.reshape(-1) != 0).astype(np.float32)
    if "tri_mask2" in mat:
        out["tri_mask2"] = _index(_field(mat, "tri_mask2", path, (None, 3)), "tri_mask2", path, n)
    if "frontmask2_idx" in mat:
        out["frontmask2_idx"] = _index(_field(mat, "frontmask2_idx", path, (None, None)).reshape(-1),
                                       "frontmask2_idx", path, n)
    return out


def check_bfm_front_file(path: str | Path) -> None:
    """Quick check of ``BFM_model_front.mat`` without loading it (``scipy.io.whosmat``): the file exists,
    is a .mat file, and has every field with consistent shapes. Used by the notebooks' first cell."""
    from scipy.io import whosmat

    path = Path(path)
    if not path.is_file():
        raise _missing(path, "BFM_model_front.mat", BFM_HELP)
    try:
        info = {name: tuple(shape) for name, shape, _ in whosmat(str(path))}
    except Exception as exc:
        raise ValueError(f"{path}: cannot read as a MATLAB .mat file ({type(exc).__name__}: {exc})") from exc
    need = ("meanshape", "idBase", "exBase", "meantex", "texBase", "tri", "point_buf", "keypoints", "skinmask")
    missing = [k for k in need if k not in info]
    if missing:
        raise ValueError(f"{path}: missing field(s) {missing}; BFM_model_front.mat needs {list(need)}")
    n3 = int(np.prod(info["meanshape"]))
    want = {"idBase": (n3, N_ID), "exBase": (n3, N_EXP), "texBase": (n3, N_TEX), "point_buf": (n3 // 3, 8)}
    for k, shp in want.items():
        if info[k] != shp:
            raise ValueError(f"{path}: field {k!r} has shape {list(info[k])}, expected {list(shp)}")
    if int(np.prod(info["keypoints"])) != N_LANDMARKS or len(info["tri"]) != 2 or info["tri"][1] != 3:
        raise ValueError(f"{path}: 'keypoints' must be [1, 68] and 'tri' [F, 3], got {list(info['keypoints'])} "
                         f"and {list(info['tri'])}")


def load_bfm_front(path: str | Path = DEFAULT_BFM_PATH, recenter: bool = True) -> FaceModel:
    """Load Deep3DFaceRecon's ``BFM_model_front.mat`` as a :class:`FaceModel` (paper Eq. 3; notebook 01, sec. 1).

    Indices become 0-based; the mean shape is re-centred (its centroid subtracted) when
    ``recenter`` (Deep3DFaceRecon's default). A missing file is a ``FileNotFoundError``
    saying what to download, from where and where to put it; a missing or mis-shaped
    field is a ``ValueError`` naming the field and the expected shape.
    """
    path = user_path(path)
    a = read_bfm_front_mat(path)
    ms = a["meanshape"]
    if recenter:
        ms = ms - ms.mean(axis=0, keepdims=True)
    t = torch.from_numpy
    return FaceModel(
        mean_shape=t(ms.astype(np.float32)), id_base=t(a["idBase"]), exp_base=t(a["exBase"]),
        mean_tex=t(a["meantex"]), tex_base=t(a["texBase"]), tri=t(a["tri"]), point_buf=t(a["point_buf"]),
        keypoints=t(a["keypoints"]), skin_mask=t(a["skinmask"]),
        info={"name": "BFM_model_front", "path": str(path), "recentered": bool(recenter),
              "n_front_mask": int(a["frontmask2_idx"].size) if "frontmask2_idx" in a else 0})


def read_exp_pca_bin(path: str | Path, n_vertices: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read Guo et al.'s ``Exp_Pca.bin`` (docs/facts.md §2). -> (mean (3V,), PCs (3V, dim)), float32.

    Layout (little-endian): int32 dim (79 in the real file); float32 mean, 3V values;
    float32 PCs, dim * 3V values, stored component after component (so reshaped
    [dim, 3V] and transposed). V = 53215 in the real file; when ``n_vertices`` is None it
    is inferred from the file size. A truncated file is a ``ValueError`` with the sizes.
    """
    path = Path(path)
    if not path.is_file():
        raise _missing(path, "Exp_Pca.bin", EXP_PCA_HELP)
    raw = path.read_bytes()
    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for Exp_Pca.bin (needs an int32 header)")
    dim = int(np.frombuffer(raw[:4], dtype="<i4")[0])
    if dim <= 0 or dim > 10000:
        raise ValueError(f"{path}: header says {dim} expression components; not an Exp_Pca.bin file")
    per_vertex = 4 * 3 * (1 + dim)  # bytes per vertex: mean + dim PCs, 3 float32 each
    if n_vertices is None:
        if (len(raw) - 4) % per_vertex or len(raw) == 4:
            raise ValueError(f"{path}: {len(raw)} bytes is not 4 + 12*(1+{dim})*V for any whole V: the file is "
                             f"truncated or not Exp_Pca.bin (the real file, V = {EXP_N_VERTICES}, has "
                             f"{4 + per_vertex * EXP_N_VERTICES} bytes)")
        n_vertices = (len(raw) - 4) // per_vertex
    need = 4 + per_vertex * n_vertices
    if len(raw) < need:
        raise ValueError(f"{path}: truncated: {len(raw)} bytes, expected {need} "
                         f"(int32 dim={dim}, then float32 mean 3*{n_vertices} and PCs {dim}*3*{n_vertices})")
    body = np.frombuffer(raw[4:need], dtype="<f4")
    mean = body[:3 * n_vertices].copy()
    pcs = body[3 * n_vertices:].reshape(dim, 3 * n_vertices).T.copy()
    return mean, pcs


def _vector(mat: dict[str, Any], name: str, path: Path) -> np.ndarray:
    """A [K, 1] (or [1, K]) field as a flat vector."""
    a = _field(mat, name, path, (None, None))
    if 1 not in a.shape:
        raise ValueError(f"{path}: field {name!r} has shape {list(a.shape)}, expected [K, 1]")
    return a.reshape(-1)


def _col(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).reshape(-1)


def build_bfm_front(bfm2009_mat: str | Path, exp_pca_bin: str | Path, index_dir: str | Path,
                    out_path: str | Path = DEFAULT_BFM_PATH) -> Path:
    """Build ``BFM_model_front.mat`` from BFM 2009 (Deep3DFaceRecon's ``transferBFM09``; notebook 01, sec. 1).

    Steps (docs/facts.md §2): idBase = shapePC * shapeEV / 1e5, first 80 columns;
    exBase = expPC * std_exp / 1e5, first 64; texBase = texPC * texEV, first 80;
    meanshape = shapeMU / 1e5; meantex = texMU. Vertices are selected per vertex (all
    three coordinates): the expression basis by ``BFM_front_idx.mat['idx']`` (1-based
    into the 53215 expression vertices), shape and albedo by
    ``BFM_exp_idx.mat['trimIndex'][idx]`` (1-based into the 53490 BFM 2009 vertices).
    tri, point_buf, tri_mask2, keypoints, frontmask2_idx and skinmask are copied from
    ``facemodel_info.mat`` unchanged (still 1-based). Written atomically; returns the path.
    """
    from scipy.io import savemat

    bfm_path, index_dir, out_path = Path(bfm2009_mat), Path(index_dir), Path(out_path)
    src = _loadmat(bfm_path, "BFM 2009 01_MorphableModel.mat")
    shape_pc = _field(src, "shapePC", bfm_path, (None, None))
    nv3 = shape_pc.shape[0]
    if nv3 % 3:
        raise ValueError(f"{bfm_path}: field 'shapePC' has {nv3} rows, expected 3 * n_vertices (160470)")
    k_shape = shape_pc.shape[1]
    shape_ev = _col(_field(src, "shapeEV", bfm_path, (k_shape, 1)))
    shape_mu = _col(_field(src, "shapeMU", bfm_path, (nv3, 1)))
    tex_pc = _field(src, "texPC", bfm_path, (nv3, None))
    tex_ev = _col(_field(src, "texEV", bfm_path, (tex_pc.shape[1], 1)))
    tex_mu = _col(_field(src, "texMU", bfm_path, (nv3, 1)))
    if k_shape < N_ID or tex_pc.shape[1] < N_TEX:
        raise ValueError(f"{bfm_path}: needs at least {N_ID} shape and {N_TEX} texture components, "
                         f"got {k_shape} and {tex_pc.shape[1]}")

    exp_mean, exp_pc = read_exp_pca_bin(exp_pca_bin)
    std_path = index_dir / "std_exp.txt"
    if not std_path.is_file():
        raise _missing(std_path, "std_exp.txt", BFM_HELP)
    exp_ev = np.loadtxt(std_path).reshape(-1)
    if exp_ev.size != exp_pc.shape[1]:
        raise ValueError(f"{std_path}: {exp_ev.size} values, expected one per expression component "
                         f"({exp_pc.shape[1]} in {exp_pca_bin})")
    if exp_pc.shape[1] < N_EXP:
        raise ValueError(f"{exp_pca_bin}: {exp_pc.shape[1]} expression components, need at least {N_EXP}")

    id_base = (shape_pc * shape_ev[None, :] / 1e5)[:, :N_ID]
    ex_base = (exp_pc * exp_ev[None, :] / 1e5)[:, :N_EXP]
    tex_base = (tex_pc * tex_ev[None, :])[:, :N_TEX]

    p_front = index_dir / "BFM_front_idx.mat"
    p_exp = index_dir / "BFM_exp_idx.mat"
    n_exp_v = exp_pc.shape[0] // 3
    idx_front = _index(_vector(_loadmat(p_front, "BFM_front_idx.mat"), "idx", p_front), "idx", p_front, n_exp_v)
    trim = _index(_vector(_loadmat(p_exp, "BFM_exp_idx.mat"), "trimIndex", p_exp), "trimIndex", p_exp, nv3 // 3)
    if trim.size != n_exp_v:
        raise ValueError(f"{p_exp}: 'trimIndex' has {trim.size} entries, expected one per expression-basis "
                         f"vertex ({n_exp_v} in {exp_pca_bin})")
    idx_shape = trim[idx_front]
    n = idx_front.size

    def take(b: np.ndarray, idx: np.ndarray) -> np.ndarray:  # per-vertex rows (x, y, z) of a (3V, K) array
        k = b.shape[1]
        return b.reshape(-1, 3, k)[idx].reshape(-1, k)

    p_info = index_dir / "facemodel_info.mat"
    info = _loadmat(p_info, "facemodel_info.mat")
    tri = _field(info, "tri", p_info, (None, 3))
    out = {
        "meanshape": (shape_mu.reshape(-1, 3) / 1e5)[idx_shape].reshape(1, -1).astype(np.float32),
        "meantex": tex_mu.reshape(-1, 3)[idx_shape].reshape(1, -1).astype(np.float32),
        "idBase": take(id_base, idx_shape).astype(np.float32),
        "exBase": take(ex_base, idx_front).astype(np.float32),
        "texBase": take(tex_base, idx_shape).astype(np.float32),
        "tri": tri,
        "point_buf": _field(info, "point_buf", p_info, (n, 8)),
        "tri_mask2": _field(info, "tri_mask2", p_info, (None, 3)),
        "keypoints": _field(info, "keypoints", p_info, (None, None)),
        "frontmask2_idx": _field(info, "frontmask2_idx", p_info, (None, None)),
        "skinmask": _field(info, "skinmask", p_info, (None, None)),
    }
    with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
        savemat(fh, out)
    read_bfm_front_mat(out_path)  # the written file must load (checks every field)
    return out_path


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m occ3d_lib.face.bfm build-bfm --bfm ... --exp ... --index-dir ... --out ...``."""
    ap = argparse.ArgumentParser(prog="python -m occ3d_lib.face.bfm",
                                 description="Real-track face model tools (see data/README.md).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-bfm", help="build BFM_model_front.mat from BFM 2009 + Exp_Pca.bin + index files")
    b.add_argument("--bfm", required=True, help="BFM 2009 01_MorphableModel.mat")
    b.add_argument("--exp", required=True, help="Exp_Pca.bin (Guo et al. CoarseData)")
    b.add_argument("--index-dir", required=True,
                   help=f"folder with {', '.join(INDEX_FILES)} (Deep3DFaceRecon_pytorch/BFM)")
    b.add_argument("--out", default=str(DEFAULT_BFM_PATH), help="output path (default: %(default)s)")
    c = sub.add_parser("check-bfm", help="load BFM_model_front.mat and print its sizes")
    c.add_argument("path", nargs="?", default=str(DEFAULT_BFM_PATH))
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build-bfm":
            out = build_bfm_front(args.bfm, args.exp, args.index_dir, args.out)
            print(f"wrote {out}")
            args.path = out
        m = load_bfm_front(args.path)
        print(f"{args.path}: {m.n_vertices} vertices, {m.n_triangles} triangles, "
              f"K_id={m.n_id}, K_exp={m.n_exp}, K_tex={m.n_tex}")
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - thin CLI wrapper
    sys.exit(main())
