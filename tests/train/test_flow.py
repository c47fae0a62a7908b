import pytest
import torch

from videoforge.diffusion import flow


def test_path_endpoints_and_velocity():
    x0, eps = torch.randn(3, 4, 2, 5, 5), torch.randn(3, 4, 2, 5, 5)
    assert torch.equal(flow.interpolate(x0, eps, torch.zeros(3)), x0)
    assert torch.equal(flow.interpolate(x0, eps, torch.ones(3)), eps)
    sigma = torch.tensor([0.1, 0.5, 0.9])
    xt = flow.interpolate(x0, eps, sigma)
    # One exact Euler step along the true velocity lands on the data (official convention §5.1).
    back = xt + flow.velocity_target(x0, eps) * (0.0 - sigma).view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(back, x0)


def test_logit_normal_statistics_and_shift():
    g = torch.Generator().manual_seed(0)
    s = flow.sample_logit_normal_timesteps(200_000, mean=0.0, std=1.0, generator=g)
    assert s.dtype == torch.float32 and 0 < s.min() and s.max() < 1
    logit = torch.log(s / (1 - s))
    assert abs(logit.mean().item()) < 0.01 and abs(logit.std().item() - 1.0) < 0.01
    g = torch.Generator().manual_seed(0)
    shifted = flow.sample_logit_normal_timesteps(200_000, shift=3.0, generator=g)
    torch.testing.assert_close(shifted, 3 * s / (1 + 2 * s))
    assert shifted.mean() > s.mean()  # shift > 1 moves mass toward noise
    with pytest.raises(ValueError, match="std"):
        flow.sample_logit_normal_timesteps(2, std=0.0)


def test_loss_is_mean_squared_velocity_error():
    x0, eps = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    target = eps - x0
    assert flow.flow_matching_loss(target, x0, eps).item() == 0.0
    pred = target + 2.0
    torch.testing.assert_close(flow.per_sample_loss(pred, target), torch.tensor([4.0, 4.0]))
    with pytest.raises(ValueError, match="shape"):
        flow.per_sample_loss(pred[:, :2], target)
