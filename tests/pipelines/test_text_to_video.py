import numpy as np
import pytest
import torch

from videoforge.models import build_dit, build_vae
from videoforge.config import DiTConfig
from videoforge.pipelines.model_folder import RELEASE_NEGATIVE_PROMPT, GenerationDefaults
from videoforge.pipelines.sizes import check_size, nearest_release_size, parse_size
from videoforge.pipelines.text_to_video import TextToVideoPipeline

from videoforge.config import VAEConfig


def tiny_vae_config() -> VAEConfig:
    return VAEConfig(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4)

TINY_DIFFUSERS = dict(
    in_channels=16, out_channels=16, num_attention_heads=2, attention_head_dim=16, num_layers=1, num_single_layers=1,
    num_refiner_layers=1, patch_size=2, patch_size_t=1, text_embed_dim=24, pooled_projection_dim=16,
    rope_axes_dim=(4, 6, 6), guidance_embeds=True,
)


@pytest.fixture(scope="module")
def shared_weights(tmp_path_factory):
    """A tiny diffusers HunyuanVideoTransformer3DModel with every parameter random, saved, and
    the same weights loaded through our `load_dit`."""
    from diffusers import HunyuanVideoTransformer3DModel

    from videoforge.models import load_dit

    torch.manual_seed(0)
    ref = HunyuanVideoTransformer3DModel(**TINY_DIFFUSERS).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.2)
    folder = tmp_path_factory.mktemp("diffusers-dit") / "transformer"
    ref.save_pretrained(folder)
    ours = load_dit(folder, device="cpu", dtype=torch.float32).eval()
    return ref, ours


def _text(batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(batch, 7, 24, generator=g)
    mask = torch.ones(batch, 7, dtype=torch.long)
    mask[-1, 4:] = 0  # last prompt shorter: padded tokens must be masked identically
    return states, mask, torch.randn(batch, 16, generator=g)


def _diffusers_pipe(ref, shift):
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline

    return HunyuanVideoPipeline(
        text_encoder=None, tokenizer=None, transformer=ref, vae=None,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=shift), text_encoder_2=None, tokenizer_2=None,
    )


@pytest.mark.parity
@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_trajectory_matches_diffusers(shared_weights, cfg_scale):
    ref, ours = shared_weights
    pipe = TextToVideoPipeline(ours, build_vae(tiny_vae_config()))
    states, mask, pooled = _text()
    neg_states, neg_mask, neg_pooled = _text(seed=2)
    size = dict(height=32, width=48, num_frames=9, num_inference_steps=5, guidance_scale=6.0)
    negative = dict(negative_prompt_embeds=neg_states, negative_prompt_attention_mask=neg_mask,
                    negative_pooled_prompt_embeds=neg_pooled)
    latents = pipe(prompt_embeds=states, prompt_attention_mask=mask, pooled_prompt_embeds=pooled, seed=3,
                   flow_shift=7.0, cfg_scale=cfg_scale, output_type="latent", **negative, **size)
    assert latents.shape == (2, 16, 3, 4, 6) and latents.dtype == torch.float32
    # the seed's noise: float32 randn from a seeded CPU generator, in the latent shape
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(3))
    expected = _diffusers_pipe(ref, 7.0)(
        prompt_embeds=states, prompt_attention_mask=mask, pooled_prompt_embeds=pooled, latents=noise,
        true_cfg_scale=cfg_scale, output_type="latent", **negative, **size,
    ).frames
    assert (expected - noise).abs().mean() > 0.1  # the trajectory went somewhere
    torch.testing.assert_close(latents, expected, rtol=0, atol=1e-4)


def test_seed_latents_and_guidance_inputs(shared_weights):
    _, ours = shared_weights
    pipe = TextToVideoPipeline(ours, build_vae(tiny_vae_config()),
                               defaults=GenerationDefaults(height=16, width=16, num_frames=5, num_inference_steps=2))
    states, mask, pooled = _text()
    text = dict(prompt_embeds=states, prompt_attention_mask=mask, pooled_prompt_embeds=pooled, output_type="latent")
    a, b, c = (pipe(seed=s, **text) for s in (5, 5, 6))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    noise = torch.randn(a.shape, generator=torch.Generator().manual_seed(5))
    assert torch.equal(pipe(latents=noise, **text), a)
    with pytest.raises(ValueError, match=r"latents must have shape \(2, 16, 2, 2, 2\)"):
        pipe(latents=noise[:1], **text)
    # the guidance input reaches the model: 6.0 vs its bf16 rounding (6016) differ
    assert not torch.equal(pipe(seed=5, guidance_scale=6.0, round_guidance_bf16=True, **text),
                           pipe(seed=5, guidance_scale=6.0, **text))
    with pytest.raises(ValueError, match="prompt_attention_mask"):
        pipe(prompt_embeds=states, seed=1)
    with pytest.raises(ValueError, match="no text encoders"):
        pipe(prompt="a cat", seed=1)


def test_cfg_default_negative_prompt_is_the_releases(shared_weights):
    _, ours = shared_weights
    seen = []

    class RecordingEncoders(torch.nn.Module):
        def encode(self, prompts, single_frame=False):
            from videoforge.models.text_encoders import TextEmbeddings

            seen.append((list(prompts), single_frame))
            s, m, p = _text(batch=len(prompts))
            return TextEmbeddings(s, m, p)

    pipe = TextToVideoPipeline(ours, build_vae(tiny_vae_config()), RecordingEncoders(),
                               defaults=GenerationDefaults(height=16, width=16, num_frames=1, num_inference_steps=1))
    pipe(prompt=["a", "b"], cfg_scale=2.0, seed=0, output_type="latent")
    assert seen == [(["a", "b"], True), ([RELEASE_NEGATIVE_PROMPT] * 2, True)]
    seen.clear()
    pipe(prompt="a", cfg_scale=1.0, seed=0, output_type="latent", num_frames=5)
    assert seen == [(["a"], False)]  # no negative branch without CFG; video template for > 1 frame


def test_size_rules():
    check_size(720, 1280, 129)
    check_size(32, 48, 1)
    with pytest.raises(ValueError, match=r"nearest valid size 720x1280 \(nearest released size 720x1280\)"):
        check_size(719, 1283, 129)
    with pytest.raises(ValueError, match="num_frames must be 4k\\+1 .* got 130: use 129 or 133"):
        check_size(720, 1280, 130)
    with pytest.raises(ValueError, match="multiples of 16.*; num_frames"):
        check_size(100, 100, 2)
    assert nearest_release_size(600, 800) == (624, 832)
    assert parse_size("544x960") == (544, 960)
    with pytest.raises(ValueError, match="HEIGHTxWIDTH"):
        parse_size("544")


def test_pipeline_rejects_bad_sizes_before_any_work():
    dit = build_dit(DiTConfig(hidden_size=32, heads_num=2, mm_double_blocks_depth=1, mm_single_blocks_depth=1,
                              rope_dim_list=(4, 6, 6), text_states_dim=24, text_states_dim_2=16, refiner_depth=1))
    pipe = TextToVideoPipeline(dit, build_vae(tiny_vae_config()))
    with pytest.raises(ValueError, match="nearest valid size 32x48"):
        pipe(prompt="x", height=30, width=50, num_frames=5)
    with pytest.raises(ValueError, match="output_type"):
        pipe(prompt="x", output_type="pil")
    with pytest.raises(ValueError, match="offload must be one of none, model"):
        TextToVideoPipeline(dit, build_vae(tiny_vae_config()), offload="sequential")


def test_defaults_from_meta():
    d = GenerationDefaults.from_meta({"steps": 8, "defaults": {"height": 64}, "fps": 12, "hashes": {"a": "b"}, "other": 1})
    assert (d.num_inference_steps, d.height, d.width, d.fps, d.flow_shift, d.guidance_scale) == (8, 64, 1280, 12, 7.0, 6.0)
    assert d.file_hashes == {"a": "b"}
    r = GenerationDefaults()
    assert (r.height, r.width, r.num_frames, r.num_inference_steps, r.flow_shift, r.guidance_scale, r.fps) == (
        720, 1280, 129, 50, 7.0, 6.0, 24)


def test_from_pretrained_video_and_offload(tiny_model_dir):
    pipe = TextToVideoPipeline.from_pretrained(tiny_model_dir, dtype=torch.float32, device="cpu")
    out = pipe("a red circle moving to the right", seed=0)
    assert out.frames.shape == (5, 32, 48, 3) and out.frames.dtype == np.uint8 and out.fps == 12
    assert out.frames.std() > 0
    many = pipe(["a red circle", "a blue square"], seed=0, num_frames=1, height=16, width=16)
    assert len(many) == 2 and many[0].frames.shape == (1, 16, 16, 3)
    offloaded = TextToVideoPipeline(pipe.dit, pipe.vae, pipe.text_encoders, pipe.defaults, device="cpu", offload="model")
    np.testing.assert_array_equal(offloaded("a red circle moving to the right", seed=0).frames, out.frames)


def test_decode_undoes_the_vaes_channel_statistics(tiny_model_dir):
    """A VAE with per-channel latent statistics: the DiT's latents are (z - mean) / std, so the
    pipeline decodes z = latents * std + mean, not latents / scaling_factor."""
    pipe = TextToVideoPipeline.from_pretrained(tiny_model_dir, dtype=torch.float32, device="cpu")
    latents = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    plain = pipe.decode(latents)
    torch.testing.assert_close(plain, pipe.vae.decode(latents / pipe.vae.config.scaling_factor))
    pipe.vae.config.latents_mean = tuple(0.2 * k for k in range(16))
    pipe.vae.config.latents_std = tuple(1.0 + 0.5 * k for k in range(16))
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(pipe.vae.config.latents_std).view(1, 16, 1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(pipe.decode(latents), pipe.vae.decode(latents * std + mean))
    assert not torch.allclose(pipe.decode(latents), plain)
