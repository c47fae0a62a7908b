import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from videoforge.train.buckets import Bucket
from videoforge.train.datasets import caption_text, frame_window, load_items, load_pixels, resize_crop, select_tiers
from videoforge.train.recipe import load_recipe, recipe_from_dict

CONFIGS = Path(__file__).parents[2] / "configs"


def test_folder_items_and_pixels(squares):
    items = load_items(squares)
    assert len(items) == 8 and all(it.kind == "video" and it.frames == 9 for it in items)
    assert items[0].caption.startswith("a ") and (items[0].height, items[0].width) == (64, 64)
    px = load_pixels(items[0], Bucket(32, 48, 5), torch.Generator().manual_seed(0), (1, 2))
    assert px.shape == (3, 5, 32, 48) and -1.0 <= px.min() and px.max() <= 1.0


def test_folder_without_captions_is_an_error(squares, tmp_path):
    (tmp_path / "a.mp4").write_bytes((squares / "clip00.mp4").read_bytes())
    with pytest.raises(ValueError, match="without a same-named .txt or .json caption"):
        load_items(tmp_path)


def test_manifest_tier_selection(tmp_path):
    img = np.zeros((40, 80, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    rows = [
        {"clip_id": "a", "kind": "image", "status": "kept", "path": "a.png", "width": 80, "height": 40, "num_frames": 1,
         "tiers": ["image-1"], "caption": json.dumps({"short_description": "black"})},
        {"clip_id": "b", "kind": "image", "status": "dropped", "path": "a.png", "width": 80, "height": 40, "num_frames": 1,
         "tiers": ["image-1"], "caption": json.dumps({"short_description": "x"})},
        {"clip_id": "c", "kind": "image", "status": "kept", "path": "a.png", "width": 80, "height": 40, "num_frames": 1,
         "tiers": ["image-2"], "caption": None},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "manifest.parquet")
    items = load_items(tmp_path / "manifest.parquet")
    assert [it.caption for it in items] == [{"short_description": "black"}]  # kept and captioned only
    assert select_tiers([it.tiers for it in items], ["image-1", "image-2"]) == [0]
    with pytest.raises(ValueError, match="video-256-65"):
        select_tiers([it.tiers for it in items], ["video-256-65"])
    assert select_tiers([None, None], ["image-1"]) == [0, 1]  # a plain folder has no tiers


def test_resize_crop_and_frame_window():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[:, 90:110] = 255  # a centred bar survives the centre crop
    out = resize_crop(frame, 32, 32)
    assert out.shape == (32, 32, 3) and out[:, 16].min() > 200 and out[:, 0].max() == 0
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        start, stride = frame_window(40, 9, (1, 8), g)
        assert 1 <= stride <= 4 and start + 8 * stride <= 39


def test_caption_dropout_and_structured_text():
    rng = np.random.default_rng(0)
    texts = [caption_text({"short_description": "a cat", "background": "a garden"}, rng, 0.25) for _ in range(400)]
    assert 0.18 < texts.count("") / 400 < 0.32
    assert all("cat" in t or "garden" in t for t in texts if t)
    assert caption_text("plain", rng, 0.0) == "plain"


def test_recipe_caption_fields_choose_the_training_text():
    caption = {"short_description": "a red circle", "dense_description": "A red circle sits in the middle.",
               "background": "a plain gray background", "lighting": "flat", "tags": ["red", "circle"]}
    d = recipe_from_dict({"data": {"caption_fields": {"short_description": 1.0, "dense_description": 0.0, "background": 0.0,
                                                       "lighting": 0.0, "tags": 0.0}}}).data
    rng = np.random.default_rng(0)
    assert {caption_text(caption, rng, 0.0, d.caption_mix) for _ in range(50)} == {"a red circle."}
    d = recipe_from_dict({"data": {"caption_fields": {"lighting": 0.0, "tags": 0.0}, "caption_permute": 0.0}}).data
    texts = [caption_text(caption, rng, 0.0, d.caption_mix) for _ in range(200)]
    assert not any("Lighting" in t or "Tags" in t for t in texts)
    # no shuffling: the short description, when kept, always comes first
    assert all(t.startswith("a red circle.") for t in texts if "a red circle." in t) and any("Background" in t for t in texts)
    with pytest.raises(ValueError, match="unknown field.*'colour'"):
        recipe_from_dict({"data": {"caption_fields": {"colour": 1.0}}})
    with pytest.raises(ValueError, match="tags must be a probability"):
        recipe_from_dict({"data": {"caption_fields": {"tags": 2.0}}})


def test_recipe_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="unknown key"):
        recipe_from_dict({"optim": {"learning_rate": 1}})
    with pytest.raises(ValueError, match="4k\\+1"):
        recipe_from_dict({"stages": [{"frames": [1, 16]}]})
    r = recipe_from_dict({"optim": {"warmup_steps": 10}, "stages": [{"steps": 5, "lr": 1.0}, {"steps": 5, "lr": 0.5}]})
    assert r.total_steps == 10 and r.stage_at(7)[0] == 1
    assert r.lr_at(0) == pytest.approx(0.1) and r.lr_at(9) == pytest.approx(0.5)


def test_recipe_numbers_are_checked_where_they_are_read(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("vae_loss:\n  kl: 1e-3\n  sample_posterior: true\nstages:\n  - steps: 5\n    lr: 2\n")
    r = load_recipe(path)  # YAML 1.1 reads `1e-3` as a string; a float field takes it as the number
    assert r.vae_loss.kl == 1e-3 and isinstance(r.stages[0].lr, float)
    with pytest.raises(ValueError, match="vae_loss.kl: expected float, got 'small'"):
        recipe_from_dict({"vae_loss": {"kl": "small"}})
    with pytest.raises(ValueError, match="stages\\[0\\].steps: expected int, got 2.5"):
        recipe_from_dict({"stages": [{"steps": 2.5}]})
    with pytest.raises(ValueError, match="sample_posterior: expected bool, got 'yes please'"):
        recipe_from_dict({"vae_loss": {"sample_posterior": "yes please"}})


def test_a_recipe_changes_only_what_differs_from_its_base(tmp_path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "base.yaml").write_text(
        "model: {preset: tiny, text_max_length: 48}\noptim: {warmup_steps: 100, ema_decay: 0.999}\n"
        "stages:\n  - {name: a, steps: 10, lr: 1.0e-3}\n  - {name: b, steps: 20, lr: 5.0e-4}\n")
    (tmp_path / "parts" / "mid.yaml").write_text("base: base.yaml\noptim: {warmup_steps: 200}\n")
    (tmp_path / "top.yaml").write_text("base: parts/mid.yaml\nmodel: {init: runs/x}\nstages:\n  - {name: c, steps: 5}\n")
    r = load_recipe(tmp_path / "top.yaml")
    # mappings merge key by key through the chain (each base relative to the file naming it) ...
    assert (r.model.preset, r.model.text_max_length, r.model.init) == ("tiny", 48, "runs/x")
    assert (r.optim.warmup_steps, r.optim.ema_decay) == (200, 0.999)
    # ... a list replaces the base's whole
    assert [s.name for s in r.stages] == ["c"] and r.total_steps == 5
    assert load_recipe(tmp_path / "parts" / "mid.yaml").total_steps == 30
    (tmp_path / "loop.yaml").write_text("base: loop2.yaml\n")
    (tmp_path / "loop2.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ValueError, match="leads back to itself"):
        load_recipe(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("base: gone.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"gone.yaml \(the base of .*orphan.yaml\)"):
        load_recipe(tmp_path / "orphan.yaml")
    (tmp_path / "odd.yaml").write_text("base: [a.yaml]\n")
    with pytest.raises(ValueError, match="`base` must be the path of another recipe"):
        load_recipe(tmp_path / "odd.yaml")
    (tmp_path / "typo.yaml").write_text("base: parts/base.yaml\noptim: {warmup: 3}\n")
    with pytest.raises(ValueError, match="typo.yaml: optim: unknown key"):
        load_recipe(tmp_path / "typo.yaml")


def test_shipped_recipes_on_a_base_differ_from_it_only_where_they_say():
    history = CONFIGS / "history"
    dit, shortcut = load_recipe(history / "shapes-dit.yaml"), load_recipe(history / "shapes-dit-shortcut.yaml")
    assert shortcut.model.vae != dit.model.vae and shortcut.run.compile and not dit.run.compile
    assert (shortcut.stages, shortcut.flow, shortcut.data, shortcut.generation) == (dit.stages, dit.flow, dit.data, dit.generation)
    # the bundled model's second restart is its first run again from that run's EMA weights
    more, more2 = load_recipe(CONFIGS / "shapes-dit-more.yaml"), load_recipe(CONFIGS / "shapes-dit-more2.yaml")
    assert more2.model.init == "runs/shapes/dit-more/final/transformer_ema" != more.model.init
    assert dataclasses.replace(more2, model=dataclasses.replace(more2.model, init=more.model.init)) == more


def test_bundled_chain_is_the_unshipped_2x2_chain_with_the_changes_its_comments_name():
    """configs/shapes-{vae,vae-decoder,dit}.yaml are written out whole; what they change against the
    2x2-fold recipes of configs/history/ is the fold, the weights they start from, and cfg 5."""
    history = CONFIGS / "history"
    vae, vae_2x2 = load_recipe(CONFIGS / "shapes-vae.yaml"), load_recipe(history / "shapes-vae-shortcut.yaml")
    assert vae.model.vae_config == {**vae_2x2.model.vae_config, "pixel_shortcut_fold": 1}
    assert dataclasses.replace(vae, model=vae_2x2.model) == vae_2x2
    dec, dec_2x2 = load_recipe(CONFIGS / "shapes-vae-decoder.yaml"), load_recipe(history / "shapes-vae-shortcut-decoder.yaml")
    assert dec.model.init == "runs/shapes/vae/final/vae_ema"
    assert dataclasses.replace(dec, model=dataclasses.replace(dec.model, init=dec_2x2.model.init)) == dec_2x2
    dit, dit_2x2 = load_recipe(CONFIGS / "shapes-dit.yaml"), load_recipe(history / "shapes-dit-shortcut.yaml")
    assert dit.model.vae == "runs/shapes/vae-decoder/final/vae_ema" and dit.generation.cfg_scale == 5.0
    assert dataclasses.replace(
        dit, model=dataclasses.replace(dit.model, vae=dit_2x2.model.vae), generation=dit_2x2.generation
    ) == dit_2x2
    more = load_recipe(CONFIGS / "shapes-dit-more.yaml")
    assert more.model.init == "runs/shapes/dit/final/transformer_ema" and more.model.vae == dit.model.vae


def test_stage_lr_decays_linearly_to_lr_end():
    r = recipe_from_dict({"stages": [{"steps": 4, "lr": 1.0}, {"steps": 10, "lr": 1.0, "lr_end": 0.0}]})
    assert [r.lr_at(s) for s in (0, 3)] == [1.0, 1.0]  # first stage: constant
    assert [r.lr_at(s) for s in (4, 9, 13)] == pytest.approx([1.0, 0.5, 0.1])
    with pytest.raises(ValueError, match="generation: unknown key"):
        recipe_from_dict({"generation": {"cfg": 2.0}})


@pytest.mark.parametrize("name", sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yaml") if p.name != "curate.yaml"))
def test_shipped_recipes_parse(name):
    r = load_recipe(CONFIGS / name)
    assert r.total_steps > 0
