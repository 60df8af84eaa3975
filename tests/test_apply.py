"""Tests of occ3d_lib.occlusion.apply: occlude (coverage, masks, fills, determinism, natural occluders, edge
cases), multi-occlusion sets, the training occluder and its state, coverage statistics.

Inputs are the jittered canonical faces of occlusion_samples; no renderer needed.
"""
from __future__ import annotations

import io
import math
from types import SimpleNamespace

import pytest
import torch
from occlusion_samples import LM, N, S, X, faces

from occ3d_lib import occlusion as O
from occ3d_lib.occlusion import shapes as oc


# ------------------------------------------------------------------------------------- coverage
@pytest.mark.parametrize("kind", [k for k in O.KINDS])
def test_coverage_within_documented_range(kind):
    res = O.occlude(X, kind, 7, LM, fill="solid")
    lo, hi = O.COVERAGE_RANGES[kind]
    cov = res.coverage
    assert cov.shape == (N,)
    assert bool(((cov >= lo - 1e-6) & (cov <= hi + 1e-6)).all()), (kind, cov.min().item(), cov.max().item())
    # the coverage reported is the mask's share of the face region
    assert torch.allclose(cov, O.occlusion_coverage(res.masks, res.params["face_boxes"]))
    if kind == "none":
        assert torch.equal(res.images, X) and not res.masks.any()


@pytest.mark.parametrize("kind", O.SQUARE_KINDS)
def test_squares_each_within_their_area_range(kind):
    res = O.occlude(X, kind, 11, LM)
    lo, hi = oc.RECT_AREA[kind]
    for geo in res.params["geometry"]:
        rects = geo["rects_xywh"]
        assert len(rects) == (1 if kind == "shofi" else 2)
        for f in geo["area_fractions"]:
            assert lo - 1e-9 <= f <= hi + 1e-9
        for _, _, w, h in rects:
            assert abs(w - h) <= 1  # squares (up to one pixel of rounding)
        if len(rects) == 2:
            a, b = rects
            assert oc._overlap(a, b) <= oc.MAX_SQUARE_OVERLAP * min(a[2] * a[3], b[2] * b[3])


def test_coverage_range_and_position_options():
    boxes = torch.tensor([[10.0, 12.0, 49.0, 59.0]])  # region columns 10..49, rows 12..59
    x = faces(1)
    top_left = O.occlude(x, "shofi", 0, boxes=boxes, coverage_range=(0.25, 0.25), position=(0, 0))
    r = top_left.params["geometry"][0]["rects_xywh"][0]
    assert r[:2] == [10, 12]
    assert top_left.coverage.item() == pytest.approx(0.25, abs=0.02)
    bottom_right = O.occlude(x, "shofi", 0, boxes=boxes, coverage_range=(0.25, 0.25), position=(1, 1))
    r = bottom_right.params["geometry"][0]["rects_xywh"][0]
    assert (r[0] + r[2] - 1, r[1] + r[3] - 1) == (49, 59)
    with pytest.raises(ValueError, match="position"):
        O.occlude(x, "shofi", 0, boxes=boxes, position=(0.5, 2))
    with pytest.raises(ValueError, match="coverage_range"):
        O.occlude(x, "shofi", 0, boxes=boxes, coverage_range=(0.5, 0.2))


# ----------------------------------------------------------------------------------- masks/fills
@pytest.mark.parametrize("fill", O.FILLS)
def test_masks_are_exactly_the_changed_pixels(fill):
    res = O.occlude(X, "mixed", 3, LM, fill=fill)
    changed = (res.images != X).any(1, keepdim=True)
    assert res.masks.dtype == torch.bool and res.masks.shape == (N, 1, S, S)
    assert torch.equal(changed, res.masks)
    assert res.images.min() >= 0 and res.images.max() <= 1


def test_fill_colours_and_fixed_colour():
    res = O.occlude(X[:8], "shofi", 5, LM[:8], fill="solid")
    for i in range(8):  # one solid colour per sample, the one reported
        px = res.images[i][:, res.masks[i, 0]]
        assert torch.allclose(px, res.params["colors"][i][:, None].expand_as(px))
    red = O.occlude(X[:8], "star", 5, LM[:8], color=(1.0, 0.0, 0.0))
    blue = O.occlude(X[:8], "star", 5, LM[:8], color=(0.0, 0.0, 1.0))
    assert torch.equal(red.masks, blue.masks)  # same seed: same occluder, another colour (Fig. 3)
    assert bool((red.images[:, 0][red.masks[:, 0]] == 1).all())
    with pytest.raises(ValueError, match="color"):
        O.occlude(X[:2], "star", 5, LM[:2], color=(1.0, 0.0, 0.0), fill="uniform")


# --------------------------------------------------------------------------------- determinism
def test_same_seed_same_bytes_different_seed_differs():
    a = O.occlude(X[:16], "mixed", 42, LM[:16], fill="random")
    b = O.occlude(X[:16], "mixed", torch.Generator().manual_seed(42), LM[:16], fill="random")
    c = O.occlude(X[:16], "mixed", 43, LM[:16], fill="random")
    assert a.images.numpy().tobytes() == b.images.numpy().tobytes()
    assert torch.equal(a.masks, b.masks) and torch.equal(a.coverage, b.coverage)
    assert not torch.equal(a.images, c.images) and not torch.equal(a.masks, c.masks)
    g = torch.Generator().manual_seed(1)
    first = O.occlude(X[:4], "dsofi", g, LM[:4])
    second = O.occlude(X[:4], "dsofi", g, LM[:4])  # the generator advanced
    assert not torch.equal(first.masks, second.masks)


# ---------------------------------------------------------------------------- natural occluders
def test_sunglasses_cover_the_eyes():
    res = O.occlude(X, "sunglasses", 1, LM)
    assert bool(O.landmarks_covered(res.masks, LM, list(range(36, 48))).all())
    assert not bool(O.landmarks_covered(res.masks, LM, [8, 57]).any())  # chin and lower lip stay visible


def test_surgical_mask_covers_nose_tip_and_mouth():
    res = O.occlude(X, "surgical_mask", 2, LM)
    assert bool(O.landmarks_covered(res.masks, LM, [30] + list(range(48, 68))).all())
    assert not bool(O.landmarks_covered(res.masks, LM, list(range(36, 48))).any())  # the eyes stay visible


def test_other_natural_occluders_land_where_documented():
    fringe = O.occlude(X, "fringe", 3, LM)
    assert bool(O.landmarks_covered(fringe.masks, LM, list(range(17, 27))).all())  # brows
    assert not bool(O.landmarks_covered(fringe.masks, LM, list(range(48, 68))).any())  # never the mouth
    beard = O.occlude(X, "beard", 4, LM)
    assert bool(O.landmarks_covered(beard.masks, LM, [8]).all())  # always the chin
    scarf = O.occlude(X, "scarf", 5, LM)
    assert bool(O.landmarks_covered(scarf.masks, LM, [8]).all())
    assert not bool(O.landmarks_covered(scarf.masks, LM, list(range(36, 48))).any())
    for kind in ("hand", "microphone", "cup"):
        res = O.occlude(X, kind, 6, LM)
        assert bool((res.coverage > 0).all()), kind


def test_natural_occluders_from_boxes_only():
    boxes = O.face_boxes_from_landmarks(LM[:6])
    res = O.occlude(X[:6], "sunglasses", 1, boxes=boxes)
    tpl = O.landmarks_from_boxes(boxes)
    assert bool(O.landmarks_covered(res.masks, tpl, list(range(36, 48))).all())


# -------------------------------------------------------------------------------- edge cases
def test_face_box_at_the_border_or_partly_outside():
    lm = LM[:20].clone()
    lm[:10, :, 0] -= 0.45 * S  # faces pushed over the left border
    lm[10:, :, 1] += 0.4 * S  # and over the bottom border
    x = X[:20]
    for kind in ("dsofi", "dhofi", "shofi", "full", "star", "scribble"):
        res = O.occlude(x, kind, 9, lm)
        lo, hi = O.COVERAGE_RANGES[kind]
        assert bool(((res.coverage >= lo - 1e-6) & (res.coverage <= hi + 1e-6)).all()), kind
        region = O.face_region_mask(res.params["face_boxes"], S, S)
        assert not bool((res.masks & ~region).any()) or kind == "scribble"
    for kind in O.NATURAL_KINDS:
        res = O.occlude(x, kind, 9, lm)
        assert torch.equal((res.images != x).any(1, keepdim=True), res.masks)
    boxes = torch.tensor([[-30.0, -10.0, 5.0, 20.0], [S - 3.0, 40.0, S + 50.0, S + 20.0]])
    res = O.occlude(X[:2], "shofi", 0, boxes=boxes)
    assert res.params["regions"].tolist() == [[0, 5, 0, 20], [S - 3, S - 1, 40, S - 1]]
    with pytest.raises(ValueError, match="no pixel centre inside"):
        O.occlude(X[:1], "shofi", 0, boxes=torch.tensor([[S + 1.0, 0.0, S + 20.0, 10.0]]))


@pytest.mark.parametrize("kind", ["dsofi", "random_pattern", "hand", "mixed"])
@pytest.mark.parametrize("fill", ["texture", "random"])
def test_batch_of_one(kind, fill):
    res = O.occlude(X[:1], kind, 0, LM[:1], fill=fill)
    assert res.images.shape == (1, 3, S, S) and res.masks.shape == (1, 1, S, S) and res.coverage.shape == (1,)
    assert torch.equal((res.images != X[:1]).any(1, keepdim=True), res.masks)
    assert len(res) == 1


def test_grayscale_rgba_uint8_inputs():
    x = X[:4]
    ref = O.occlude(x, "shofi", 0, LM[:4])
    gray = x[:, :1]
    res = O.occlude(gray, "shofi", 0, LM[:4])  # grayscale is replicated to RGB
    assert res.images.shape == (4, 3, S, S)
    assert torch.equal(res.images[~res.masks.expand(-1, 3, -1, -1)],
                       gray.expand(-1, 3, -1, -1)[~res.masks.expand(-1, 3, -1, -1)])
    rgba = torch.cat([x, torch.ones(4, 1, S, S)], 1)  # opaque RGBA: alpha dropped
    assert torch.equal(O.occlude(rgba, "shofi", 0, LM[:4]).images, ref.images)
    rgba[0, 3, 0, 0] = 0.5
    with pytest.raises(ValueError, match="opaque"):
        O.occlude(rgba, "shofi", 0, LM[:4])
    u8 = (x * 255).round().to(torch.uint8)  # uint8 is converted: /255, float32 out
    r8 = O.occlude(u8, "shofi", 0, LM[:4])
    rf = O.occlude(u8.float() / 255, "shofi", 0, LM[:4])
    assert r8.images.dtype == torch.float32 and torch.equal(r8.images, rf.images)
    with pytest.raises(ValueError, match="1 \\(grayscale\\), 3 \\(RGB\\) or 4 \\(RGBA\\)"):
        O.occlude(x[:, :2], "shofi", 0, LM[:4])
    with pytest.raises(ValueError, match="images\\[None\\]"):
        O.occlude(x[0], "shofi", 0, LM[:1])
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        O.occlude(x * 2, "shofi", 0, LM[:4])
    with pytest.raises(TypeError, match="uint8"):
        O.occlude(u8.to(torch.int32), "shofi", 0, LM[:4])


def test_argument_errors():
    with pytest.raises(ValueError, match="valid kinds"):
        O.occlude(X[:2], "goggles", 0, LM[:2])
    with pytest.raises(ValueError, match="landmarks .* or face boxes"):
        O.occlude(X[:2], "shofi", 0)
    with pytest.raises(ValueError, match="landmarks batch"):
        O.occlude(X[:2], "shofi", 0, LM[:3])
    with pytest.raises(ValueError, match="valid fills"):
        O.occlude(X[:2], "shofi", 0, LM[:2], fill="plaid")
    with pytest.raises(ValueError, match="one name per image"):
        O.occlude(X[:2], ["shofi"], 0, LM[:2])


# ------------------------------------------------------------------------------ multi-occlusion
def test_multi_occlusion_set_seven_distinct_deterministic_variants():
    a = O.multi_occlusion_set(X[:2], LM[:2], 7, 5)
    b = O.multi_occlusion_set(X[:2], LM[:2], 7, 5)
    c = O.multi_occlusion_set(X[:2], LM[:2], 7, 6)
    assert a.images.shape == (2, 7, 3, S, S) and a.masks.shape == (2, 7, 1, S, S) and a.coverage.shape == (2, 7)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    for i in range(2):
        flat = a.masks[i].flatten(1)
        for p in range(7):
            for q in range(p + 1, 7):
                assert not torch.equal(flat[p], flat[q])
        assert len(set(a.params["kinds"][i][:6])) == 6  # 6 different pattern kinds first
        cols = a.params["colors"][i * 7:(i + 1) * 7]
        assert len({tuple(c.tolist()) for c in cols}) == 7  # each variant its own colour
        for v in range(7):  # each variant occludes the identity's own image
            changed = (a.images[i, v] != X[i]).any(0, keepdim=True)
            assert torch.equal(changed, a.masks[i, v])
    one = O.multi_occlusion_set(X[0], LM[0], 7, 5)  # a single (3, H, W) image
    assert one.images.shape == (1, 7, 3, S, S)
    assert torch.equal(one.images, O.multi_occlusion_set(X[:1], LM[:1], 7, 5).images)


# -------------------------------------------------------------------------- training occluder
def test_training_occluder_mix_proportions():
    occ = O.TrainingOccluder(mix={"none": 0.2, "partial": 0.5, "full": 0.3}, seed=1)
    kinds = occ.sample_kinds(4000)
    n = len(kinds)
    share = {"none": kinds.count("none") / n, "full": kinds.count("full") / n}
    share["partial"] = 1 - share["none"] - share["full"]
    for k, p in {"none": 0.2, "partial": 0.5, "full": 0.3}.items():
        assert abs(share[k] - p) < 4 * math.sqrt(p * (1 - p) / n), (k, share[k])
    partial = [k for k in kinds if k not in ("none", "full")]
    assert set(partial) == set(O.PARTIAL_KINDS)  # every partial kind gets drawn
    res = occ(X[:16], LM[:16])
    assert all(k in O.KINDS for k in res.params["kinds"])
    none = [i for i, k in enumerate(res.params["kinds"]) if k == "none"]
    assert all(res.coverage[i] == 0 for i in none)
    with pytest.raises(ValueError, match="unknown mix"):
        O.TrainingOccluder(mix={"some": 1.0})


def test_training_occluder_state_dict_round_trip():
    a = O.TrainingOccluder(seed=3)
    a(X[:8], LM[:8])
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)  # as the Trainer's checkpoint does
    expected = [a(X[:8], LM[:8]) for _ in range(2)]
    b = O.TrainingOccluder(seed=99)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    got = [b(X[:8], LM[:8]) for _ in range(2)]
    for e, g in zip(expected, got):
        assert torch.equal(e.images, g.images) and torch.equal(e.masks, g.masks)
    assert b.calls == a.calls == 3
    with pytest.raises(ValueError, match="does not match"):
        O.TrainingOccluder(mix={"none": 1.0}).load_state_dict(a.state_dict())


def test_training_occluder_from_profile():
    prof = SimpleNamespace(seed=4, extra={"occlusion_mix": {"none": 0.0, "full": 1.0}})
    occ = O.TrainingOccluder.from_profile(prof)
    assert occ.sample_kinds(5) == ["full"] * 5 and occ.seed == 4
    default = O.TrainingOccluder.from_profile(SimpleNamespace(seed=0, extra={}))
    assert default.mix == pytest.approx(O.DEFAULT_TRAINING_MIX)


# ------------------------------------------------------------------------- coverage statistics
def test_kinds_table_and_coverage_samples():
    table = O.kinds_table(["dsofi", "sunglasses"])
    assert "| `dsofi` |" in table and "9.5% - 30.0%" in table
    cov = O.coverage_samples(X[:4], LM[:4], ["none", "shofi"], seed=0, repeats=2)
    assert cov["shofi"].shape == (8,) and bool((cov["none"] == 0).all())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = O.coverage_histograms(cov)
    assert len(fig.axes) == 2
    plt.close(fig)
