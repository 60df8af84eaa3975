"""FaceModel dataclass: Eq. 3 arithmetic, normals via point_buf, validation, save/load."""
import numpy as np
import pytest
import torch

from occ3d_lib.face.facemodel import FaceModel, build_point_buf, face_normals, vertex_normals, vertex_normals_reference
from occ3d_lib.face.procedural import procedural_face_model


def test_shape_is_mean_plus_bases(tiny_model):
    m = tiny_model()
    idc, exc = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5]])
    s = m.shape(idc, exc)
    expect = m.mean_shape.reshape(-1) + m.id_base @ idc[0] + m.exp_base @ exc[0]
    assert torch.allclose(s[0].reshape(-1), expect)
    a = m.albedo(torch.tensor([[0.3, 0.1]]))
    assert torch.allclose(a[0].reshape(-1), (m.mean_tex.reshape(-1) + m.tex_base @ torch.tensor([0.3, 0.1])) / 255)


def test_point_buf_lists_adjacent_triangles_padded_with_F():
    tri = torch.tensor([[0, 2, 1], [0, 3, 2]])
    buf = build_point_buf(tri, 4, width=3)
    assert buf.tolist() == [[0, 1, 2], [0, 2, 2], [0, 1, 2], [1, 2, 2]]


def test_normals_follow_the_reference_formula(tiny_model):
    m = tiny_model()
    v = m.mean_shape.unsqueeze(0)
    fn = face_normals(v, m.tri)
    # (v1 - v2) x (v2 - v3) for triangle (0, 2, 1): ((0,0,0)-(1,1,0)) x ((1,1,0)-(1,0,0)) = (0, 0, -1)?  check sign by hand
    v1, v2, v3 = v[0, 0], v[0, 2], v[0, 1]
    hand = torch.linalg.cross(v1 - v2, v2 - v3)
    assert torch.allclose(fn[0, 0], hand / hand.norm())
    vn = vertex_normals(v, m.tri, m.point_buf)
    assert torch.allclose(vn, fn[0, 0].expand(1, 4, 3))  # flat square: all normals equal


def test_fast_vertex_normals_match_the_reference_in_values_and_gradients():
    m = procedural_face_model("light")  # the course's mesh: thousands of vertices, padded point_buf rows
    assert m.n_vertices > 1000 and (m.point_buf == m.tri.shape[0]).any()
    g = torch.Generator().manual_seed(0)
    v = (m.mean_shape + 0.05 * torch.randn(3, *m.mean_shape.shape, generator=g)).requires_grad_(True)
    w = torch.randn(3, *m.mean_shape.shape, generator=g)  # a random upstream gradient
    fast, ref = vertex_normals(v, m.tri, m.point_buf), vertex_normals_reference(v, m.tri, m.point_buf)
    assert fast.shape == ref.shape == v.shape
    assert torch.allclose(fast, ref, atol=1e-5)
    g_fast, = torch.autograd.grad((fast * w).sum(), v)
    g_ref, = torch.autograd.grad((ref * w).sum(), v)
    assert torch.allclose(g_fast, g_ref, rtol=1e-4, atol=1e-4 * g_ref.abs().max().item())


def test_fast_vertex_normals_pass_gradcheck_and_zero_degenerate_triangles(tiny_model):
    m = tiny_model()
    v = (m.mean_shape.double() + 0.1 * torch.randn(2, 4, 3, dtype=torch.float64,
                                                    generator=torch.Generator().manual_seed(1))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: vertex_normals(x, m.tri, m.point_buf), (v,))
    flat = torch.zeros(1, 4, 3)  # every triangle of zero area: zero normals, as the reference, not NaN
    assert torch.equal(vertex_normals(flat, m.tri, m.point_buf), torch.zeros(1, 4, 3))
    assert torch.equal(vertex_normals_reference(flat, m.tri, m.point_buf), torch.zeros(1, 4, 3))


def test_validation_names_the_field(tiny_model):
    m = tiny_model()
    with pytest.raises(ValueError, match="mean_tex must have shape"):
        m.replace(mean_tex=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="tri must be int64"):
        m.replace(tri=m.tri.float())
    with pytest.raises(ValueError, match="tri indices"):
        m.replace(tri=torch.tensor([[0, 1, 9]]), point_buf=torch.zeros(4, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"identity coefficients must have shape \(B, 2\)"):
        m.shape(torch.zeros(1, 3), torch.zeros(1, 1))


def test_save_load_roundtrip_and_missing_field(tiny_model, tmp_path):
    m = tiny_model()
    p = m.save(tmp_path / "m.npz")
    m2 = FaceModel.load(p)
    for k in ("mean_shape", "id_base", "tri", "point_buf", "keypoints", "skin_mask"):
        assert torch.equal(getattr(m, k), getattr(m2, k))
    assert m2.info["name"] == "tiny"
    arrays = dict(np.load(p))
    del arrays["skin_mask"]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"missing field\(s\) \['skin_mask'\]"):
        FaceModel.load(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        FaceModel.load(tmp_path / "nope.npz")


def test_to_dtype_keeps_indices(tiny_model):
    m = tiny_model().to(dtype=torch.float64)
    assert m.mean_shape.dtype == torch.float64 and m.tri.dtype == torch.long
