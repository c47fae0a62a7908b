import numpy as np
import pytest
import torch

from videoforge.pipelines.image_to_video import (
    ImageToVideoPipeline,
    closest_bucket,
    load_image,
    resize_center_crop,
    resolution_base,
    resolution_buckets,
)

MODEL = dict(out_channels=16, num_attention_heads=2, attention_head_dim=16, num_layers=1, num_single_layers=1,
             num_refiner_layers=1, patch_size=2, patch_size_t=1, text_embed_dim=24, pooled_projection_dim=16,
             rope_axes_dim=(4, 6, 6))
VARIANTS = {
    "token_replace": dict(in_channels=16, guidance_embeds=True, image_condition_type="token_replace"),
    "latent_concat": dict(in_channels=33, guidance_embeds=False, image_condition_type="latent_concat"),
}


def test_release_buckets():
    b = resolution_buckets(960)
    assert len(b) == 91 and b[0] == (1920, 480) and b[-1] == (480, 1920) and (960, 960) in b
    assert all(h % 32 == 0 and w % 32 == 0 and (h // 32) * (w // 32) <= 900 and max(h, w) / min(h, w) <= 4 for h, w in b)
    assert closest_bucket(1000, 1000, b) == (960, 960)
    h, w = closest_bucket(720, 1280, b)
    assert abs(h / w - 720 / 1280) < 0.03 and h < w
    assert resolution_base("540p") == 720 and resolution_base("64") == 64 and resolution_base(96) == 96
    with pytest.raises(ValueError, match="multiple of 32"):
        resolution_base(100)
    assert resolution_buckets(64) == [(128, 32), (96, 32), (64, 32), (64, 64), (32, 64), (32, 96), (32, 128)]


def test_resize_center_crop_and_load_image(tmp_path):
    img = np.zeros((60, 100, 3), np.uint8)
    img[:, 20:80] = 255  # a bright centre band, black sides
    out = resize_center_crop(img, 32, 32)
    assert out.shape == (3, 32, 32) and out.min() >= -1 and out.max() <= 1
    assert out[:, :, 16].mean() > 0.9  # centre crop keeps the band; short side filled, nothing padded
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), img[..., ::-1])
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), img)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="RGB uint8"):
        load_image(np.zeros((4, 4), np.uint8))


@pytest.fixture(scope="module", params=list(VARIANTS))
def shared(request, tmp_path_factory):
    from diffusers import AutoencoderKLHunyuanVideo, HunyuanVideoTransformer3DModel

    from videoforge.models import load_dit, load_vae

    torch.manual_seed(0)
    ref = HunyuanVideoTransformer3DModel(**MODEL, **VARIANTS[request.param]).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.2)
    vae = AutoencoderKLHunyuanVideo(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4).eval()
    folder = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(folder / "transformer")
    vae.save_pretrained(folder / "vae")
    return request.param, ref, vae, load_dit(folder / "transformer").eval(), load_vae(folder / "vae").eval()


def _text():
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(1, 7, dtype=torch.long)
    mask[0, 5:] = 0
    return torch.randn(1, 7, 24, generator=g), mask, torch.randn(1, 16, generator=g)


@pytest.mark.parity
def test_i2v_trajectory_matches_diffusers(shared):
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoImageToVideoPipeline
    from PIL import Image

    kind, ref, ref_vae, dit, vae = shared
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    states, mask, pooled = _text()
    text = dict(prompt_embeds=states, prompt_attention_mask=mask, pooled_prompt_embeds=pooled)
    pipe = ImageToVideoPipeline(dit, vae)
    # diffusers always starts from 0.999 noise + 0.001 image latent: the release's stability mode
    ours = pipe(image, resolution=64, num_frames=9, num_inference_steps=4, guidance_scale=6.0, flow_shift=7.0,
                stability=True, seed=3, output_type="latent", **text)
    noise = torch.randn((1, 16, 3, 8, 8), generator=torch.Generator().manual_seed(3))
    expected = HunyuanVideoImageToVideoPipeline(
        text_encoder=None, tokenizer=None, transformer=ref, vae=ref_vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=None, tokenizer_2=None, image_processor=None,
    )(image=image, latents=noise, height=64, width=64, num_frames=9, num_inference_steps=4, guidance_scale=6.0,
      output_type="latent", **text).frames
    assert ours.shape == expected.shape == ((1, 16, 3, 8, 8) if kind == "token_replace" else (1, 16, 2, 8, 8))
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-4)
    # token replace: the first latent frame is the clean image latent
    if kind == "token_replace":
        z = vae.encode(resize_center_crop(np.asarray(image), 64, 64)[None, :, None]).mode() * vae.config.scaling_factor
        torch.testing.assert_close(ours[:, :, :1], z, rtol=0, atol=1e-5)


def test_i2v_video_output_takes_the_bucket_size(shared):
    kind, _, _, dit, vae = shared
    states, mask, pooled = _text()
    pipe = ImageToVideoPipeline(dit, vae)
    image = np.full((50, 100, 3), 128, np.uint8)  # 1:2 -> the (32, 64) bucket at base 64
    out = pipe(image, prompt_embeds=states, prompt_attention_mask=mask, pooled_prompt_embeds=pooled, resolution=64,
               num_frames=5, num_inference_steps=1, seed=0)[0]
    # latent_concat drops the first latent frame (4 decoded frames), as released
    assert out.frames.shape == ((5 if kind == "token_replace" else 1), 32, 64, 3)
    with pytest.raises(ValueError, match="resolution must be one of"):
        pipe(image, prompt_embeds=states, prompt_attention_mask=mask, pooled_prompt_embeds=pooled, resolution="4k")
