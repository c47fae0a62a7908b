"""Behaviour of the causal VAE on its own: causality, frame mapping, shapes, errors, posterior."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from videoforge.config import VAEConfig, preset
from videoforge.models.vae import CausalConv3d, DiagonalGaussian, FrameCausalAttention, build_vae

REFERENCE_KEYS = Path(__file__).resolve().parents[1] / "data" / "reference" / "vae_keys.json"


@pytest.fixture(scope="module")
def tiny_vae():
    torch.manual_seed(0)
    return build_vae(preset("tiny").vae).eval()


def test_release_config_keys_and_shapes_on_meta():
    vae = build_vae(VAEConfig(), device="meta")
    assert all(p.is_meta for p in vae.parameters())
    want = json.loads(REFERENCE_KEYS.read_text())["state_dict"]
    got = {k: list(v.shape) for k, v in vae.state_dict().items()}
    assert got == want
    assert sum(p.numel() for p in vae.parameters()) == 246_478_803


def test_build_vae_dtype():
    vae = build_vae(preset("tiny").vae, dtype=torch.bfloat16)
    assert {p.dtype for p in vae.parameters()} == {torch.bfloat16}
    assert vae.config == preset("tiny").vae


@pytest.mark.parametrize("stride", [1, (2, 2, 2)])
def test_causal_conv_is_causal(stride):
    torch.manual_seed(0)
    conv = CausalConv3d(4, 6, 3, stride=stride)
    x = torch.randn(1, 4, 9, 8, 8)
    y = conv(x)
    k = 4
    x2 = x.clone()
    x2[:, :, k] += 1.0
    y2 = conv(x2)
    t_stride = 1 if stride == 1 else stride[0]
    first_affected = -(-k // t_stride)  # output j sees padded frames up to j*stride + 2, i.e. input frames <= j*stride
    torch.testing.assert_close(y2[:, :, :first_affected], y[:, :, :first_affected], atol=0, rtol=0)
    assert (y2[:, :, first_affected] - y[:, :, first_affected]).abs().max() > 1e-3


def test_causal_conv_replicates_first_frame_and_borders():
    """Replicate padding: a constant input gives a constant output (zero padding would not)."""
    conv = CausalConv3d(2, 3, 3)
    x = torch.full((1, 2, 3, 5, 5), 0.7)
    y = conv(x)
    assert y.shape == (1, 3, 3, 5, 5)
    torch.testing.assert_close(y, y[:, :, :1, :1, :1].expand_as(y))


@pytest.mark.parametrize("stride", [1, (1, 2, 2), (2, 2, 2)])
def test_causal_conv_on_one_frame_is_the_3d_conv(stride):
    """An image takes the folded 2D path; it must equal the 3D conv over the replicate-padded frame,
    in the output and in the gradients of the input and the weights."""
    torch.manual_seed(0)
    conv = CausalConv3d(4, 6, 3, stride=stride)
    x = torch.randn(2, 4, 1, 10, 10, requires_grad=True)
    y = conv(x)
    y.square().sum().backward()
    grads = (x.grad.clone(), conv.conv.weight.grad.clone())
    x.grad, conv.conv.weight.grad = None, None
    want = conv.conv(torch.nn.functional.pad(x, conv.padding, mode="replicate"))
    want.square().sum().backward()
    assert y.shape == want.shape and y.shape[2] == 1
    torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[0], x.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[1], conv.conv.weight.grad, atol=1e-4, rtol=1e-5)


def test_mid_attention_is_frame_causal_but_groupnorm_is_not():
    """The attention mask is block-causal by frame; only the GroupNorm statistics look ahead."""
    torch.manual_seed(0)
    attn = FrameCausalAttention(8, groups=2)
    x = torch.randn(1, 8, 3, 2, 2)
    x2 = x.clone()
    x2[:, :, 2] += 5.0 * torch.randn(8, 2, 2)
    assert (attn(x2)[:, :, 0] - attn(x)[:, :, 0]).abs().max() > 1e-3
    # With GroupNorm statistics fixed (identity norm), earlier frames ignore later ones.
    attn.group_norm = torch.nn.Identity()
    torch.testing.assert_close(attn(x2)[:, :, :2], attn(x)[:, :, :2], atol=0, rtol=0)


@torch.no_grad()
def test_encoder_is_not_strictly_causal(tiny_vae):
    """GroupNorm statistics span the whole clip, so a late frame changes the first latent."""
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    x2 = x.clone()
    x2[:, :, 8] = -x2[:, :, 8]
    z, z2 = tiny_vae.encode(x).mean, tiny_vae.encode(x2).mean
    assert (z[:, :, 0] - z2[:, :, 0]).abs().max() > 1e-5


@torch.no_grad()
def test_image_is_a_one_frame_video(tiny_vae):
    image = torch.rand(2, 3, 1, 16, 24) * 2 - 1
    z = tiny_vae.encode(image).mode()
    assert z.shape == (2, 16, 1, 2, 3)
    assert tiny_vae.decode(z).shape == (2, 3, 1, 16, 24)


@pytest.mark.parametrize("k", [1, 2, 3])
@torch.no_grad()
def test_frames_4k_plus_1_map_to_k_plus_1_latents(tiny_vae, k):
    x = torch.rand(1, 3, 4 * k + 1, 8, 8) * 2 - 1
    z = tiny_vae.encode(x).sample(torch.Generator().manual_seed(0))
    assert z.shape == (1, 16, k + 1, 1, 1)
    assert tiny_vae.decode(z).shape == (1, 3, 4 * k + 1, 8, 8)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 3, 16, 16), r"image is a 1-frame video.*unsqueeze\(2\)"),
        ((1, 4, 5, 16, 16), r"expected 3 channels"),
        ((1, 3, 4, 16, 16), r"4k\+1.*got 4; use 1 or 5 frames"),
        ((1, 3, 7, 16, 16), r"4k\+1.*got 7; use 5 or 9 frames"),
        ((1, 3, 5, 20, 16), r"multiples of 8, got 20x16"),
    ],
)
def test_bad_video_shapes_raise(tiny_vae, shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_vae.encode(torch.zeros(shape))


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 16, 2, 2), r"expected latents \[B, 16, T, h, w\]"),
        ((1, 4, 2, 2, 2), r"expected 16 latent channels.*got 4"),
        ((1, 16, 0, 2, 2), r"at least one frame"),
    ],
)
def test_bad_latent_shapes_raise(tiny_vae, shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_vae.decode(torch.zeros(shape))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tile_sample_min_size": 100}, r"multiple of 8"),
        ({"tile_sample_min_tsize": 8}, r"tile_sample_min_tsize=8 .* does not tile seamlessly"),
        ({"tile_overlap_factor": 1.0}, r"\[0, 1\)"),
    ],
)
def test_bad_tiling_settings_raise(tiny_vae, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_vae.enable_tiling(**kwargs)
    assert tiny_vae.tiling is None


def test_posterior():
    mean = torch.randn(2, 4, 1, 2, 2)
    logvar = torch.randn(2, 4, 1, 2, 2).clamp(-3, 3)
    logvar[0, 0, 0, 0, 0] = 50.0  # clamped to 20
    post = DiagonalGaussian(torch.cat([mean, logvar], dim=1))
    assert post.mode() is post.mean
    assert post.logvar.max() == 20.0
    torch.testing.assert_close(post.std, torch.exp(0.5 * post.logvar))
    a, b = post.sample(torch.Generator().manual_seed(7)), post.sample(torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.equal(a, post.sample(torch.Generator().manual_seed(8)))
    standard = DiagonalGaussian(torch.zeros(2, 8, 1, 2, 2))
    torch.testing.assert_close(standard.kl(), torch.zeros(2))
    assert (post.kl() > 0).all()



@torch.no_grad()
def test_concentrated_temporal_taps_keep_images_and_make_clip_latents_frame_codes():
    import copy

    from videoforge.models.vae import concentrate_temporal_taps

    torch.manual_seed(0)
    vae = build_vae(preset("tiny").vae).eval()
    inflated = concentrate_temporal_taps(copy.deepcopy(vae))
    convs = [m for m in inflated.modules() if isinstance(m, CausalConv3d) and m.conv.kernel_size[0] > 1]
    assert convs and all(m.conv.weight[:, :, :-1].abs().max() == 0 for m in convs)
    # each conv now reads one frame: output t of a stride-1 conv (2t of a time-strided one) only
    x = torch.randn(1, convs[0].conv.in_channels, 9, 8, 8)
    y = convs[0](x)
    x2 = x.clone()
    x2[:, :, 4] += 1.0
    changed = (convs[0](x2) - y).abs().amax(dim=(0, 1, 3, 4)) > 0
    assert changed.tolist() == [t == 4 for t in range(9)]
    image = torch.rand(1, 3, 1, 32, 32) * 2 - 1
    z = inflated.encode(image).mean
    torch.testing.assert_close(z, vae.encode(image).mean, atol=1e-4, rtol=1e-4)  # images: as before
    torch.testing.assert_close(inflated.decode(z), vae.decode(z), atol=1e-4, rtol=1e-4)
    # a clip of three different pictures at frames 0, 1-4 and 5-8: latent k codes picture k
    pictures = torch.rand(3, 3, 1, 32, 32) * 2 - 1
    clip = torch.cat([pictures[0], pictures[1].expand(-1, 4, -1, -1), pictures[2].expand(-1, 4, -1, -1)], dim=1)[None]
    latents = inflated.encode(clip).mean[0]
    codes = [inflated.encode(p[None]).mean[0, :, 0] for p in pictures]
    for k in range(3):
        dist = [float((latents[:, k] - c).norm()) for c in codes]
        assert min(range(3), key=dist.__getitem__) == k, dist


def _shortcut_vae() -> torch.nn.Module:
    from dataclasses import replace

    torch.manual_seed(0)
    return build_vae(replace(preset("tiny").vae, pixel_shortcut=True)).eval()


@torch.no_grad()
def test_pixel_shortcut_untrained_vae_is_the_thumbnail_codec():
    from videoforge.models.vae import keyframe_thumbnails

    vae = _shortcut_vae()
    # a checkerboard of 4x4-pixel blocks, shifted by a block each frame
    y, x = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    frames = [((((x // 4) + (y // 4) + k) % 2) * 1.2 - 0.6).expand(3, -1, -1) for k in range(9)]
    video = torch.stack(frames, dim=1)[None]
    z = vae.encode(video).mean
    thumbs = keyframe_thumbnails(video, vae.config)
    assert thumbs.shape == (1, 12, 3, 4, 4)
    torch.testing.assert_close(z[:, :12], thumbs)
    assert z[:, 12:].abs().max() == 0
    # the 4x4-block average of each keyframe's red channel, sub-pixel (0, 0) of the 2x2 fold
    torch.testing.assert_close(thumbs[0, 0, 1], video[0, 0, 4, ::8, ::8])
    # both networks start as zero residuals: flat frames come back exactly (bicubic keeps constants)
    flat = torch.full((1, 3, 5, 16, 16), 0.3)
    zf = torch.zeros(1, 16, 2, 2, 2)
    zf[:, :12] = keyframe_thumbnails(flat, vae.config)
    torch.testing.assert_close(vae.decode(zf), flat, atol=1e-5, rtol=0)


@torch.no_grad()
def test_pixel_shortcut_fold_1_carries_each_blocks_mean_colour():
    from dataclasses import replace

    from videoforge.models.vae import keyframe_thumbnails

    torch.manual_seed(0)
    vae = build_vae(replace(preset("tiny").vae, pixel_shortcut=True, pixel_shortcut_fold=1)).eval()
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    z = vae.encode(video).mean
    # three channels: each keyframe's 8x8-block means, the rest of the latent the (zero) encoder's
    expected = torch.nn.functional.avg_pool2d(video[0, :, ::4].transpose(0, 1), 8).transpose(0, 1)[None]
    torch.testing.assert_close(keyframe_thumbnails(video, vae.config), expected)
    torch.testing.assert_close(z[:, :3], expected)
    assert z[:, 3:].abs().max() == 0
    # decoded: the block means upsampled bicubically (frame 0 is keyframe 0)
    up = torch.nn.functional.interpolate(expected[:, :, 0], scale_factor=8, mode="bicubic", align_corners=False)
    torch.testing.assert_close(vae.decode(z)[:, :, 0], up, atol=1e-5, rtol=0)


@torch.no_grad()
def test_pixel_shortcut_interpolates_between_keyframes():
    from videoforge.models.vae import thumbnail_video

    config = VAEConfig(pixel_shortcut=True)
    z = torch.zeros(1, 16, 3, 2, 2)
    z[:, :12, 1], z[:, :12, 2] = 1.0, -1.0
    video = thumbnail_video(z, config)
    assert video.shape == (1, 3, 9, 16, 16)
    means = video.mean(dim=(0, 1, 3, 4))
    torch.testing.assert_close(means, torch.tensor([0, 0.25, 0.5, 0.75, 1, 0.5, 0, -0.5, -1.0]))
    torch.testing.assert_close(thumbnail_video(z[:, :, :1], config), video[:, :, :1])  # an image: its keyframe


def test_pixel_shortcut_config_is_checked_and_round_trips():
    cfg = VAEConfig(pixel_shortcut=True)
    assert VAEConfig.from_dict(cfg.to_dict()).pixel_shortcut
    assert "pixel_shortcut" not in VAEConfig().to_dict()  # the release's config.json is unchanged
    with pytest.raises(ValueError, match=">= 12 latent"):
        VAEConfig(latent_channels=8, pixel_shortcut=True)
    assert "pixel_shortcut_fold" not in cfg.to_dict()  # at its default: earlier shortcut configs read as written
    one = VAEConfig(pixel_shortcut=True, pixel_shortcut_fold=1, latent_channels=8)  # 3 channels suffice
    assert VAEConfig.from_dict(one.to_dict()) == one and one.to_dict()["pixel_shortcut_fold"] == 1
    with pytest.raises(ValueError, match="fold >= 1 that divides the spatial compression ratio \\(got fold 3, ratio 8\\)"):
        VAEConfig(pixel_shortcut=True, pixel_shortcut_fold=3)
