"""The I2V MLLM (LLaVA over image + prompt) on a tiny random LlavaForConditionalGeneration."""


import numpy as np
import pytest
import torch
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
)

from videoforge.models.text_encoders import (
    I2V_TEMPLATE,
    CLIPPooledEncoder,
    HunyuanI2VTextEncoders,
    LlavaTextEncoder,
    PromptTemplate,
)
from videoforge.testing import word_level_tokenizer

PROMPTS = ["a red circle moving to the right", "a cat"]
SPECIALS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<image>", "<pad>"]


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    tok = word_level_tokenizer([I2V_TEMPLATE, *PROMPTS], SPECIALS, bos="<|begin_of_text|>", pad="<pad>", extra=["\n\n"])
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(image_size=28, patch_size=14, hidden_size=16, intermediate_size=32,
                                       num_hidden_layers=2, num_attention_heads=2),
        text_config=LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                pad_token_id=tok.pad_token_id),
        image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id,
        vision_feature_layer=-2, vision_feature_select_strategy="default",
    )
    llava = LlavaForConditionalGeneration(config).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    tok2 = word_level_tokenizer(PROMPTS, ["<|startoftext|>", "<|endoftext|>"], bos="<|startoftext|>", eos="<|endoftext|>", pad="<|endoftext|>")
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok2), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=77, eos_token_id=tok2.eos_token_id,
                                        bos_token_id=tok2.bos_token_id, pad_token_id=tok2.pad_token_id)).eval()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in PROMPTS]
    return llava, tok, processor, clip, tok2, images


def _encoder(parts, text_len=12, interleave=2):
    llava, tok, processor, *_ = parts
    return LlavaTextEncoder(llava, tok, processor, text_len=text_len, template=PromptTemplate(I2V_TEMPLATE),
                            image_interleave=interleave)


def test_layout_image_tokens_then_prompt(parts):
    enc = _encoder(parts)
    _, tok, *_ = parts
    assert enc.num_image_tokens == 4
    ids = tok([I2V_TEMPLATE.format(PROMPTS[0])])["input_ids"][0]
    assert ids[enc.crop] == tok.convert_tokens_to_ids("a")  # the crop lands on the prompt
    states, mask = enc(PROMPTS, parts[-1])
    # 4 image tokens every 2nd -> 2, then text_len - 4 (assistant header removed)
    assert states.shape == (2, 2 + 12 - 4, 32) and mask.shape == (2, 10)
    # prompt (7 words) + <|eot_id|>, the assistant's "\n\n", then padding
    assert mask[0].tolist() == [1] * 10
    assert mask[1].tolist() == [1, 1] + [1] * 2 + [1] + [0] * 5
    # batched rows equal single-prompt runs
    one, _ = enc(PROMPTS[1:], parts[-1][1:])
    torch.testing.assert_close(states[1:], one, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="2 images for 1 prompts"):
        enc(PROMPTS[:1], parts[-1])


@pytest.mark.parity
def test_llava_encoding_matches_diffusers_i2v(parts):
    from diffusers import HunyuanVideoImageToVideoPipeline

    llava, tok, processor, clip, tok2, images = parts
    enc = _encoder(parts, text_len=12, interleave=4)
    n, start = enc.num_image_tokens, 5  # <image> follows BOS, <|start_header_id|>, system, <|end_header_id|>, "\n\n"
    assert tok([I2V_TEMPLATE])["input_ids"][0][start] == enc.image_token_id
    pipe = HunyuanVideoImageToVideoPipeline(text_encoder=llava, tokenizer=tok, transformer=None, vae=None, scheduler=None,
                                            text_encoder_2=clip, tokenizer_2=tok2, image_processor=processor)
    template = {"template": I2V_TEMPLATE, "crop_start": enc.crop, "image_emb_start": start,
                "image_emb_end": start + n, "image_emb_len": n}
    ref_states, ref_mask = pipe._get_llama_prompt_embeds(images[0], PROMPTS[:1], template, device=torch.device("cpu"),
                                                         max_sequence_length=12, image_embed_interleave=4)
    pair = HunyuanI2VTextEncoders(enc, CLIPPooledEncoder(clip, tok2))
    ours = pair.encode(PROMPTS[:1], images=images[:1])
    torch.testing.assert_close(ours.states, ref_states, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.mask, ref_mask.to(ours.mask.dtype), atol=0, rtol=0)
    ref_pooled = pipe._get_clip_prompt_embeds(PROMPTS[:1], device=torch.device("cpu"))
    torch.testing.assert_close(ours.pooled, ref_pooled, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="needs the reference images"):
        pair.encode(PROMPTS[:1])


def test_truncated_prompt_keeps_fixed_length(parts):
    enc = _encoder(parts, text_len=6)
    states, mask = enc(["a red circle moving to the right a red circle moving"], parts[-1][:1])
    # truncation cut the assistant header: the last 4 tokens go instead (the release rule), same length
    assert states.shape[1] == 2 + 6 - 4 and bool(mask.all())
