"""Prompt in, video out, against diffusers' HunyuanVideoPipeline loading the same tiny random
diffusers-format folder (text encoders, transformer, VAE): every stage of ours on the same weights."""


import numpy as np
import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

from videoforge.models.text_encoders import VIDEO_TEMPLATE
from videoforge.pipelines.text_to_video import TextToVideoPipeline
from videoforge.testing import word_level_tokenizer

PROMPTS = ["a red circle moving to the right", "a small blue square"]


@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory):
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline, HunyuanVideoTransformer3DModel

    torch.manual_seed(0)
    texts = [VIDEO_TEMPLATE, *PROMPTS]
    specials = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<pad>"]
    tok = word_level_tokenizer(texts, specials, bos="<|begin_of_text|>", pad="<pad>")
    llama = LlamaModel(LlamaConfig(vocab_size=len(tok), hidden_size=24, intermediate_size=32, num_hidden_layers=4,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                                   pad_token_id=tok.pad_token_id))
    tok2 = word_level_tokenizer(texts, ["<|startoftext|>", "<|endoftext|>"], bos="<|startoftext|>", eos="<|endoftext|>", pad="<|endoftext|>")
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok2), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, max_position_embeddings=77, eos_token_id=tok2.eos_token_id,
                                        bos_token_id=tok2.bos_token_id, pad_token_id=tok2.pad_token_id))
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=16, out_channels=16, num_attention_heads=2, attention_head_dim=16, num_layers=1, num_single_layers=1,
        num_refiner_layers=1, patch_size=2, patch_size_t=1, text_embed_dim=24, pooled_projection_dim=16,
        rope_axes_dim=(4, 6, 6), guidance_embeds=True,
    )
    vae = AutoencoderKLHunyuanVideo(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4)
    with torch.no_grad():
        for p in transformer.parameters():
            p.normal_(0, 0.2)
    pipe = HunyuanVideoPipeline(text_encoder=llama, tokenizer=tok, transformer=transformer, vae=vae,
                                scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=clip, tokenizer_2=tok2)
    folder = tmp_path_factory.mktemp("diffusers-pipeline")
    pipe.save_pretrained(folder)
    return folder


@pytest.mark.parity
def test_prompt_to_video_matches_diffusers_from_the_same_folder(diffusers_folder):
    from diffusers import HunyuanVideoPipeline

    ours = TextToVideoPipeline.from_pretrained(diffusers_folder, dtype=torch.float32, device="cpu")
    ref = HunyuanVideoPipeline.from_pretrained(diffusers_folder, dtype=torch.float32)
    ref.set_progress_bar_config(disable=True)
    size = dict(height=32, width=32, num_frames=5, num_inference_steps=3, guidance_scale=6.0)
    out = ours(PROMPTS, seed=4, **size)
    noise = torch.randn(ours.latent_shape(2, 32, 32, 5), generator=torch.Generator().manual_seed(4))
    # release template and crop (95) and max length (256 + 95) on both sides
    expected = ref(prompt=PROMPTS, latents=noise, output_type="np", **size).frames  # float [B, F, H, W, 3] in [0, 1]
    assert [o.frames.shape for o in out] == [(5, 32, 32, 3)] * 2
    got = np.stack([o.frames for o in out]).astype(np.float32) / 255
    # ours is rounded to uint8: within half a level, plus float noise
    assert np.abs(got - expected).max() <= 0.5 / 255 + 1e-4
    assert expected.std() > 0.01
    # and before decoding, tight: text encoders + sampling on float32
    lat = ours(PROMPTS, seed=4, output_type="latent", **size)
    ref_lat = ref(prompt=PROMPTS, latents=noise, output_type="latent", **size).frames
    torch.testing.assert_close(lat, ref_lat, rtol=0, atol=1e-4)
