import numpy as np
import pytest
import torch

from videoforge.diffusion.guidance import classifier_free_guidance, embedded_guidance
from videoforge.diffusion.samplers import sample_euler
from videoforge.diffusion.schedules import flow_sigmas, model_timesteps


@pytest.mark.parity
@pytest.mark.parametrize("steps,shift", [(50, 7.0), (30, 5.0), (4, 17.0), (1, 1.0), (7, 3.3)])
def test_schedule_matches_diffusers(steps, shift):
    from diffusers import FlowMatchEulerDiscreteScheduler

    # Configured the way diffusers' HunyuanVideoPipeline uses it: shift in the scheduler config,
    # an unshifted linspace grid passed as `sigmas`.
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    sched.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1], device="cpu")
    sigmas = flow_sigmas(steps, shift)
    assert sigmas.dtype == torch.float32 and sigmas.shape == (steps + 1,)
    assert sigmas[0] == 1.0 and sigmas[-1] == 0.0
    torch.testing.assert_close(sigmas, sched.sigmas, rtol=0, atol=0)
    torch.testing.assert_close(model_timesteps(sigmas), sched.timesteps, rtol=0, atol=0)


def test_schedule_formula_and_errors():
    s = flow_sigmas(4, 7.0)
    base = torch.tensor([1.0, 0.75, 0.5, 0.25])
    torch.testing.assert_close(s[:-1], 7 * base / (1 + 6 * base))
    assert torch.all(s[1:] < s[:-1])
    with pytest.raises(ValueError, match="num_steps"):
        flow_sigmas(0, 7.0)
    with pytest.raises(ValueError, match="shift"):
        flow_sigmas(10, 0.0)


def test_euler_is_exact_on_the_straight_path():
    # For a model that knows the data point, v = noise - data is constant along the path,
    # so Euler lands exactly on the data from any noise with any schedule.
    g = torch.Generator().manual_seed(0)
    data = torch.randn(2, 3, 4, generator=g)
    noise = torch.randn(2, 3, 4, generator=g)
    seen = []

    def model_fn(x, sigma):
        assert sigma.shape == (2,)
        seen.append(float(sigma[0]))
        # recover noise from x = (1-s) data + s noise
        return (x - data) / sigma.view(-1, 1, 1)  # = noise - data

    out = sample_euler(model_fn, noise, flow_sigmas(5, 7.0))
    torch.testing.assert_close(out, data, atol=1e-5, rtol=0)
    assert seen == pytest.approx(flow_sigmas(5, 7.0)[:-1].tolist())


def test_euler_step_values_and_callback():
    x0 = torch.ones(1, 2)
    sigmas = torch.tensor([1.0, 0.6, 0.0])
    steps = []
    out = sample_euler(
        lambda x, s, bias: x + bias, x0, sigmas, extra_args={"bias": 1.0}, callback=lambda d: steps.append(d["i"])
    )
    # x1 = 1 + (0.6-1)*(1+1) = 0.2 ; x2 = 0.2 + (0-0.6)*(0.2+1) = -0.52
    torch.testing.assert_close(out, torch.full((1, 2), -0.52))
    assert steps == [0, 1]


def test_euler_keep_pins_entries():
    mask = torch.tensor([[True, False]])
    vals = torch.tensor([[5.0, 0.0]])
    seen = []

    def model_fn(x, s):
        seen.append(x[0, 0].item())
        return torch.ones_like(x)

    out = sample_euler(model_fn, torch.zeros(1, 2), flow_sigmas(3, 1.0), keep=(mask, vals))
    assert seen == [5.0, 5.0, 5.0]
    assert out[0, 0] == 5.0 and out[0, 1] == pytest.approx(-1.0)


def test_embedded_guidance_values():
    assert embedded_guidance(6.0, 2).tolist() == [6000.0, 6000.0]
    assert embedded_guidance(6.0, 1, round_bf16=True).item() == 6016.0
    assert embedded_guidance(3.5, 1, round_bf16=True).item() == 3504.0
    assert embedded_guidance(7.0, 1, round_bf16=True).item() == 7008.0
    assert embedded_guidance(6.0, 1).dtype == torch.float32


def test_cfg_combines_branches_batched_and_unbatched():
    calls = []

    def model_fn(x, sigma, emb):
        calls.append(x.shape[0])
        return x * 0 + emb.sum(dim=-1, keepdim=True)

    x = torch.zeros(1, 1)
    cond, uncond = torch.tensor([[3.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    guided = classifier_free_guidance(model_fn, 4.0, {"emb": uncond})
    out = guided(x, torch.ones(1), emb=cond)
    assert out.item() == pytest.approx(1 + 4 * (3 - 1))
    assert calls == [2]  # one batched call
    # different text lengths cannot be stacked: two calls, same combination
    guided = classifier_free_guidance(model_fn, 4.0, {"emb": torch.tensor([[1.0]])})
    assert guided(x, torch.ones(1), emb=cond).item() == pytest.approx(9.0)
    assert calls == [2, 1, 1]
    assert classifier_free_guidance(model_fn, 1.0, {"emb": uncond}) is model_fn
