"""The morphable face model (paper Eq. 3) in the BFM_model_front layout.

Taught in notebook 01, section 1. One dataclass, :class:`FaceModel`, holds
either the embedded procedural model (:mod:`occ3d_lib.face.procedural`) or the real
Basel Face Model (:mod:`occ3d_lib.face.bfm`), so everything downstream is the same
code for both data tracks.

Layout (as in Deep3DFaceRecon's ``BFM_model_front.mat``, indices made 0-based):
bases are (3N, K) with rows interleaved x0 y0 z0 x1 ...; coefficients are in
units of one prior standard deviation (the bases are pre-multiplied by the
PCA standard deviations), so the prior on every coefficient is N(0, 1).

Command line (real track): ``python -m occ3d_lib.face.bfm build-bfm ...``
builds BFM_model_front.mat from BFM 2009 (see :mod:`occ3d_lib.face.bfm`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from occ3d_lib.core.artifacts import DamagedArtifact, atomic_path

N_LANDMARKS = 68

_TENSOR_FIELDS = ("mean_shape", "id_base", "exp_base", "mean_tex", "tex_base", "tri", "point_buf",
                  "keypoints", "skin_mask")


@dataclass
class FaceModel:
    """A linear morphable model of shape, expression and albedo (paper Eq. 3).

    Fields (N vertices, F triangles):
      mean_shape (N, 3) float; id_base (3N, K_id); exp_base (3N, K_exp);
      mean_tex (N, 3) albedo on the 0..255 scale; tex_base (3N, K_tex) on the same scale;
      tri (F, 3) long, 0-based; point_buf (N, 8) long, 0-based ids of adjacent
      triangles, padded with F (which indexes an appended zero normal);
      keypoints (68,) long vertex ids of the iBUG-68 landmarks; skin_mask (N,) float 0/1.
    ``info`` holds free-form metadata (name, generator settings, file path).
    """

    mean_shape: Tensor
    id_base: Tensor
    exp_base: Tensor
    mean_tex: Tensor
    tex_base: Tensor
    tri: Tensor
    point_buf: Tensor
    keypoints: Tensor
    skin_mask: Tensor
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field with a wrong type, shape or range."""
        for name in _TENSOR_FIELDS:
            v = getattr(self, name)
            if not isinstance(v, Tensor):
                raise ValueError(f"FaceModel.{name} must be a torch.Tensor, got {type(v).__name__}")
        n = self.mean_shape.shape[0]
        f = self.tri.shape[0]
        expect = {
            "mean_shape": (n, 3), "mean_tex": (n, 3), "tri": (f, 3), "keypoints": (N_LANDMARKS,),
            "skin_mask": (n,),
        }
        for name, shape in expect.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"FaceModel.{name} must have shape {shape}, got {tuple(getattr(self, name).shape)}")
        for name in ("id_base", "exp_base", "tex_base"):
            b = getattr(self, name)
            if b.ndim != 2 or b.shape[0] != 3 * n:
                raise ValueError(f"FaceModel.{name} must have shape (3N={3 * n}, K), got {tuple(b.shape)}")
        if self.point_buf.ndim != 2 or self.point_buf.shape[0] != n:
            raise ValueError(f"FaceModel.point_buf must have shape (N={n}, 8), got {tuple(self.point_buf.shape)}")
        for name in ("tri", "point_buf", "keypoints"):
            if getattr(self, name).dtype != torch.long:
                raise ValueError(f"FaceModel.{name} must be int64 (0-based indices), got {getattr(self, name).dtype}")
        if f and (int(self.tri.min()) < 0 or int(self.tri.max()) >= n):
            raise ValueError(f"FaceModel.tri indices must lie in [0, {n}), got [{int(self.tri.min())}, {int(self.tri.max())}]")
        if int(self.point_buf.min()) < 0 or int(self.point_buf.max()) > f:
            raise ValueError(f"FaceModel.point_buf indices must lie in [0, {f}] (F = padding), "
                             f"got [{int(self.point_buf.min())}, {int(self.point_buf.max())}]")
        if int(self.keypoints.min()) < 0 or int(self.keypoints.max()) >= n:
            raise ValueError(f"FaceModel.keypoints must be vertex ids in [0, {n})")

    # -------------------------------------------------------------- properties
    @property
    def n_vertices(self) -> int:
        return self.mean_shape.shape[0]

    @property
    def n_triangles(self) -> int:
        return self.tri.shape[0]

    @property
    def n_id(self) -> int:
        return self.id_base.shape[1]

    @property
    def n_exp(self) -> int:
        return self.exp_base.shape[1]

    @property
    def n_tex(self) -> int:
        return self.tex_base.shape[1]

    @property
    def device(self) -> torch.device:
        return self.mean_shape.device

    @property
    def dtype(self) -> torch.dtype:
        return self.mean_shape.dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> FaceModel:
        """A copy on ``device``; floating fields cast to ``dtype`` if given (index fields stay int64)."""
        kw = {}
        for name in _TENSOR_FIELDS:
            v = getattr(self, name)
            floating = v.is_floating_point() and dtype is not None
            kw[name] = v.to(device=device, dtype=dtype) if floating else v.to(device=device)
        return FaceModel(**kw, info=dict(self.info))

    # ----------------------------------------------------------------- Eq. (3)
    def _check_part(self, x: Tensor, k: int, name: str) -> Tensor:
        if x.ndim != 2 or x.shape[1] != k:
            raise ValueError(f"{name} coefficients must have shape (B, {k}), got {tuple(x.shape)}")
        return x.to(self.dtype)

    def shape(self, id_coeff: Tensor, exp_coeff: Tensor) -> Tensor:
        """S = S_mean + B_id id + B_exp exp (paper Eq. 3). (B, K_id), (B, K_exp) -> (B, N, 3)."""
        id_coeff = self._check_part(id_coeff, self.n_id, "identity")
        exp_coeff = self._check_part(exp_coeff, self.n_exp, "expression")
        offs = id_coeff @ self.id_base.T + exp_coeff @ self.exp_base.T  # (B, 3N)
        return self.mean_shape.unsqueeze(0) + offs.view(offs.shape[0], -1, 3)

    def albedo(self, tex_coeff: Tensor) -> Tensor:
        """K = K_mean + B_tex tex (paper Eq. 3), divided by 255. (B, K_tex) -> (B, N, 3) in ~[0, 1]."""
        tex_coeff = self._check_part(tex_coeff, self.n_tex, "texture")
        offs = tex_coeff @ self.tex_base.T
        return (self.mean_tex.unsqueeze(0) + offs.view(offs.shape[0], -1, 3)) / 255.0

    def landmarks3d(self, verts: Tensor) -> Tensor:
        """The 68 landmark vertices of a batch of meshes. (B, N, 3) -> (B, 68, 3)."""
        return verts[:, self.keypoints]

    def normals(self, verts: Tensor) -> Tensor:
        """Unit vertex normals via point_buf (docs/facts.md §3). (B, N, 3) -> (B, N, 3).

        Face normal = normalize((v1 - v2) x (v2 - v3)) with a zero row appended
        for the padding index; vertex normal = normalize(sum of adjacent face normals).
        """
        return vertex_normals(verts, self.tri, self.point_buf)

    # ------------------------------------------------------------------- files
    def save(self, path: str | Path, settings: Any = None) -> Path:
        """Write the model to a ``.npz`` file atomically, with a manifest recording ``settings`` (what it was
        built from, e.g. the procedural model's seed); returns the path."""
        path = Path(path)
        arrays = {k: getattr(self, k).detach().cpu().numpy() for k in _TENSOR_FIELDS}
        arrays["info"] = np.array(repr(self.info))
        with atomic_path(path, manifest=True, settings=settings) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FaceModel:
        """Read a model written by :meth:`save`. Missing fields are a clear error."""
        import ast

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"face model file not found: {path}")
        try:
            z = np.load(path, allow_pickle=False)
            z.files  # noqa: B018 - a truncated archive fails here or on first read
        except Exception as exc:  # noqa: BLE001 - BadZipFile, EOFError, OSError, ValueError
            raise DamagedArtifact(path, f"not a readable .npz: {type(exc).__name__}: {exc}",
                                  "write it again with FaceModel.save (a cached model is rebuilt when deleted)") from None
        with z:
            missing = [k for k in _TENSOR_FIELDS if k not in z.files]
            if missing:
                raise ValueError(f"{path}: missing field(s) {missing}; a FaceModel file needs {list(_TENSOR_FIELDS)}")
            kw = {}
            for k in _TENSOR_FIELDS:
                a = z[k]
                kw[k] = torch.from_numpy(a.astype(np.int64) if k in ("tri", "point_buf", "keypoints") else a.astype(np.float32))
            info = ast.literal_eval(str(z["info"])) if "info" in z.files else {}
        return cls(**kw, info=info)

    def replace(self, **changes: Any) -> FaceModel:
        """A copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)


def face_normals(verts: Tensor, tri: Tensor) -> Tensor:
    """Unit triangle normals normalize((v1 - v2) x (v2 - v3)). (B, N, 3), (F, 3) -> (B, F, 3)."""
    v1, v2, v3 = (verts.index_select(1, tri[:, k]) for k in range(3))
    n = torch.cross(v1 - v2, v2 - v3, dim=-1)
    return torch.nn.functional.normalize(n, dim=-1, eps=1e-12)


def vertex_normals_reference(verts: Tensor, tri: Tensor, point_buf: Tensor) -> Tensor:
    """Unit vertex normals from adjacent triangles, written plainly (docs/facts.md §3). (B, N, 3) -> (B, N, 3).

    The reference :func:`vertex_normals` is tested against (values and gradients)."""
    fn = face_normals(verts, tri)
    fn = torch.cat([fn, torch.zeros_like(fn[:, :1])], dim=1)  # padding index F -> zero normal
    b, n = verts.shape[:2]
    vn = fn.index_select(1, point_buf.reshape(-1)).view(b, n, point_buf.shape[1], 3).sum(dim=2)
    return torch.nn.functional.normalize(vn, dim=-1, eps=1e-12)


def _unit_rows(v: Tensor, dim: int) -> Tensor:
    """``v`` divided by its Euclidean norm along ``dim`` (clamped at 1e-12, as ``F.normalize``)."""
    return v / v.square().sum(dim, keepdim=True).sqrt().clamp_min(1e-12)


def vertex_normals(verts: Tensor, tri: Tensor, point_buf: Tensor) -> Tensor:
    """Unit vertex normals from adjacent triangles (docs/facts.md §3; notebook 01, section 1). (B, N, 3) -> (B, N, 3).

    The same function as :func:`vertex_normals_reference` (to float32 rounding), laid out for the CPU: the
    batch goes last, so every gather is a gather of whole rows ``(N, 3B)`` and its backward a row-wise
    scatter-add, and the cross product is written out by component (``torch.cross`` and gathers along
    dimension 1 are several times slower there). About 2x faster forward and backward on 28 faces of the
    procedural model; the renders of Eq. 7 in every MOPI step call it (``benchmarks/bench_mopi.py``).
    """
    b, n = verts.shape[:2]
    vt = verts.permute(1, 2, 0).reshape(n, 3 * b)  # row i: x of vertex i in every face, then y, then z
    p1, p2, p3 = (vt.index_select(0, tri[:, k]).view(-1, 3, b) for k in range(3))  # (F, 3, B)
    (ax, ay, az), (cx, cy, cz) = (p1 - p2).unbind(1), (p2 - p3).unbind(1)
    fn = _unit_rows(torch.stack([ay * cz - az * cy, az * cx - ax * cz, ax * cy - ay * cx], 1), 1)  # (F, 3, B)
    fn = torch.cat([fn, fn.new_zeros(1, 3, b)]).view(-1, 3 * b)  # padding index F -> zero normal
    vn = fn.index_select(0, point_buf.reshape(-1)).view(n, point_buf.shape[1], 3, b).sum(1)  # (N, 3, B)
    return _unit_rows(vn, 1).permute(2, 0, 1)


def build_point_buf(tri: Tensor, n_vertices: int, width: int = 8) -> Tensor:
    """For each vertex, up to ``width`` adjacent triangle ids padded with F. (F, 3) -> (N, width) long.

    Vertices with more than ``width`` neighbours keep the first ``width`` (as BFM's file does).
    """
    f = tri.shape[0]
    v = tri.reshape(-1)
    t = torch.arange(f).repeat_interleave(3)
    order = torch.argsort(v * (f + 1) + t)
    v, t = v[order], t[order]
    counts = torch.bincount(v, minlength=n_vertices)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(v.numel()) - starts[v]
    keep = rank < width
    buf = torch.full((n_vertices, width), f, dtype=torch.long)
    buf[v[keep], rank[keep]] = t[keep]
    return buf
