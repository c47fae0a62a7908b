"""Fixtures: a tiny random chat model built offline, and an isolated rewrite cache."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Words the tiny tokenizer knows: the rewriter's instructions plus the test prompts.
TEST_TEXTS = [
    "a red fox runs through a snowy forest",
    "A red fox with a bushy tail runs through a snowy forest of tall pine trees , soft winter light , wide shot , "
    "the camera slowly pans to follow .",
    "two dogs play with a ball on the beach",
    "Two brown dogs play with a yellow ball on a sandy beach at sunset , warm light , medium shot .",
]


@pytest.fixture(autouse=True)
def _isolated_rewrite_cache(tmp_path, monkeypatch):
    """Never touch the user's ~/.cache: every test gets its own cache file."""
    monkeypatch.setenv("VIDEOFORGE_REWRITE_CACHE", str(tmp_path / "rewrites.json"))


@pytest.fixture(scope="session")
def tiny_chat_model_dir(tmp_path_factory):
    """A 2-layer random Llama with a word-level tokenizer and a chat template, saved to a folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from videoforge.rewrite.templates import REVISION_REQUEST, SYSTEM_PROMPTS, TRANSLATE_SYSTEM

    specials = ["<unk>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    corpus = [*SYSTEM_PROMPTS.values(), TRANSLATE_SYSTEM, REVISION_REQUEST, *TEST_TEXTS]
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=specials))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<|end|>",
        chat_template=(
            "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
            "{% if add_generation_prompt %}<|assistant|> {% endif %}"
        ),
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, initializer_range=0.3,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    model = LlamaForCausalLM(config).eval()
    model.generation_config.max_new_tokens = 16  # what LocalChatLLM uses unless told otherwise
    folder = tmp_path_factory.mktemp("tiny-chat")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
