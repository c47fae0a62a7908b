"""Small offline stand-ins for tests and examples: no downloads, no hub.

`word_level_tokenizer` builds a fast tokenizer over the words of some texts (so tiny random text
encoders can run the real templates), `free_port` finds a free loopback port for test servers and
torchrun rendezvous.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def word_level_tokenizer(
    texts: Sequence[str],
    specials: Sequence[str],
    bos: str,
    eos: str | None = None,
    pad: str | None = None,
    extra: Sequence[str] = (),
) -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer over the words in `texts`, right-padded; BOS (and EOS) are added
    by its post-processor. `extra` tokens are matched whole (e.g. "\\n\\n", one token in Llama-3)."""
    specials = list(specials)
    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", re.sub("|".join(map(re.escape, specials)), " ", t))})
    vocab = {tok: i for i, tok in enumerate(specials + ["<unk>"] + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_tokens([AddedToken(t, normalized=False) for t in extra])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A" + (f" {eos}" if eos else ""), special_tokens=[(t, vocab[t]) for t in (bos, eos) if t]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos or specials[-2], pad_token=pad, unk_token="<unk>")
    fast.add_special_tokens({"additional_special_tokens": [s for s in specials if s not in (bos, eos, pad)]})
    fast.padding_side = "right"
    return fast
