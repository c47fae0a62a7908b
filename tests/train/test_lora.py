"""LoRA: only adapters train; one safetensors file (PEFT/diffusers keys); merged == unmerged;
kohya/musubi keys load; unmatched keys are reported."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from videoforge.config import DiTConfig, preset
from videoforge.models import build_dit
from videoforge.train.lora import add_lora, attach_lora, merge_lora, read_lora
from videoforge.train.recipe import LoRASection, recipe_from_dict
from videoforge.train.trainer import RunOptions, build_model, train


def inputs(cfg: DiTConfig, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 16, 3, 4, 4, generator=g), torch.tensor([250.0, 800.0]),
            torch.randn(2, 8, cfg.text_states_dim, generator=g), torch.ones(2, 8, dtype=torch.long),
            torch.randn(2, cfg.text_states_dim_2, generator=g), torch.tensor([2000.0, 5000.0]))


@pytest.fixture(scope="module")
def lora_run(cache, tiny_recipe, tmp_path_factory):
    d = tiny_recipe(3)
    d["lora"] = {"rank": 4, "alpha": 8.0}
    d["stages"][0]["lr"] = 2e-2  # big steps so the adapters move visibly in 3 steps
    out = tmp_path_factory.mktemp("lora")
    train(recipe_from_dict(d), RunOptions(out=out, data=str(cache), progress=False))
    return recipe_from_dict(d), out / "final" / "lora.safetensors"


def test_only_adapters_train():
    torch.manual_seed(0)
    cfg = preset("tiny").dit
    model = add_lora(build_dit(cfg), LoRASection(rank=4, alpha=4.0))
    base = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("img_attn_qkv" in n for n in trainable) and any("linear2" in n for n in trainable)
    assert not any("_mod." in n or "modulation" in n for n in trainable)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        model(*inputs(cfg)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    for n, p in model.named_parameters():
        if n in base:
            assert torch.equal(p, base[n]), f"{n} changed"
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)


def test_lora_file_keys_and_metadata(lora_run):
    _, path = lora_run
    with safe_open(str(path), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert keys and all(k.startswith("transformer.") and (".lora_A.weight" in k or ".lora_B.weight" in k) for k in keys)
    assert "transformer.double_blocks.0.img_attn_qkv.lora_A.weight" in keys
    assert meta["rank"] == "4" and float(meta["alpha"]) == 8.0


def test_merged_equals_unmerged(lora_run, tiny_recipe):
    r, path = lora_run
    base_recipe = recipe_from_dict(tiny_recipe(3))  # same seed: same base weights as the LoRA run
    x = inputs(build_model(base_recipe).config)
    merged = build_model(base_recipe).eval()
    unmerged = build_model(base_recipe).eval()
    plain = build_model(base_recipe).eval()
    merge_lora(merged, path, scale=0.8)
    attach_lora(unmerged, path, scale=0.8)
    with torch.no_grad():
        a, b, c = merged(*x), unmerged(*x), plain(*x)
    err = (a - b).abs().max().item()
    print(f"merged vs unmerged LoRA: max |dv| = {err:.2e}; LoRA effect {(a - c).abs().max().item():.2e}")
    assert err < 1e-5
    assert (a - c).abs().max() > 100 * max(err, 1e-7)  # the adapter really changes the output


def test_kohya_keys_load_and_merge_the_same(lora_run, tiny_recipe, tmp_path):
    _, path = lora_run
    base_recipe = recipe_from_dict(tiny_recipe(3))
    peft = load_file(str(path))
    kohya = {}
    for k, t in peft.items():
        module = k[len("transformer."):].rsplit(".lora_", 1)[0]
        stem = "lora_unet_" + module.replace(".", "_")
        kohya[stem + (".lora_down.weight" if ".lora_A." in k else ".lora_up.weight")] = t
        kohya[stem + ".alpha"] = torch.tensor(8.0)
    save_file(kohya, str(tmp_path / "kohya.safetensors"))
    a, b = build_model(base_recipe), build_model(base_recipe)
    merge_lora(a, path)
    report = merge_lora(b, tmp_path / "kohya.safetensors")
    assert not report.unmatched and len(report.pairs) == len(peft) // 2
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, msg=n)


def test_unmatched_keys_are_reported(lora_run, tiny_recipe, tmp_path):
    _, path = lora_run
    state = load_file(str(path))
    state["transformer.not_a_block.proj.lora_A.weight"] = torch.zeros(4, 8)
    state["transformer.not_a_block.proj.lora_B.weight"] = torch.zeros(8, 4)
    save_file(state, str(tmp_path / "extra.safetensors"), metadata={"rank": "4", "alpha": "8.0"})
    model = build_model(recipe_from_dict(tiny_recipe(3)))
    with pytest.raises(ValueError, match="not_a_block.proj"):
        merge_lora(model, tmp_path / "extra.safetensors")
    report = merge_lora(model, tmp_path / "extra.safetensors", strict=False)
    assert sorted(report.unmatched) == ["transformer.not_a_block.proj.lora_A.weight", "transformer.not_a_block.proj.lora_B.weight"]
    assert len(read_lora(tmp_path / "extra.safetensors", model).pairs) == len(state) // 2 - 1
