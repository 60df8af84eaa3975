"""occ3d_lib.face.coeffs: splitting and joining the 257 RNet coefficients, and their validation."""

import pytest
import torch

from occ3d_lib.face import coeffs


def test_coefficient_split_and_errors():
    x = torch.arange(2 * 257, dtype=torch.float32).view(2, 257)
    c = coeffs.split_coeffs(x)
    assert c.id.shape == (2, 80) and c.gamma.shape == (2, 27) and c.trans.shape == (2, 3)
    assert c.angle[0].tolist() == [224.0, 225.0, 226.0] and c.gamma[0, 0].item() == 227.0
    assert torch.equal(c.to_tensor(), x)
    assert torch.equal(coeffs.join_coeffs(**{k: getattr(c, k) for k in coeffs.SLICES}), x)
    with pytest.raises(ValueError, match=r"shape \(B, 257\)"):
        coeffs.split_coeffs(torch.zeros(2, 256))
    bad = torch.zeros(2, 257)
    bad[1, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf .*batch 1, index 5"):
        coeffs.split_coeffs(bad)
    with pytest.raises(ValueError, match="floating"):
        coeffs.split_coeffs(torch.zeros(2, 257, dtype=torch.long))
