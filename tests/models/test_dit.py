"""DiT properties that need no reference implementation (parity lives in test_dit_parity.py)."""

import pytest
import torch

from videoforge.config import DiTConfig
from videoforge.models import build_dit
from videoforge.models.rope import apply_rope, rope_frequencies


def small_config(**kw) -> DiTConfig:
    base = dict(hidden_size=32, heads_num=2, mm_double_blocks_depth=1, mm_single_blocks_depth=1,
                rope_dim_list=(4, 6, 6), text_states_dim=24, text_states_dim_2=20)
    return DiTConfig(**{**base, **kw})


def inputs(cfg: DiTConfig, b=2, t=2, h=4, w=6, l=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, cfg.in_channels, t, h, w, generator=g)
    mask = torch.ones(b, l, dtype=torch.long)
    mask[1, 2:] = 0
    return (x, torch.tensor([700.0, 30.0][:b]), torch.randn(b, l, cfg.text_states_dim, generator=g), mask,
            torch.randn(b, cfg.text_states_dim_2, generator=g), torch.full((b,), 6016.0))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_dit(small_config()).eval()
    with torch.no_grad():  # non-trivial modulation and gates everywhere
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return m


def test_rope_depends_only_on_relative_position():
    dims = (4, 6, 6)
    cos, sin = rope_frequencies((5, 6, 7), dims, theta=256.0)
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)

    def score(pos_q, pos_k):
        iq = pos_q[0] * 42 + pos_q[1] * 7 + pos_q[2]
        ik = pos_k[0] * 42 + pos_k[1] * 7 + pos_k[2]
        rq = apply_rope(q, cos[iq : iq + 1], sin[iq : iq + 1])
        rk = apply_rope(k, cos[ik : ik + 1], sin[ik : ik + 1])
        return (rq * rk).sum().item()

    # the same offset (1, 2, -3) at two places scores the same; another offset does not
    assert score((1, 3, 4), (0, 1, 1)) == pytest.approx(score((4, 5, 6), (3, 3, 3)), abs=1e-5)
    assert score((1, 3, 4), (0, 1, 1)) != pytest.approx(score((1, 3, 4), (0, 1, 2)), abs=1e-3)


def test_rope_rotates_interleaved_pairs_like_complex_multiplication():
    cos, sin = rope_frequencies((2, 3, 3), (4, 6, 6), theta=256.0)
    x = torch.randn(1, cos.shape[0], 1, 16)
    ref = torch.view_as_real(torch.view_as_complex(x.unflatten(-1, (-1, 2))) * torch.polar(
        torch.ones_like(cos[:, ::2]), torch.atan2(sin[:, ::2], cos[:, ::2]))[None, :, None]).flatten(-2)
    torch.testing.assert_close(apply_rope(x, cos, sin), ref, atol=1e-5, rtol=1e-5)
    # axis order is [t | h | w]: token 1 differs from token 0 only in w, so only the w channels rotate
    assert torch.equal(cos[0, :10], cos[1, :10]) and not torch.equal(cos[0, 10:], cos[1, 10:])


def test_padded_text_tokens_do_not_change_the_output(model):
    x, t, txt, mask, pooled, g = inputs(model.config)
    with torch.no_grad():
        out = model(x, t, txt, mask, pooled, g)
        txt2 = txt.clone()
        txt2[1, 2:] = torch.randn_like(txt2[1, 2:]) * 10
        out2 = model(x, t, txt2, mask, pooled, g)
        txt3 = txt.clone()
        txt3[1, 1] += 1.0  # a valid token does change it
        out3 = model(x, t, txt3, mask, pooled, g)
    assert out.shape == x.shape
    torch.testing.assert_close(out, out2, rtol=0, atol=0)
    assert not torch.allclose(out[1], out3[1])


def test_text_padded_past_the_longest_prompt_changes_nothing(model):
    x, t, txt, mask, pooled, g = inputs(model.config)  # row 0 uses all 5 positions, row 1 two
    tail = 7  # positions that are padding in every row: the forward drops them
    long_txt = torch.cat([txt, torch.randn(2, tail, txt.shape[-1]) * 10], 1)
    long_mask = torch.cat([mask, torch.zeros(2, tail, dtype=mask.dtype)], 1)
    with torch.no_grad():
        out = model(x, t, txt, mask, pooled, g)
        torch.testing.assert_close(model(x, t, long_txt, long_mask, pooled, g), out, rtol=1e-5, atol=1e-5)
        # row 1 alone keeps two positions; with row 0's prompt beside it, it gets the same answer
        torch.testing.assert_close(model(x[1:], t[1:], long_txt[1:], long_mask[1:], pooled[1:], g[1:]), out[1:],
                                   rtol=1e-5, atol=1e-5)


def test_token_replace_modulates_first_frame_with_time_zero():
    torch.manual_seed(0)
    t2v = build_dit(small_config()).eval()
    i2v = build_dit(small_config(i2v_condition_type="token_replace")).eval()
    i2v.load_state_dict(t2v.state_dict())  # the release's I2V has exactly the T2V keys
    x, t, txt, mask, pooled, g = inputs(t2v.config)
    with torch.no_grad():
        a, b = t2v(x, t, txt, mask, pooled, g), i2v(x, t, txt, mask, pooled, g)
        # at t == 0 the first-frame vector equals the normal one up to the guidance term
        i2v.guidance_in = None
        t2v.guidance_in = None
        zero = torch.zeros_like(t)
        c, d = t2v(x, zero, txt, mask, pooled), i2v(x, zero, txt, mask, pooled)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(c, d, atol=1e-5, rtol=1e-5)


def test_bad_shapes_raise_clear_errors(model):
    x, t, txt, mask, pooled, g = inputs(model.config)
    with pytest.raises(ValueError, match="divisible by the patch size"):
        model(x[..., :5], t, txt, mask, pooled, g)
    with pytest.raises(ValueError, match=r"\[B, 16, T, H, W\]"):
        model(x[:, :3], t, txt, mask, pooled, g)
    with pytest.raises(ValueError, match="text_states"):
        model(x, t, txt[..., :8], mask, pooled, g)
    with pytest.raises(ValueError, match="guidance"):
        model(x, t, txt, mask, pooled, None)


def test_meta_build_allocates_nothing():
    m = build_dit(small_config(), device="meta")
    assert all(p.is_meta for p in m.parameters())
    assert m.config.hidden_size == 32
