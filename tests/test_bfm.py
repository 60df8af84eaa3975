"""BFM_model_front.mat loading and building from BFM 2009 on tiny files in the real formats."""
from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from occ3d_lib.face import bfm
from occ3d_lib.face.facemodel import build_point_buf

N, F = 6, 4  # front-model vertices / triangles of the fixture


def _tri() -> np.ndarray:
    return np.array([[0, 1, 2], [1, 3, 2], [2, 3, 4], [3, 5, 4]])


def _front_fields(rng: np.random.Generator) -> dict[str, np.ndarray]:
    tri = _tri()
    pb = build_point_buf(torch.from_numpy(tri), N).numpy()
    return {
        "meanshape": rng.normal(size=(1, 3 * N)).astype(np.float32),
        "idBase": rng.normal(size=(3 * N, 80)).astype(np.float32),
        "exBase": rng.normal(size=(3 * N, 64)).astype(np.float32),
        "meantex": rng.uniform(0, 255, size=(1, 3 * N)).astype(np.float32),
        "texBase": rng.normal(size=(3 * N, 80)).astype(np.float32),
        "tri": (tri + 1).astype(np.float32),
        "point_buf": (pb + 1).astype(np.float32),
        "tri_mask2": (tri[:3] + 1).astype(np.float32),
        "keypoints": (np.arange(68) % N + 1).reshape(1, 68).astype(np.float32),
        "frontmask2_idx": np.array([[1], [3], [4]], dtype=np.float32),
        "skinmask": np.array([[1, 0, 1, 1, 0, 0]], dtype=np.float32),
    }


def test_load_bfm_front_every_field(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    fields = _front_fields(rng)
    p = tmp_path / "BFM_model_front.mat"
    savemat(p, fields)
    m = bfm.load_bfm_front(p)
    ms = fields["meanshape"].reshape(N, 3).astype(np.float64)
    np.testing.assert_allclose(m.mean_shape.numpy(), ms - ms.mean(0), atol=1e-6)
    assert abs(float(m.mean_shape.mean(0).abs().max())) < 1e-6  # re-centred
    np.testing.assert_array_equal(m.id_base.numpy(), fields["idBase"])
    np.testing.assert_array_equal(m.exp_base.numpy(), fields["exBase"])
    np.testing.assert_array_equal(m.tex_base.numpy(), fields["texBase"])
    np.testing.assert_array_equal(m.mean_tex.numpy(), fields["meantex"].reshape(N, 3))
    np.testing.assert_array_equal(m.tri.numpy(), _tri())
    assert m.tri.dtype == torch.long and m.point_buf.dtype == torch.long
    np.testing.assert_array_equal(m.point_buf.numpy(), fields["point_buf"] - 1)
    assert int(m.point_buf.max()) == F  # padding F+1 (1-based) -> F
    np.testing.assert_array_equal(m.keypoints.numpy(), np.arange(68) % N)
    np.testing.assert_array_equal(m.skin_mask.numpy(), [1, 0, 1, 1, 0, 0])
    assert m.info["n_front_mask"] == 3
    raw = bfm.read_bfm_front_mat(p)
    np.testing.assert_array_equal(raw["frontmask2_idx"], [0, 2, 3])
    np.testing.assert_array_equal(raw["tri_mask2"], _tri()[:3])
    # without re-centring the mean shape is the file's
    m2 = bfm.load_bfm_front(p, recenter=False)
    np.testing.assert_allclose(m2.mean_shape.numpy(), ms, atol=1e-6)
    # Eq. 3 works on it
    s = m.shape(torch.zeros(1, 80), torch.zeros(1, 64))
    assert s.shape == (1, N, 3)


def test_load_bfm_front_missing_file_says_what_to_get(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="01_MorphableModel.mat") as ei:
        bfm.load_bfm_front(tmp_path / "nope" / "BFM_model_front.mat")
    msg = str(ei.value)
    assert "faces.dmi.unibas.ch" in msg and "data/BFM/BFM_model_front.mat" in msg and "Exp_Pca.bin" in msg


@pytest.mark.parametrize("field,value,match", [
    ("idBase", None, "missing field 'idBase'.*\\[18, 80\\]"),
    ("exBase", np.zeros((18, 63), np.float32), "'exBase' has shape \\[18, 63\\], expected \\[18, 64\\]"),
    ("point_buf", np.ones((6, 7), np.float32), "'point_buf' has shape \\[6, 7\\], expected \\[6, 8\\]"),
    ("keypoints", np.ones((1, 67), np.float32), "'keypoints'.*\\[1, 68\\]"),
    ("tri", np.array([[0, 1, 2]], np.float32), "'tri' holds 1-based indices"),
    ("tri", np.array([[1.5, 2, 3]], np.float32), "whole numbers"),
    ("meantex", np.zeros((1, 17), np.float32), "'meantex'.*\\[1, 18\\]"),
    ("skinmask", np.zeros((1, 5), np.float32), "'skinmask'.*\\[1, 6\\]"),
])
def test_load_bfm_front_bad_fields(tmp_path: Path, field: str, value, match: str) -> None:
    fields = _front_fields(np.random.default_rng(1))
    if value is None:
        del fields[field]
    else:
        fields[field] = value
    p = tmp_path / "bad.mat"
    savemat(p, fields)
    with pytest.raises(ValueError, match=match):
        bfm.load_bfm_front(p)


def test_load_bfm_front_not_a_mat_file(tmp_path: Path) -> None:
    p = tmp_path / "BFM_model_front.mat"
    p.write_bytes(b"this is not a mat file" * 10)
    with pytest.raises(ValueError, match="cannot read"):
        bfm.load_bfm_front(p)


def _write_exp_bin(path: Path, mean: np.ndarray, pcs_t: np.ndarray) -> None:
    """pcs_t: (dim, 3V), written component after component, as in Exp_Pca.bin."""
    with open(path, "wb") as fh:
        fh.write(struct.pack("<i", pcs_t.shape[0]))
        fh.write(mean.astype("<f4").tobytes())
        fh.write(pcs_t.astype("<f4").tobytes())


def test_read_exp_pca_bin_layout_and_truncation(tmp_path: Path) -> None:
    v, dim = 4, 3
    mean = np.arange(3 * v, dtype=np.float32)
    pcs_t = np.arange(dim * 3 * v, dtype=np.float32).reshape(dim, 3 * v) * 0.5
    p = tmp_path / "Exp_Pca.bin"
    _write_exp_bin(p, mean, pcs_t)
    assert p.stat().st_size == 4 + 4 * 3 * v * (1 + dim)
    m, pcs = bfm.read_exp_pca_bin(p)
    np.testing.assert_array_equal(m, mean)
    assert pcs.shape == (3 * v, dim)
    assert pcs[5, 2] == pcs_t[2, 5] == (2 * 12 + 5) * 0.5  # transposed: row = coordinate, column = component
    m2, _ = bfm.read_exp_pca_bin(p, n_vertices=v)
    np.testing.assert_array_equal(m2, mean)
    p.write_bytes(p.read_bytes()[:-4])
    with pytest.raises(ValueError, match="truncated"):
        bfm.read_exp_pca_bin(p)
    with pytest.raises(ValueError, match="truncated"):
        bfm.read_exp_pca_bin(p, n_vertices=v)
    with pytest.raises(FileNotFoundError, match="Juyong/3DFace"):
        bfm.read_exp_pca_bin(tmp_path / "missing.bin")


def _bfm09_fixture(tmp_path: Path) -> dict:
    """BFM09 with 10 vertices, expression basis over 8 of them, a front model of 6."""
    rng = np.random.default_rng(2)
    v09, vexp, kshape, ktex, dim = 10, 8, 82, 81, 66
    d = {
        "shapePC": rng.normal(size=(3 * v09, kshape)).astype(np.float32),
        "shapeEV": rng.uniform(1e3, 1e5, size=(kshape, 1)).astype(np.float32),
        "shapeMU": rng.normal(scale=1e5, size=(3 * v09, 1)).astype(np.float32),
        "texPC": rng.normal(size=(3 * v09, ktex)).astype(np.float32),
        "texEV": rng.uniform(1, 50, size=(ktex, 1)).astype(np.float32),
        "texMU": rng.uniform(0, 255, size=(3 * v09, 1)).astype(np.float32),
    }
    savemat(tmp_path / "01_MorphableModel.mat", d)
    exp_mean = rng.normal(size=3 * vexp).astype(np.float32)
    exp_pcs_t = rng.normal(size=(dim, 3 * vexp)).astype(np.float32)
    _write_exp_bin(tmp_path / "Exp_Pca.bin", exp_mean, exp_pcs_t)
    idx_dir = tmp_path / "idx"
    idx_dir.mkdir()
    std_exp = rng.uniform(1e3, 1e4, size=dim)
    np.savetxt(idx_dir / "std_exp.txt", std_exp)
    trim = np.array([9, 1, 3, 4, 6, 7, 8, 10])      # 1-based into the 10 BFM09 vertices
    front = np.array([2, 5, 1, 8, 3, 6])             # 1-based into the 8 expression vertices
    savemat(idx_dir / "BFM_exp_idx.mat", {"trimIndex": trim.reshape(-1, 1).astype(np.float64)})
    savemat(idx_dir / "BFM_front_idx.mat", {"idx": front.reshape(-1, 1).astype(np.float64)})
    info = {k: v for k, v in _front_fields(rng).items()
            if k in ("tri", "point_buf", "tri_mask2", "keypoints", "frontmask2_idx", "skinmask")}
    savemat(idx_dir / "facemodel_info.mat", info)
    return dict(d, exp_pcs_t=exp_pcs_t, std_exp=std_exp, trim=trim, front=front, info=info, idx_dir=idx_dir)


def test_build_bfm_front_arithmetic(tmp_path: Path) -> None:
    fx = _bfm09_fixture(tmp_path)
    out = bfm.build_bfm_front(tmp_path / "01_MorphableModel.mat", tmp_path / "Exp_Pca.bin", fx["idx_dir"],
                              tmp_path / "out" / "BFM_model_front.mat")
    raw = bfm.read_bfm_front_mat(out)
    # slow reference: vertex by vertex, coordinate by coordinate
    for j, fi in enumerate(fx["front"] - 1):
        si = fx["trim"][fi] - 1  # BFM09 vertex of front vertex j
        for c in range(3):
            r09, rexp, rj = 3 * si + c, 3 * fi + c, 3 * j + c
            assert raw["meanshape"][j, c] == pytest.approx(fx["shapeMU"][r09, 0] / 1e5, rel=1e-6)
            assert raw["meantex"][j, c] == pytest.approx(fx["texMU"][r09, 0], rel=1e-6)
            for k in (0, 41, 79):
                assert raw["idBase"][rj, k] == pytest.approx(fx["shapePC"][r09, k] * fx["shapeEV"][k, 0] / 1e5, rel=1e-5)
                assert raw["texBase"][rj, k] == pytest.approx(fx["texPC"][r09, k] * fx["texEV"][k, 0], rel=1e-5)
            for k in (0, 30, 63):
                assert raw["exBase"][rj, k] == pytest.approx(fx["exp_pcs_t"][k, rexp] * fx["std_exp"][k] / 1e5, rel=1e-5)
    assert raw["idBase"].shape == (18, 80) and raw["exBase"].shape == (18, 64) and raw["texBase"].shape == (18, 80)
    # copied fields stay as in facemodel_info.mat (1-based there, 0-based after reading)
    np.testing.assert_array_equal(raw["tri"], fx["info"]["tri"] - 1)
    np.testing.assert_array_equal(raw["point_buf"], fx["info"]["point_buf"] - 1)
    np.testing.assert_array_equal(raw["keypoints"], fx["info"]["keypoints"].reshape(-1) - 1)
    m = bfm.load_bfm_front(out)
    assert m.n_vertices == N and m.n_id == 80 and m.n_exp == 64 and m.n_tex == 80
    # index vectors stored as rows instead of columns give the same model
    savemat(fx["idx_dir"] / "BFM_exp_idx.mat", {"trimIndex": fx["trim"].reshape(1, -1).astype(np.float64)})
    savemat(fx["idx_dir"] / "BFM_front_idx.mat", {"idx": fx["front"].reshape(1, -1).astype(np.float64)})
    out2 = bfm.build_bfm_front(tmp_path / "01_MorphableModel.mat", tmp_path / "Exp_Pca.bin", fx["idx_dir"],
                               tmp_path / "out" / "again.mat")
    raw2 = bfm.read_bfm_front_mat(out2)
    for k in ("meanshape", "idBase", "exBase", "texBase", "meantex"):
        np.testing.assert_array_equal(raw2[k], raw[k])


def test_build_bfm_errors(tmp_path: Path) -> None:
    fx = _bfm09_fixture(tmp_path)
    (fx["idx_dir"] / "std_exp.txt").unlink()
    with pytest.raises(FileNotFoundError, match="std_exp.txt"):
        bfm.build_bfm_front(tmp_path / "01_MorphableModel.mat", tmp_path / "Exp_Pca.bin", fx["idx_dir"], tmp_path / "o.mat")
    np.savetxt(fx["idx_dir"] / "std_exp.txt", np.ones(66))
    savemat(fx["idx_dir"] / "BFM_exp_idx.mat", {"trimIndex": np.arange(1, 8).reshape(-1, 1)})
    with pytest.raises(ValueError, match="trimIndex"):
        bfm.build_bfm_front(tmp_path / "01_MorphableModel.mat", tmp_path / "Exp_Pca.bin", fx["idx_dir"], tmp_path / "o.mat")
    assert not (tmp_path / "o.mat").exists()


def test_cli_build_bfm(tmp_path: Path) -> None:
    fx = _bfm09_fixture(tmp_path)
    out = tmp_path / "BFM" / "BFM_model_front.mat"
    r = subprocess.run([sys.executable, "-m", "occ3d_lib.face.bfm", "build-bfm", "--bfm",
                        str(tmp_path / "01_MorphableModel.mat"), "--exp", str(tmp_path / "Exp_Pca.bin"),
                        "--index-dir", str(fx["idx_dir"]), "--out", str(out)],
                       capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.is_file() and "6 vertices" in r.stdout
    assert bfm.main(["check-bfm", str(tmp_path / "missing.mat")]) == 1
