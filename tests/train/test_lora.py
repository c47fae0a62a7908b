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


def test_a_lora_runs_checkpoint_converts_to_its_adapters(lora_run, tmp_path):
    """`convert RUN/checkpoints/step_N DST` of a LoRA run writes DST/lora.safetensors (for `generate --lora`)."""
    from videoforge.cli import main

    _, final = lora_run
    checkpoint = final.parents[1] / "checkpoints" / "step_00000003"
    for ema, name in ((False, "lora.safetensors"), (True, "lora_ema.safetensors")):
        dst = tmp_path / name
        assert main(["convert", str(checkpoint), str(dst), "--to", "model-folder"] + (["--ema"] if ema else [])) == 0
        got, want = load_file(str(dst / "lora.safetensors")), load_file(str(final.parent / name))
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    assert not torch.equal(*(load_file(str(tmp_path / n / "lora.safetensors"))["transformer.double_blocks.0.img_attn_qkv.lora_B.weight"]
                             for n in ("lora.safetensors", "lora_ema.safetensors")))


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


def test_diffusers_layout_lora_merges_as_on_the_diffusers_weights(tmp_path):
    """A LoRA in diffusers' module names (split q/k/v, proj_mlp, (scale, shift) final modulation)
    merged into our fused layout equals merging it into the diffusers-layout weights and converting."""
    from videoforge.models.convert import dit_diffusers_to_official, dit_official_to_diffusers

    torch.manual_seed(0)
    cfg = preset("tiny").dit
    model = build_dit(cfg)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    diffusers_sd = dit_official_to_diffusers(base)
    modules = ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",  # no to_v: that part stays
               "transformer_blocks.1.attn.add_v_proj", "transformer_blocks.1.attn.to_out.0", "transformer_blocks.0.ff.net.0.proj",
               "single_transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.attn.to_k",
               "single_transformer_blocks.0.attn.to_v", "single_transformer_blocks.0.proj_mlp",
               "single_transformer_blocks.1.proj_out", "context_embedder.token_refiner.refiner_blocks.0.attn.to_v",
               "norm_out.linear"]
    rank, alpha, lora = 4, 8.0, {}
    g = torch.Generator().manual_seed(1)
    for m in modules:
        out_f, in_f = diffusers_sd[m + ".weight"].shape
        a, b = torch.randn(rank, in_f, generator=g) * 0.1, torch.randn(out_f, rank, generator=g) * 0.1
        lora[f"transformer.{m}.lora_A.weight"], lora[f"transformer.{m}.lora_B.weight"] = a, b
        diffusers_sd[m + ".weight"] = diffusers_sd[m + ".weight"] + alpha / rank * b @ a
    save_file(lora, str(tmp_path / "diffusers.safetensors"), metadata={"rank": str(rank), "alpha": str(alpha)})

    report = merge_lora(model, tmp_path / "diffusers.safetensors")
    assert not report.unmatched
    assert report.pairs["double_blocks.0.img_attn_qkv"].down.shape[0] == 2 * rank  # q and k side by side
    assert report.pairs["single_blocks.0.linear1"].down.shape[0] == 4 * rank
    expected = dit_diffusers_to_official(diffusers_sd)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, expected[k], msg=k)

    # unmerged: mixed ranks (fused 2r, 4r beside r) load as peft adapters with the same output
    attached = build_dit(cfg)
    attached.load_state_dict(base)
    attach_lora(attached, tmp_path / "diffusers.safetensors")
    x = inputs(cfg)
    with torch.no_grad():
        torch.testing.assert_close(attached(*x), model(*x), rtol=1e-4, atol=1e-5)


def test_a_linear_given_in_both_layouts_is_reported(tmp_path):
    model = build_dit(preset("tiny").dit)
    a, b = torch.zeros(4, 128), torch.zeros(384, 4)
    state = {"transformer.double_blocks.0.img_attn_qkv.lora_A.weight": a, "transformer.double_blocks.0.img_attn_qkv.lora_B.weight": b,
             "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": a.clone(), "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": b[:128].clone()}
    save_file(state, str(tmp_path / "both.safetensors"))
    report = read_lora(tmp_path / "both.safetensors", model)
    assert list(report.pairs) == ["double_blocks.0.img_attn_qkv"]
    assert sorted(report.unmatched) == ["transformer.transformer_blocks.0.attn.to_q.lora_A.weight",
                                       "transformer.transformer_blocks.0.attn.to_q.lora_B.weight"]
