"""The VAE trainer: our LPIPS module, the 3D patch discriminator, and a short run whose L1 falls."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from videoforge.train.losses import LPIPS, PatchDiscriminator3D, hinge_d_loss, video_lpips
from videoforge.train.recipe import recipe_from_dict
from videoforge.train.sources import vae_config
from videoforge.train.vae_trainer import train_vae
from videoforge.train.trainer import RunOptions


def test_lpips_loads_user_weights_and_measures_distance(tmp_path):
    torch.manual_seed(0)
    ref = LPIPS()
    for k in range(5):  # LPIPS heads are non-negative
        getattr(ref, f"lin{k}").weight.data.abs_()
    state = {k: v for k, v in ref.state_dict().items()}
    # the lpips package's head names load too
    state = {(k.replace("lin", "lin").replace(".weight", ".model.1.weight") if k.startswith("lin") else k): v for k, v in state.items()}
    save_file(state, str(tmp_path / "lpips.safetensors"))
    m = LPIPS.from_file(tmp_path / "lpips.safetensors")
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(m(a, b), ref(a, b))
    assert torch.allclose(m(a, a), torch.zeros(2), atol=1e-6)
    assert (m(a, b) > 0).all() and m(a, a + 0.01 * (b - a)).mean() < m(a, b).mean()
    assert video_lpips(m, a[:, :, None].expand(2, 3, 3, 32, 32), b[:, :, None].expand(2, 3, 3, 32, 32)).shape == ()
    save_file({"features.0.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    try:
        LPIPS.from_file(tmp_path / "bad.safetensors")
    except (ValueError, RuntimeError) as e:
        assert "bad.safetensors" in str(e) or "size mismatch" in str(e)
    else:
        raise AssertionError("a wrong LPIPS file must be rejected")


def test_patch_discriminator_and_hinge():
    d = PatchDiscriminator3D(channels=8, layers=2)
    logits = d(torch.randn(2, 3, 5, 32, 32))
    assert logits.shape == (2, 1, 5, 8, 8)
    assert hinge_d_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)).item() == 0.0


def test_tiny_vae_training_reduces_l1(squares, tmp_path):
    r = recipe_from_dict({
        "task": "vae", "model": {"preset": "tiny"},
        "optim": {"warmup_steps": 2, "ema_decay": 0.9},
        "vae_loss": {"lpips": 0.0, "adversarial": 0.05, "disc_start": 8, "tiled_ratio": 0.3,
                     "tile_sample_min_size": 32, "tile_sample_min_tsize": 16},
        "run": {"checkpoint_every": 0},
        "stages": [{"steps": 16, "lr": 3e-3, "anchors": [32], "frames": [9], "frame_stride": [1, 8],
                    "token_budget": 32, "max_batch": 2}],
    })
    summary = train_vae(r, RunOptions(out=tmp_path, data=str(squares), progress=False))
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert summary["step"] == 16 and len(rows) == 16
    assert any(row["tiled"] for row in rows) and not all(row["tiled"] for row in rows)
    assert "adv" in rows[-1] and "d_loss" in rows[-1] and "adv" not in rows[0]
    first, last = sum(r["l1"] for r in rows[:4]) / 4, sum(r["l1"] for r in rows[-4:]) / 4
    print(f"VAE L1 first4 {first:.4f} last4 {last:.4f}")
    assert last < 0.7 * first
    from videoforge.models import load_vae

    assert load_vae(tmp_path / "final" / "vae").config.latent_channels == 16
    assert (tmp_path / "final" / "vae_ema" / "config.json").is_file()


def test_mean_autoencoder_keeps_fixed_variance_and_fits_scaling_factor(squares, tmp_path):
    from videoforge.models import load_vae
    from videoforge.train.datasets import load_items, load_pixels
    from videoforge.train.buckets import Bucket

    r = recipe_from_dict({
        "task": "vae", "optim": {"ema_decay": 0.5},
        "model": {"preset": "tiny", "vae_config": {"block_out_channels": [8, 16, 16, 16], "norm_num_groups": 4}},
        "vae_loss": {"l2": 1.0, "lpips": 0.0, "adversarial": 0.0, "kl": 0.0, "sample_posterior": False,
                     "init_logvar": -6.0, "tiled_ratio": 0.0, "scaling_batches": 2},
        "run": {"checkpoint_every": 0},
        "stages": [{"steps": 3, "lr": 1e-3, "anchors": [32], "frames": [1, 9], "token_budget": 32, "max_batch": 2}],
    })
    summary = train_vae(r, RunOptions(out=tmp_path, data=str(squares), progress=False))
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(abs(row["latent_std"] - torch.exp(torch.tensor(-3.0)).item()) < 1e-6 for row in rows)
    assert all("l2" in row for row in rows)
    vae = load_vae(tmp_path / "final" / "vae_ema")
    assert (vae.config.block_out_channels, vae.config.norm_num_groups) == ((8, 16, 16, 16), 4)
    assert vae.config.scaling_factor == summary["scaling_factor"]
    assert load_vae(tmp_path / "final" / "vae").config.scaling_factor == 0.476986  # raw weights: untouched
    # the factor scales the training data's posterior means to unit standard deviation
    items = load_items(squares)
    pixels = torch.stack([load_pixels(it, Bucket(32, 32, 9), torch.Generator().manual_seed(0)) for it in items])
    with torch.no_grad():
        std = (vae.encode(pixels).mean * vae.config.scaling_factor).std().item()
    assert 0.7 < std < 1.4
    r.model.vae_config = {"block_channels": [8]}
    with pytest.raises(ValueError, match="model.vae_config: unknown VAEConfig field"):
        train_vae(r, RunOptions(out=tmp_path / "bad", data=str(squares), progress=False))


def test_vae_config_overrides_take_fields_left_out_of_to_dict():
    from videoforge.config import preset
    from videoforge.train.recipe import config_with_overrides

    # to_dict drops pixel_shortcut and the latent statistics at their defaults; they still override
    cfg = config_with_overrides(preset("tiny").vae, {"pixel_shortcut": True, "latents_mean": [0.0] * 16,
                                                     "latents_std": [1.0] * 16}, "model.vae_config")
    assert cfg.pixel_shortcut and cfg.latents_std == (1.0,) * 16
    with pytest.raises(ValueError, match=r"unknown VAEConfig field\(s\) \['shortcut'\]"):
        config_with_overrides(preset("tiny").vae, {"shortcut": True}, "model.vae_config")


def test_foreground_mask_marks_what_differs_from_the_border():
    from videoforge.train.vae_trainer import foreground_mask

    video = torch.full((2, 3, 3, 16, 16), -0.5)
    video[0, 0, :, 4:8, 5:9] = 0.9  # a red square on frame 0..2 of the first clip
    video[1] = 0.3                  # an empty frame of another colour
    video[1, :, 1, 10:12, 2:4] = 0.35  # a difference below the threshold
    mask = foreground_mask(video)
    assert mask.shape == (2, 1, 3, 16, 16)
    assert mask[0, 0, :, 4:8, 5:9].eq(1).all() and mask[0].sum() == 3 * 16
    assert mask[1].sum() == 0


@pytest.mark.parametrize("concentrate", [False, True])
def test_decoder_only_fine_tune_keeps_the_latents(squares, tmp_path, concentrate):
    import copy

    from videoforge.models import build_vae, load_vae, save_vae
    from videoforge.models.vae import concentrate_temporal_taps
    from videoforge.config import VAEConfig

    torch.manual_seed(0)
    start = build_vae(VAEConfig(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=4))
    start.config.scaling_factor = 0.25
    save_vae(start, tmp_path / "start")
    r = recipe_from_dict({
        "task": "vae", "model": {"init": str(tmp_path / "start")}, "optim": {"ema_decay": 0.5},
        "vae_loss": {"l2": 1.0, "lpips": 0.0, "adversarial": 0.0, "kl": 0.0, "sample_posterior": False,
                     "train_encoder": False, "tiled_ratio": 0.0, "concentrate_temporal_taps": concentrate},
        "run": {"checkpoint_every": 0},
        "stages": [{"steps": 3, "lr": 1e-2, "anchors": [32], "frames": [1, 9], "token_budget": 32, "max_batch": 2}],
    })
    train_vae(r, RunOptions(out=tmp_path / "run", data=str(squares), progress=False))
    if concentrate:  # inflating needs trained image weights to start from
        with pytest.raises(ValueError, match="set model.init"):
            train_vae(recipe_from_dict({"task": "vae", "vae_loss": {"concentrate_temporal_taps": True}}),
                      RunOptions(out=tmp_path / "scratch", data=str(squares), progress=False))
    # with concentrated taps, the frozen encoder is the start's encoder with its taps concentrated
    expected = concentrate_temporal_taps(copy.deepcopy(start)) if concentrate else start
    assert concentrate == any(not torch.equal(expected.state_dict()[k], start.state_dict()[k]) for k in start.state_dict())
    for name in ("vae", "vae_ema"):
        tuned = load_vae(tmp_path / "run" / "final" / name)
        a, b = expected.state_dict(), tuned.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a if k.startswith(("encoder.", "quant_conv.")))
        assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))
        assert tuned.config.scaling_factor == 0.25  # a fine-tune keeps the factor its DiTs were trained with


def test_channel_statistics_give_each_latent_channel_unit_variance_once(squares, tmp_path):
    """vae_loss.channel_statistics after a run from model.init: the saved VAE carries per-channel
    statistics that bring the training data's latents to zero mean and unit std in every channel;
    a later run from that VAE keeps them (its DiTs were trained with them), as it keeps the factor."""
    from videoforge.config import VAEConfig
    from videoforge.models import build_vae, load_vae, save_vae
    from videoforge.models.vae import latents_to_model
    from videoforge.train.buckets import Bucket
    from videoforge.train.datasets import load_items, load_pixels

    torch.manual_seed(0)
    start = build_vae(VAEConfig(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=4))
    start.config.scaling_factor = 0.25
    save_vae(start, tmp_path / "start")

    def run(init, out):
        r = recipe_from_dict({
            "task": "vae", "model": {"init": str(init)}, "optim": {"ema_decay": 0.5},
            "vae_loss": {"l2": 1.0, "lpips": 0.0, "adversarial": 0.0, "kl": 0.0, "sample_posterior": False,
                         "train_encoder": False, "tiled_ratio": 0.0, "scaling_batches": 16, "channel_statistics": True},
            "run": {"checkpoint_every": 0},
            "stages": [{"steps": 2, "lr": 1e-3, "anchors": [32], "frames": [9], "token_budget": 32, "max_batch": 2}],
        })
        summary = train_vae(r, RunOptions(out=out, data=str(squares), progress=False))
        return summary, load_vae(out / "final" / "vae_ema")

    summary, vae = run(tmp_path / "start", tmp_path / "run")
    assert vae.config.scaling_factor == 0.25  # the factor stays; the statistics take over from it
    assert list(vae.config.latents_std) == pytest.approx(summary["latents_std"])
    assert load_vae(tmp_path / "run" / "final" / "vae").config.latents_std is None  # raw weights: untouched
    pixels = torch.stack([load_pixels(it, Bucket(32, 32, 9), torch.Generator().manual_seed(0)) for it in load_items(squares)])
    with torch.no_grad():
        z = vae.encode(pixels).mean
    raw_std = z.transpose(0, 1).flatten(1).std(1)
    assert raw_std.max() / raw_std.min() > 1.5  # the channels differ in spread to begin with
    scaled = latents_to_model(z, vae.config).transpose(0, 1).flatten(1)
    assert scaled.mean(1).abs().max() < 0.3 and ((scaled.std(1) > 0.7) & (scaled.std(1) < 1.4)).all()
    _, again = run(tmp_path / "run" / "final" / "vae_ema", tmp_path / "again")
    assert again.config.latents_std == vae.config.latents_std and again.config.latents_mean == vae.config.latents_mean
    with pytest.raises(ValueError, match="channel_statistics needs vae_loss.scaling_batches > 0"):
        recipe_from_dict({"task": "vae", "vae_loss": {"channel_statistics": True, "scaling_batches": 0}})


def test_a_vae_runs_mid_run_checkpoint_converts_to_its_vae(squares, tmp_path):
    """`videoforge convert RUN/checkpoints/step_N DST --to model-folder [--ema]` of a VAE run:
    step N's VAE (to screen a run before it ends), with the configured scaling factor (the fitted
    one exists only at the end)."""
    from safetensors.torch import load_file

    from videoforge.cli import main
    from videoforge.models import load_vae

    r = recipe_from_dict({
        "task": "vae", "optim": {"ema_decay": 0.5},
        "model": {"preset": "tiny", "vae_config": {"block_out_channels": [8, 16, 16, 16], "norm_num_groups": 4}},
        "vae_loss": {"l2": 1.0, "lpips": 0.0, "adversarial": 0.0, "kl": 0.0, "sample_posterior": False,
                     "tiled_ratio": 0.0, "scaling_batches": 2},
        "run": {"checkpoint_every": 2, "keep_checkpoints": 2},
        "stages": [{"steps": 4, "lr": 1e-3, "anchors": [32], "frames": [1, 9], "token_budget": 32, "max_batch": 2}],
    })
    run = tmp_path / "run"
    summary = train_vae(r, RunOptions(out=run, data=str(squares), progress=False))

    def weights(folder):
        return load_file(str(folder / "diffusion_pytorch_model.safetensors"))

    for step, ema in ((4, True), (4, False), (2, True)):
        out = tmp_path / f"v{step}{'-ema' if ema else ''}"
        argv = ["convert", str(run / "checkpoints" / f"step_{step:08d}"), str(out), "--to", "model-folder"]
        assert main(argv + (["--ema"] if ema else [])) == 0
        assert not (out / "transformer").exists()
        got, final = weights(out / "vae"), weights(run / "final" / ("vae_ema" if ema else "vae"))
        assert got.keys() == final.keys()
        same = all(torch.equal(got[k], final[k]) for k in final)
        assert same == (step == 4), f"step {step}, ema {ema}: the last checkpoint is the final state, an earlier one is not"
        vae = load_vae(out / "vae")
        assert vae.config.block_out_channels == (8, 16, 16, 16)
        assert vae.config.scaling_factor == vae_config(r).scaling_factor != summary["scaling_factor"]  # configured, not fitted
