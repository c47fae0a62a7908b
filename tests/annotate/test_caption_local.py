"""Captioning with a local transformers VLM: a tiny random LLaVA built offline (no downloads)."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from videoforge.annotate.caption_run import CaptionRunConfig, caption_manifest
from videoforge.annotate.vlm import CaptionBackendError, LocalVLMBackend

JSON_TOKEN = '{"short_description":"a_tiny_scene","tags":["tiny"]}'


def build_tiny_llava(folder: Path, always_json: bool) -> Path:
    """A 1-layer CLIP vision tower + 1-layer Llama with a word-level tokenizer whose token 0 is a
    whole JSON caption, and a PIL (torchvision-free) image processor. With `always_json` the
    final norm is zeroed, so every logit is 0 and greedy decoding always picks token 0."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    vocab = {JSON_TOKEN: 0, "<unk>": 1, "<s>": 2, "</s>": 3, "<image>": 4, "<pad>": 5}
    for word in "USER: ASSISTANT: You are annotating a video clip frames JSON object".split():
        vocab.setdefault(word, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=16)
    text = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                       bos_token_id=2, eos_token_id=3, pad_token_id=5)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=4, vision_feature_layer=-1,
                         vision_feature_select_strategy="default")
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    if always_json:
        with torch.no_grad():
            model.model.language_model.norm.weight.zero_()
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_llava")
    return {"json": build_tiny_llava(root / "json", True), "random": build_tiny_llava(root / "random", False)}


def test_local_llava_captions_manifest(tiny_llava, manifest_dir):
    backend = LocalVLMBackend(str(tiny_llava["json"]), max_new_tokens=3)
    assert type(backend.processor.image_processor).__name__ == "CLIPImageProcessorPil"
    summary = caption_manifest(manifest_dir, backend, CaptionRunConfig(frames_per_clip=4, camera_motion=False),
                               progress=False)
    assert (summary.captioned, summary.failed, summary.unreached) == (6, 0, 0)
    rows = pq.read_table(manifest_dir / "manifest.parquet").to_pylist()
    kept = [r for r in rows if r["status"] == "kept"]
    for r in kept:
        caption = json.loads(r["caption"])
        # the model repeated the JSON token 3 times; the repair keeps the first object
        assert caption["short_description"] == "a_tiny_scene" and caption["tags"][0] == "tiny"
        source = json.loads(r["caption_source"])
        assert source["backend"] == "local" and source["model"] == str(tiny_llava["json"])


def test_local_random_llava_output_is_marked_not_kept(tiny_llava, manifest_dir):
    backend = LocalVLMBackend(str(tiny_llava["random"]), max_new_tokens=4)
    summary = caption_manifest(manifest_dir, backend, CaptionRunConfig(frames_per_clip=2, camera_motion=False,
                                                                       repair_attempts=1, limit=2), progress=False)
    assert (summary.captioned, summary.failed) == (0, 2)
    rows = [r for r in pq.read_table(manifest_dir / "manifest.parquet").to_pylist() if r["caption_error"]]
    assert len(rows) == 2
    assert all(r["caption"] is None and r["caption_error"].startswith("invalid VLM reply after 2 attempts") for r in rows)


def test_local_backend_errors_are_clear(tmp_path, monkeypatch):
    with pytest.raises(CaptionBackendError, match="cannot load"):
        LocalVLMBackend(str(tmp_path / "no-such-model"))
    import transformers
    from transformers.utils.import_utils import TORCHVISION_IMPORT_ERROR

    def needs_torchvision(*args, **kwargs):
        raise ImportError(TORCHVISION_IMPORT_ERROR.format("Qwen2VLVideoProcessor"))

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", needs_torchvision)
    with pytest.raises(CaptionBackendError, match="needs torchvision, which is not installed"):
        LocalVLMBackend("some/qwen2-vl")
