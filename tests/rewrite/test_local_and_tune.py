"""The local transformers backend and LoRA tuning, on a tiny random chat model built offline."""

from __future__ import annotations

import json

import pytest
import torch

from videoforge.cli import main
from videoforge.rewrite import LocalChatLLM, PromptRewriter
from videoforge.rewrite.templates import NORMAL_SYSTEM
from videoforge.rewrite.tune import TuneConfig, encode_pair, read_pairs, tune_rewriter

PAIRS = [
    {"original": "a red fox runs through a snowy forest",
     "rewritten": "A red fox with a bushy tail runs through a snowy forest of tall pine trees , soft winter light , "
                  "wide shot , the camera slowly pans to follow ."},
    {"original": "two dogs play with a ball on the beach",
     "rewritten": "Two brown dogs play with a yellow ball on a sandy beach at sunset , warm light , medium shot ."},
]
MESSAGES = [{"role": "system", "content": NORMAL_SYSTEM}, {"role": "user", "content": PAIRS[0]["original"]}]


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in PAIRS) + "\n")
    return path


def test_local_backend_generates_through_the_chat_template(tiny_chat_model_dir):
    llm = LocalChatLLM(tiny_chat_model_dir, max_new_tokens=12)
    first = llm(MESSAGES)
    assert first == llm(MESSAGES) and first.strip()  # greedy: deterministic, non-empty
    # A random model's reply keeps nothing of the prompt: self-revision must reject it twice.
    result = PromptRewriter(llm, embedder=None).rewrite(PAIRS[0]["original"])
    assert result.kept_original and result.attempts == 2 and result.prompt == PAIRS[0]["original"]
    assert result.model == str(tiny_chat_model_dir)


def test_encode_pair_trains_only_on_the_reply(tiny_chat_model_dir):
    llm = LocalChatLLM(tiny_chat_model_dir)
    ids, labels = encode_pair(llm.tokenizer, PAIRS[1]["original"], PAIRS[1]["rewritten"], "normal", 4096)
    reply = [t for t in labels if t != -100]
    assert llm.tokenizer.decode(reply) == PAIRS[1]["rewritten"] + " <|end|>"
    assert ids[-len(reply):] == reply and len(ids) == len(labels)


def test_lora_tuning_lowers_the_loss_and_the_adapter_reloads_to_the_same_outputs(tiny_chat_model_dir, pairs_file, tmp_path):
    out = tmp_path / "adapter"
    config = TuneConfig(steps=8, lr=1e-2, batch_size=2, max_length=128)
    result = tune_rewriter(pairs_file, tiny_chat_model_dir, out, config)
    losses = result.losses
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < 0.5 * sum(losses[:2]) / 2, losses
    assert (out / "adapter_config.json").is_file() and json.loads((out / "rewrite_tune.json").read_text())["pairs"] == 2

    reloaded = LocalChatLLM(tiny_chat_model_dir, lora=out, max_new_tokens=16)
    base = LocalChatLLM(tiny_chat_model_dir, max_new_tokens=16)
    ids = reloaded.tokenizer(PAIRS[0]["rewritten"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        tuned_logits = result.model(input_ids=ids).logits
        torch.testing.assert_close(reloaded.model(input_ids=ids).logits, tuned_logits, atol=1e-5, rtol=1e-5)
        assert (base.model(input_ids=ids).logits - tuned_logits).abs().max() > 1e-2  # the adapter does something
    text = reloaded(MESSAGES)
    reloaded.model = result.model
    assert reloaded(MESSAGES) == text
    assert reloaded.name.endswith(f"+lora:{out.resolve()}")


def test_rewrite_tune_and_rewrite_lora_on_the_command_line(tiny_chat_model_dir, pairs_file, tmp_path, capsys):
    out = tmp_path / "adapter"
    assert main(["rewrite-tune", str(pairs_file), "--model", str(tiny_chat_model_dir), "--out", str(out), "--steps", "2"]) == 0
    assert "over 2 steps; adapter in" in capsys.readouterr().err
    code = main(["rewrite", PAIRS[1]["original"], "--backend", "local", "--model", str(tiny_chat_model_dir),
                 "--lora", str(out)])
    captured = capsys.readouterr()
    assert code == 0 and captured.out == PAIRS[1]["original"] + "\n"  # a 2-step adapter cannot rewrite yet
    assert "kept the original" in captured.err and "+lora:" in captured.err


def test_bad_pairs_and_adapters_are_named(tmp_path, tiny_chat_model_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(PAIRS[0]) + "\n" + json.dumps({"original": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: need an object"):
        read_pairs(bad)
    assert main(["rewrite-tune", str(bad), "--model", str(tiny_chat_model_dir), "--out", str(tmp_path / "o")]) == 1
    assert "bad.jsonl:2" in capsys.readouterr().err
    assert main(["rewrite", "a cat", "--model", str(tiny_chat_model_dir), "--lora", str(tmp_path)]) == 1
    assert "is not a LoRA adapter folder" in capsys.readouterr().err


def test_templates_without_a_system_turn_get_the_instructions_in_the_user_turn(tiny_chat_model_dir):
    from transformers import AutoTokenizer

    from videoforge.rewrite.backends import render_chat

    tok = AutoTokenizer.from_pretrained(tiny_chat_model_dir)
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        "[{{ m['role'] }}] {{ m['content'] }} {% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    text = render_chat(tok, [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], True)
    assert text == "[user] S\n\nU [assistant]"
