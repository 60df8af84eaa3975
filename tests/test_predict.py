"""occ3d_lib.nets.predict: batched prediction without gradients."""
import pytest
import torch
from torch import nn

from occ3d_lib.nets.predict import predict_coeffs


def test_predict_coeffs_batches_and_prefers_predict():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 257))
    x = torch.rand(10, 3, 4, 4)
    assert torch.allclose(predict_coeffs(net, x, batch_size=3), net(x), atol=1e-6)

    class WithPredict(nn.Module):
        def forward(self, x):
            raise AssertionError("forward must not be used when predict exists")

        def predict(self, x):
            return torch.ones(x.shape[0], 257)

    assert torch.equal(predict_coeffs(WithPredict(), x, batch_size=4), torch.ones(10, 257))
    with pytest.raises(ValueError, match="images must have shape"):
        predict_coeffs(net, torch.rand(3, 4, 4))
