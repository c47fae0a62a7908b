"""The released models' state-dict keys and shapes, checked against our modules built on meta.

The lists in tests/data/reference/ are compact copies of the project's reference JSONs (the
official classes instantiated on meta); see each file's "source".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from videoforge.config import preset
from videoforge.models import build_dit, build_vae
from videoforge.models.convert import dit_official_to_diffusers

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference"


def _reference(name: str) -> dict:
    return json.loads((REFERENCE / name).read_text())


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def _assert_same_keys(ours: dict[str, list[int]], expected: dict[str, list[int]]) -> None:
    missing = sorted(set(expected) - set(ours))
    unexpected = sorted(set(ours) - set(expected))
    wrong = {k: (ours[k], expected[k]) for k in set(ours) & set(expected) if ours[k] != expected[k]}
    assert not missing and not unexpected and not wrong, (
        f"missing {missing[:10]} ({len(missing)}), unexpected {unexpected[:10]} ({len(unexpected)}), "
        f"wrong shapes (ours, release) {dict(list(wrong.items())[:10])} ({len(wrong)})"
    )


@pytest.mark.parametrize(
    "preset_name, reference_file",
    [("hunyuan-t2v-720p", "dit_t2v_keys.json"), ("hunyuan-i2v-720p", "dit_i2v_keys.json")],
)
def test_dit_keys_and_shapes_match_release(preset_name: str, reference_file: str) -> None:
    ref = _reference(reference_file)
    dit = build_dit(preset(preset_name).dit, device="meta")
    ours = _shapes(dit)
    _assert_same_keys(ours, ref["state_dict"])
    assert len(ours) == ref["num_tensors"] == 856
    num_params = sum(p.numel() for p in dit.parameters())
    print(f"{preset_name} DiT parameters: {num_params:,}")
    assert num_params == ref["num_params"] == 12_821_012_544


def test_dit_latent_concat_variant_matches_release() -> None:
    ref = _reference("dit_i2v_keys.json")
    variant = ref["latent_concat_variant"]
    expected = {k: v for k, v in ref["state_dict"].items() if k not in variant["missing_keys"]}
    expected.update(variant["changed"])
    dit = build_dit(preset("hunyuan-i2v-720p-33ch").dit, device="meta")
    ours = _shapes(dit)
    _assert_same_keys(ours, expected)
    assert len(ours) == variant["num_tensors"] == 852
    assert ours["img_in.proj.weight"][1] == 33 and "guidance_in.mlp.0.weight" not in ours
    assert sum(p.numel() for p in dit.parameters()) == variant["num_params"]


def test_vae_keys_and_shapes_match_release() -> None:
    ref = _reference("vae_keys.json")
    vae = build_vae(preset("hunyuan-t2v-720p").vae, device="meta")
    ours = _shapes(vae)
    _assert_same_keys(ours, ref["state_dict"])
    num_params = sum(p.numel() for p in vae.parameters())
    print(f"VAE parameters: {num_params:,}")
    assert len(ours) == ref["num_tensors"] and num_params == ref["num_params"]


def test_release_keys_map_onto_diffusers_model_exactly() -> None:
    diffusers = pytest.importorskip("diffusers")
    ref = _reference("dit_t2v_keys.json")["state_dict"]
    converted = dit_official_to_diffusers({k: torch.empty(s, device="meta") for k, s in ref.items()})
    with torch.device("meta"):
        model = diffusers.HunyuanVideoTransformer3DModel()  # its defaults are the release's config
    expected = _shapes(model)
    _assert_same_keys({k: list(v.shape) for k, v in converted.items()}, expected)
    assert len(converted) == 1264
