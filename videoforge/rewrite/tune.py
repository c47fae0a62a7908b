"""LoRA fine-tuning of a local rewriter model on (original, rewritten) prompt pairs.

Each pair becomes the conversation the rewriter will hold at run time (system instructions of
the chosen mode, the original as the user turn, the rewrite as the assistant turn) and the loss
covers only the assistant turn. The output folder is a peft adapter that `LocalChatLLM(...,
lora=DIR)` and `videoforge rewrite --lora DIR` load.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from videoforge.rewrite.backends import load_causal_lm, render_chat
from videoforge.rewrite.templates import SYSTEM_PROMPTS, TEMPLATE_VERSION


@dataclass
class TuneConfig:
    steps: int = 200
    lr: float = 2e-4
    batch_size: int = 4
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    max_length: int = 1024  # tokens per example; longer prompts lose their beginning
    mode: str = "normal"  # whose system instructions the pairs are trained under
    seed: int = 0


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Lines of `{"original": ..., "rewritten": ...}`; blank lines are skipped."""
    pairs = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) and row[k].strip() for k in ("original", "rewritten")):
            raise ValueError(f'{path}:{n}: need an object with non-empty strings "original" and "rewritten"')
        pairs.append((row["original"], row["rewritten"]))
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs


def encode_pair(tokenizer, original: str, rewritten: str, mode: str, max_length: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels) with labels -100 on everything before the assistant's reply."""
    messages = [{"role": "system", "content": SYSTEM_PROMPTS[mode]}, {"role": "user", "content": original}]
    prompt = render_chat(tokenizer, messages, add_generation_prompt=True)
    full = render_chat(tokenizer, messages + [{"role": "assistant", "content": rewritten}], add_generation_prompt=False)
    # The completion is whatever the template puts after the generation prompt (reply + end token).
    completion = full[len(prompt):] if full.startswith(prompt) else rewritten + (tokenizer.eos_token or "")
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids, labels = p_ids + c_ids, [-100] * len(p_ids) + c_ids
    return ids[-max_length:], labels[-max_length:]


def _batch(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id)
    labels = torch.full((len(examples), width), -100)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (x, y) in enumerate(examples):
        ids[row, : len(x)], labels[row, : len(y)], mask[row, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@dataclass
class TuneResult:
    losses: list[float]  # one per step
    model: Any  # the trained peft model (base + adapter), in eval mode


def tune_rewriter(
    pairs_path: str | Path,
    model: str | Path,
    out_dir: str | Path,
    config: TuneConfig = TuneConfig(),
    device: str | torch.device = "cpu",
) -> TuneResult:
    """Train a LoRA adapter and save it to `out_dir`."""
    from peft import LoraConfig, get_peft_model

    if config.mode not in SYSTEM_PROMPTS:
        raise ValueError(f"unknown mode {config.mode!r}")
    pairs = read_pairs(pairs_path)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    lm, tokenizer = load_causal_lm(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    examples = [encode_pair(tokenizer, o, r, config.mode, config.max_length) for o, r in pairs]

    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM")
    peft_model = get_peft_model(lm, lora).to(device)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)

    losses: list[float] = []
    order: list[int] = []
    for _ in tqdm(range(config.steps), desc="rewrite-tune", unit="step"):
        batch_idx = []
        while len(batch_idx) < min(config.batch_size, len(examples)):
            if not order:  # a fresh shuffle per epoch
                order = rng.sample(range(len(examples)), len(examples))
            batch_idx.append(order.pop())
        batch = {k: v.to(device) for k, v in _batch([examples[i] for i in batch_idx], pad_id).items()}
        loss = peft_model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))

    out = Path(out_dir)
    peft_model.save_pretrained(str(out))
    meta = {"base_model": str(model), "template_version": TEMPLATE_VERSION, "pairs": len(pairs),
            "config": asdict(config), "losses": losses}
    (out / "rewrite_tune.json").write_text(json.dumps(meta, indent=1))
    return TuneResult(losses, peft_model.eval())
