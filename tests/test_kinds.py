"""Tests of occ3d_lib.occlusion.kinds: the face region, its coverage and the canonical landmarks."""
from __future__ import annotations

import pytest
import torch

from occ3d_lib import occlusion as O


# --------------------------------------------------------------------------------------- regions
def test_face_box_and_coverage_hand_computed():
    # box x 1.5..5.2, y 1.5..4.0 on an 8x8 image: pixel centres c in 2..5, r in 2..4 -> 12 pixels
    boxes = torch.tensor([[1.5, 1.5, 5.2, 4.0]])
    region = O.face_region_mask(boxes, 8, 8)
    assert int(region.sum()) == 12 and bool(region[0, 0, 2:5, 2:6].all())
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[0, 0, 2, 2:5] = True  # 3 pixels inside
    mask[0, 0, 0, 0:2] = True  # 2 pixels outside the region do not count
    assert O.occlusion_coverage(mask, boxes).item() == pytest.approx(3 / 12)
    # the landmark box grows upwards by FOREHEAD_FRACTION of its height
    lm = torch.zeros(1, 68, 2)
    lm[0, :, 0] = torch.linspace(10, 30, 68)
    lm[0, :, 1] = torch.linspace(20, 40, 68)
    assert O.face_boxes_from_landmarks(lm)[0].tolist() == pytest.approx([10, 20 - 0.4 * 20, 30, 40])


def test_canonical_landmarks_box_fraction():
    lm = O.canonical_landmarks(100, 0.75)
    box = O.face_boxes_from_landmarks(lm[None])[0]
    assert (box[3] - box[1]).item() == pytest.approx(75.0, abs=1e-3)
    assert ((box[1] + box[3]) / 2).item() == pytest.approx(49.5, abs=1e-3)
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean()  # 36-41 is the image-left eye
    assert lm[8, 1] > lm[30, 1] > lm[27, 1]  # chin below nose tip below nose bridge
