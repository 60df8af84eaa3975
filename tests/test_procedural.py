"""The procedural morphable face model: layout, determinism, orthonormal bases, landmarks, named components, cache."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from occ3d_lib.face import procedural as P
from occ3d_lib.face.coeffs import join_coeffs
from occ3d_lib.face.facemodel import FaceModel


@pytest.fixture(scope="module")
def light() -> FaceModel:
    return P.procedural_face_model("light", seed=0)


def _coeff(m: FaceModel, part: str, name: str, value: float) -> torch.Tensor:
    k = {"id": m.n_id, "exp": m.n_exp, "tex": m.n_tex}[part]
    v = torch.zeros(1, k)
    v[0, P.component_index(part, name)] = value
    return v


def _shape(m: FaceModel, part: str = "id", name: str | None = None, value: float = 0.0) -> torch.Tensor:
    idc, exc = torch.zeros(1, m.n_id), torch.zeros(1, m.n_exp)
    if name is not None:
        c = _coeff(m, part, name, value)
        idc, exc = (c, exc) if part == "id" else (idc, c)
    return m.shape(idc, exc)[0]


def _lm(m: FaceModel, *args) -> torch.Tensor:
    return _shape(m, *args)[m.keypoints]


# --------------------------------------------------------------------- layout
def test_light_model_layout(light):
    m = light
    m.validate()
    assert 3000 <= m.n_vertices <= 6000 and 6000 <= m.n_triangles <= 12000
    assert (m.n_id, m.n_exp, m.n_tex) == (80, 64, 80)
    assert m.id_base.shape == (3 * m.n_vertices, 80) and m.exp_base.shape == (3 * m.n_vertices, 64)
    assert m.tri.dtype == torch.long and m.point_buf.shape == (m.n_vertices, 8) and m.keypoints.shape == (68,)
    assert m.mean_tex.min() >= 0 and m.mean_tex.max() <= 255
    assert set(m.skin_mask.unique().tolist()) == {0.0, 1.0}
    assert m.keypoints.unique().numel() == 68
    for k in ("name", "resolution", "seed", "version"):
        assert k in m.info
    assert m.info["name"] == "procedural" and m.info["resolution"] == "light" and m.info["version"] == P.VERSION
    assert m.info["component_names"] == P.COMPONENT_NAMES


def test_units_match_bfm_and_camera(light):
    s = light.mean_shape
    assert torch.allclose(s.mean(0), torch.zeros(3), atol=1e-5)  # re-centred like BFM
    width = float(s[:, 0].max() - s[:, 0].min())
    height = float(s[:, 1].max() - s[:, 1].min())
    assert 1.3 < width < 1.7 and 1.5 < height < 2.1
    # at trans = 0 the face fills most of a 224 crop: 1015 * 1.5 / (10 - z) ~ 150 px wide
    assert 130 < 1015 * width / 10 < 200


def test_dense_model_is_bfm_sized_with_same_landmark_semantics(light):
    d = P.procedural_face_model("dense", seed=0)
    d.validate()
    assert 30000 <= d.n_vertices <= 40000 and 60000 <= d.n_triangles <= 80000
    # the same landmark targets: frontal (x, y) positions agree with the light mesh within ~1 grid step
    # (depth differs more where the surface is steep, at the chin's underside)
    diff = (d.mean_shape[d.keypoints] - light.mean_shape[light.keypoints]).abs()
    assert diff[:, :2].max() < 0.03 and diff[:, 2].max() < 0.1, diff.max(0)
    gap_d = (d.mean_shape[d.keypoints[62]] - d.mean_shape[d.keypoints[66]]).norm()
    opened = d.shape(torch.zeros(1, 80), _coeff(d, "exp", "mouth open", 1.0))[0, d.keypoints]
    assert (opened[62] - opened[66]).norm() > gap_d + 0.05


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="resolution"):
        P.procedural_face_model("medium")
    with pytest.raises(ValueError, match="seed"):
        P.procedural_face_model("light", seed=-1)
    with pytest.raises(ValueError, match="no id component"):
        P.component_index("id", "ear size")
    with pytest.raises(ValueError, match="part"):
        P.component_index("shape", "face width")


# -------------------------------------------------------------- determinism
def test_same_seed_gives_identical_tensors(light):
    again = P.procedural_face_model("light", seed=0)
    for name in ("mean_shape", "id_base", "exp_base", "mean_tex", "tex_base", "tri", "point_buf", "keypoints",
                 "skin_mask"):
        assert torch.equal(getattr(light, name), getattr(again, name)), name


def test_other_seed_changes_only_the_random_components(light):
    other = P.procedural_face_model("light", seed=1)
    assert torch.equal(light.mean_shape, other.mean_shape) and torch.equal(light.keypoints, other.keypoints)
    for part in ("id", "exp", "tex"):
        a, b = getattr(light, f"{part}_base"), getattr(other, f"{part}_base")
        n_named = sum(not n.startswith("random") for n in P.COMPONENT_NAMES[part])
        assert torch.equal(a[:, :n_named], b[:, :n_named]), part  # Gram-Schmidt keeps earlier columns
        rel = (a[:, n_named:] - b[:, n_named:]).norm(dim=0) / a[:, n_named:].norm(dim=0)
        assert rel.min() > 0.5, (part, rel.min())


# ------------------------------------------------------------------- bases
@pytest.mark.parametrize("part", ["id", "exp", "tex"])
def test_bases_are_orthonormal_times_decreasing_std(light, part):
    base = getattr(light, f"{part}_base").double()
    norms = base.norm(dim=0)
    q = base / norms
    assert torch.allclose(q.T @ q, torch.eye(base.shape[1], dtype=torch.float64), atol=1e-5)
    assert bool((norms[1:] < norms[:-1]).all()), "standard deviations must decrease strictly"
    # info records the std as an RMS per-vertex displacement: norm = std * sqrt(N)
    std = torch.tensor(light.info["std_rms"][part], dtype=torch.float64)
    assert torch.allclose(norms, std * math.sqrt(light.n_vertices), rtol=1e-5)
    assert norms[0] / norms[-1] > 20  # a PCA-like spectrum, not flat


def _roughness(m: FaceModel, base: torch.Tensor) -> torch.Tensor:
    """Mean squared difference across mesh edges over mean squared value, per column (white noise ~ 2)."""
    e = torch.cat([m.tri[:, [0, 1]], m.tri[:, [1, 2]], m.tri[:, [2, 0]]])
    v = base.T.reshape(base.shape[1], -1, 3)
    return ((v[:, e[:, 0]] - v[:, e[:, 1]]) ** 2).sum(-1).mean(1) / (v ** 2).sum(-1).mean(1)


@pytest.mark.parametrize("part", ["id", "exp", "tex"])
def test_components_are_spatially_smooth(light, part):
    r = _roughness(light, getattr(light, f"{part}_base"))
    noise = _roughness(light, torch.randn(3 * light.n_vertices, 4, generator=torch.Generator().manual_seed(0)))
    assert noise.min() > 1.5
    # named components tied to small sharp features (brows, iris) are as sharp as those features
    assert r.max() < 0.6 * noise.min(), r.max()
    n_named = sum(not n.startswith("random") for n in P.COMPONENT_NAMES[part])
    assert r[n_named:].max() < 0.2 * noise.min(), r[n_named:].max()


# ---------------------------------------------------------------- geometry
def test_normals_point_out_of_the_face(light):
    s = light.mean_shape
    n = light.normals(s.unsqueeze(0))[0]
    front = (s[:, 0].abs() < 0.35) & (s[:, 1].abs() < 0.5)
    mean_n = n[front].mean(0)
    assert mean_n[2] > 0.8, mean_n
    assert (n[front][:, 2] > 0).float().mean() > 0.97
    # sides face sideways-outwards: x-component has the sign of x
    side = s[:, 0].abs() > 0.6
    assert (torch.sign(n[side, 0]) == torch.sign(s[side, 0])).float().mean() > 0.9


def test_keypoints_land_on_the_right_features(light):
    lm = light.mean_shape[light.keypoints]
    x, y, z = lm[:, 0], lm[:, 1], lm[:, 2]
    assert int(z.argmax()) == 30  # nose tip sticks out most
    # jaw runs from image-left (x < 0) at ear level, round the chin, to image-right
    assert bool((x[:3] < -0.6).all()) and bool((x[14:17] > 0.6).all())
    assert bool((x[3:14] > x[2:13]).all()) and bool((y[1:9] < y[:8]).all()) and bool((y[9:17] > y[8:16]).all())
    assert x[0] < -0.5 and x[16] > 0.5 and abs(float(x[8])) < 0.02 and y[8] == y.min()
    assert bool((x[36:42] < 0).all()) and bool((x[42:48] > 0).all())  # 36-41: image-left eye
    assert x[36] < x[39] < 0 < x[42] < x[45]  # outer, inner, inner, outer corners
    assert bool((x[17:22] < 0).all()) and bool((x[22:27] > 0).all())
    eyes_y, nose_y, mouth_y = y[36:48].mean(), y[30], y[48:68].mean()
    assert y[17:27].min() > y[36:48].max()  # brows above eyes
    assert eyes_y > nose_y > y[31:36].mean() > mouth_y > y[8]
    assert bool((y[27:31][1:] < y[27:31][:-1]).all())  # bridge runs down to the tip
    assert x[48] < x[54] and y[51] > y[62] > y[66] > y[57]  # outer upper, inner upper, inner lower, outer lower
    assert all(abs(float(x[k])) < 1e-4 for k in (8, 27, 28, 29, 30, 33, 51, 57, 62, 66))
    # left/right mirror pairs
    pairs = [(0, 16), (3, 13), (17, 26), (36, 45), (39, 42), (31, 35), (48, 54), (60, 64)]
    for a, b in pairs:
        assert torch.allclose(lm[a] * torch.tensor([-1.0, 1, 1]), lm[b], atol=1e-4), (a, b)


def test_frontal_render_landmarks_and_colours(light):
    """Landmarks of a frontal render (image-left/right, eyes above nose above mouth) and colours at them."""
    from occ3d_lib.render.renderer import FaceRenderer

    r = FaceRenderer(light, 96)
    out = r(join_coeffs(batch_size=1))
    lm = out.landmarks[0]
    col, row = lm[:, 0], lm[:, 1]
    assert col[0] < 48 < col[16] and bool((col[36:42] < 48).all()) and bool((col[42:48] > 48).all())
    assert row[36:48].mean() < row[30] < row[48:68].mean()  # rows grow downwards
    assert bool(out.mask[0, 0, row.round().long().clamp(0, 95), col.round().long().clamp(0, 95)].all())

    def px(c: float, r_: float) -> torch.Tensor:
        return out.image[0, :, int(round(r_)), int(round(c))]

    cheek = px(float(col[2] + col[31]) / 2, float(row[31]))
    lip = px(float(col[57]), float(row[57] + row[66]) / 2)
    brow = px(float(col[19]), float(row[19]))
    pupil = px(float(col[37] + col[40]) / 2, float(row[37] + row[40]) / 2)
    assert lip[0] / lip[1] > 1.1 * cheek[0] / cheek[1]  # lips are redder than skin
    assert brow.sum() < 0.8 * cheek.sum() and pupil.sum() < 0.6 * cheek.sum()


# ------------------------------------------------------- named components
def test_mouth_open_separates_the_inner_lips(light):
    rest, opened = _lm(light), _lm(light, "exp", "mouth open", 1.0)
    gap0, gap1 = (rest[62] - rest[66]).norm(), (opened[62] - opened[66]).norm()
    assert gap1 > gap0 + 0.05
    assert (opened[8, 1] - rest[8, 1]) < -0.05  # the chin drops
    assert torch.allclose(opened[36:48], rest[36:48], atol=5e-3)  # the eyes stay


def test_face_width_and_height(light):
    rest, wide = _lm(light), _lm(light, "id", "face width", 1.0)
    assert (wide[16, 0] - wide[0, 0]) > (rest[16, 0] - rest[0, 0]) + 0.05
    tall = _lm(light, "id", "face height", 1.0)
    assert (tall[27, 1] - tall[8, 1]) > (rest[27, 1] - rest[8, 1]) + 0.04


@pytest.mark.parametrize("part,name,check", [
    ("id", "jaw width", lambda r, c: (c[12, 0] - c[4, 0]) - (r[12, 0] - r[4, 0]) > 0.02),
    ("id", "nose length", lambda r, c: c[33, 1] < r[33, 1] - 0.01),
    ("id", "nose width", lambda r, c: (c[35, 0] - c[31, 0]) > (r[35, 0] - r[31, 0]) + 0.01),
    ("id", "eye spacing", lambda r, c: (c[42, 0] - c[39, 0]) > (r[42, 0] - r[39, 0]) + 0.01),
    ("id", "brow height", lambda r, c: (c[17:27, 1] - r[17:27, 1]).mean() > 0.01),
    ("id", "chin length", lambda r, c: c[8, 1] < r[8, 1] - 0.02),
    ("id", "nose projection", lambda r, c: c[30, 2] > r[30, 2] + 0.02),
    ("id", "lip thickness", lambda r, c: (c[51, 1] - c[57, 1]) > (r[51, 1] - r[57, 1]) + 0.01),
    ("id", "mouth width", lambda r, c: (c[54, 0] - c[48, 0]) > (r[54, 0] - r[48, 0]) + 0.01),
    ("exp", "smile", lambda r, c: (c[[48, 54], 1] - r[[48, 54], 1]).min() > 0.02),
    ("exp", "frown", lambda r, c: (c[[48, 54], 1] - r[[48, 54], 1]).max() < -0.01),
    ("exp", "brow raise", lambda r, c: (c[17:27, 1] - r[17:27, 1]).min() > 0.02),
    ("exp", "eye close", lambda r, c: (c[37, 1] - c[41, 1]) < 0.6 * (r[37, 1] - r[41, 1])),
    ("exp", "pucker", lambda r, c: (c[54, 0] - c[48, 0]) < (r[54, 0] - r[48, 0]) - 0.01 and c[62, 2] > r[62, 2]),
])
def test_named_shape_components_do_what_they_say(light, part, name, check):
    assert check(_lm(light), _lm(light, part, name, 1.0)), name


def test_named_albedo_components(light):
    m = light
    rest = m.albedo(torch.zeros(1, m.n_tex))[0]
    skin = m.skin_mask > 0
    dark = m.albedo(_coeff(m, "tex", "skin tone (darker)", 1.0))[0]
    assert (dark[skin].mean(0) < rest[skin].mean(0) - 0.05).all()
    red = m.albedo(_coeff(m, "tex", "redness", 1.0))[0]
    assert (red[skin, 0] - red[skin, 1]).mean() > (rest[skin, 0] - rest[skin, 1]).mean() + 0.02
    brows = m.keypoints[17:27]
    darker = m.albedo(_coeff(m, "tex", "brow darkness", 1.0))[0]
    assert darker[brows].sum(1).mean() < rest[brows].sum(1).mean() - 0.1
    # the mean albedo: lips redder than skin, brows darker, a dark mouth seam
    s = m.mean_shape
    lower_lip = int(((s - (s[m.keypoints[57]] + s[m.keypoints[66]]) / 2) ** 2).sum(1).argmin())
    assert rest[lower_lip, 0] / rest[lower_lip, 1] > 1.3 * rest[skin, 0].mean() / rest[skin, 1].mean()
    rows, cols = m.info["grid"]
    seam = m.info["seam_row"] * cols + cols // 2  # the mouth seam row, at x = 0
    assert abs(float(s[seam, 0])) < 1e-6 and s[m.keypoints[66], 1] < s[seam, 1] < s[m.keypoints[62], 1]
    assert rest[seam].sum() < 0.5 * rest[skin].sum(1).mean()
    assert rest[brows].sum(1).mean() < 0.6 * rest[skin].sum(1).mean()


def test_component_names_are_exposed():
    assert [len(P.COMPONENT_NAMES[k]) for k in ("id", "exp", "tex")] == [80, 64, 80]
    assert P.COMPONENT_NAMES["id"][:2] == ["face width", "face height"]
    assert P.COMPONENT_NAMES["exp"][0] == "mouth open"
    assert P.COMPONENT_NAMES["tex"][0].startswith("skin tone")
    for part in P.COMPONENT_NAMES:
        assert len(set(P.COMPONENT_NAMES[part])) == len(P.COMPONENT_NAMES[part])


# -------------------------------------------------------------------- cache
def test_cache_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("OCC3D_CACHE", str(tmp_path))
    m1 = P.load_or_build_procedural("light", seed=3)
    files = list((tmp_path / "face_models").glob("*.npz"))
    assert len(files) == 1 and not list((tmp_path / "face_models").glob(".*tmp"))
    m2 = P.load_or_build_procedural("light", seed=3)
    for name in ("mean_shape", "id_base", "exp_base", "tex_base", "tri", "keypoints", "point_buf"):
        assert torch.equal(getattr(m1, name), getattr(m2, name)), name
    assert {k: m2.info[k] for k in ("name", "resolution", "seed", "version")} == \
        {"name": "procedural", "resolution": "light", "seed": 3, "version": P.VERSION}
    assert m2.info["component_names"] == P.COMPONENT_NAMES
    assert files[0] == P.procedural_cache_path("light", 3)
    # every setting is in the key
    keys = {P.procedural_cache_path(r, s) for r in ("light", "dense") for s in (3, 4)}
    assert len(keys) == 4 and all(k.parent == tmp_path / "face_models" for k in keys)
    # a corrupt file is rebuilt
    files[0].write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="procedural face model .* is damaged"):
        m3 = P.load_or_build_procedural("light", seed=3)
    assert torch.equal(m3.id_base, m1.id_base)
    assert np.load(files[0])["keypoints"].shape == (68,)


def test_two_identities_render_differently(light):
    from occ3d_lib.data.synthetic import sample_identities
    from occ3d_lib.render.renderer import FaceRenderer

    idc, tex = sample_identities(2, light, torch.Generator().manual_seed(0))
    out = FaceRenderer(light, 64)(join_coeffs(id=idc, tex=tex))
    both = (out.mask[0] * out.mask[1]).bool()[0]
    assert both.float().mean() > 0.3
    diff = (out.image[0] - out.image[1]).abs().sum(0)[both].mean()
    assert diff > 0.05, diff
    lm_gap = (out.landmarks[0] - out.landmarks[1]).norm(dim=-1).mean()
    assert lm_gap > 0.5, lm_gap  # pixels: the shapes differ too
