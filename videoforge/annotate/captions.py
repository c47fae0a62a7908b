"""The structured caption (SCHEMA.md): typed model, validation, repair of VLM output, the caption
prompt template, and `caption_to_text`, which turns a caption into varied training text.

A caption is a JSON object; every key is optional; every value is a string except `tags`, a list
of strings. `camera_motion` holds one of the 14 labels of `camera_motion.LABELS` or free text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

TEXT_FIELDS: tuple[str, ...] = (
    "short_description",
    "dense_description",
    "background",
    "style",
    "shot_type",
    "lighting",
    "atmosphere",
    "camera_motion",
)
FIELDS: tuple[str, ...] = TEXT_FIELDS + ("tags",)

# The MLLM text encoder reads at most 256 tokens of caption; longer ones are flagged, not cut.
MAX_CAPTION_TOKENS = 256


class CaptionValidationError(ValueError):
    """A caption that does not follow the schema; the message says which key and why."""


@dataclass
class Caption:
    """One structured caption. `None` means the key is absent."""

    short_description: str | None = None
    dense_description: str | None = None
    background: str | None = None
    style: str | None = None
    shot_type: str | None = None
    lighting: str | None = None
    atmosphere: str | None = None
    camera_motion: str | None = None
    tags: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Any) -> "Caption":
        """Validate strictly: unknown keys, non-string values and empty text are errors."""
        if not isinstance(data, dict):
            raise CaptionValidationError(f"caption must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise CaptionValidationError(f"unknown caption key(s) {unknown}; allowed: {list(FIELDS)}")
        values: dict[str, Any] = {}
        for key in TEXT_FIELDS:
            value = data.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                raise CaptionValidationError(f"caption key {key!r} must be a string, got {type(value).__name__}")
            if not value.strip():
                raise CaptionValidationError(f"caption key {key!r} is empty")
            values[key] = value.strip()
        tags = data.get("tags")
        if tags is not None:
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise CaptionValidationError("caption key 'tags' must be a list of strings")
            values["tags"] = [t.strip() for t in tags if t.strip()]
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Only the present keys, in schema order."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value != []:
                out[f.name] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


def validate_vlm_caption(caption: Caption) -> None:
    """What a VLM caption must have beyond the schema: something that describes the content."""
    if not caption.short_description and not caption.dense_description:
        raise CaptionValidationError("caption has neither 'short_description' nor 'dense_description'")


# --------------------------------------------------------------------------------------------
# Repair of VLM output

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
# Keys models commonly invent for schema keys.
_KEY_ALIASES = {
    "short": "short_description",
    "summary": "short_description",
    "caption": "short_description",
    "description": "dense_description",
    "dense": "dense_description",
    "detailed_description": "dense_description",
    "scene": "background",
    "shot": "shot_type",
    "camera": "camera_motion",
    "camera_movement": "camera_motion",
    "mood": "atmosphere",
    "light": "lighting",
    "keywords": "tags",
}


def _extract_json_object(text: str) -> Any:
    """The first JSON object in `text`: inside a code fence, or from the first brace on (text
    after the object, e.g. chatter or a repeated object, is ignored)."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    last_error = "no '{' found"
    for candidate in candidates:
        start = candidate.find("{")
        if start < 0:
            continue
        snippet = candidate[start:]
        for attempt in (snippet, _TRAILING_COMMA.sub(r"\1", snippet)):
            try:
                return decoder.raw_decode(attempt)[0]
            except json.JSONDecodeError as e:
                last_error = f"invalid JSON ({e.msg} at char {e.pos})"
    raise CaptionValidationError(f"reply is not a JSON object: {last_error}")


def _normalise_keys(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        norm = re.sub(r"[^a-z0-9]+", "_", str(key).strip().lower()).strip("_")
        norm = _KEY_ALIASES.get(norm, norm)
        if norm not in FIELDS or value is None:
            continue  # unknown keys are dropped: the schema is closed
        if norm == "tags":
            if isinstance(value, str):
                value = [t for t in re.split(r"[,;]", value)]
            elif isinstance(value, list):
                value = [str(t) for t in value if isinstance(t, (str, int, float))]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = ", ".join(value)
        elif isinstance(value, (int, float)):
            value = str(value)
        out.setdefault(norm, value)
    return out


def parse_vlm_reply(text: str) -> Caption:
    """Parse and repair a VLM reply into a valid caption, or raise CaptionValidationError.

    Repairs: code fences and chatter around the object, trailing commas, key spelling/aliases,
    lists where strings belong, comma-separated tags; unknown keys and empty values are dropped.
    """
    data = _extract_json_object(text)
    if not isinstance(data, dict):
        raise CaptionValidationError(f"reply is JSON but not an object ({type(data).__name__})")
    data = _normalise_keys(data)
    data = {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
    caption = Caption.from_dict(data)
    validate_vlm_caption(caption)
    return caption


# --------------------------------------------------------------------------------------------
# The caption prompt: a versioned, editable template. Bump the version whenever the text changes;
# it is recorded in `caption_source` so captions from different prompts can be told apart.

PROMPT_VERSION = "caption-v1"
PROMPT_TEMPLATE = """You are annotating {kind_description} for training a video generation model.
Describe what is visible. Reply with ONE JSON object and nothing else, with these keys:
  "short_description": one sentence naming the main subject and action,
  "dense_description": 2-4 sentences with subjects, actions, scene transitions and details,
  "background": the environment behind the subject,
  "style": e.g. documentary, cinematic, animation, vlog, screen recording,
  "shot_type": e.g. close-up, medium shot, wide shot, aerial shot,
  "lighting": e.g. daylight, golden hour, studio lighting, low light,
  "atmosphere": the mood, e.g. calm, tense, cheerful,
  "camera_motion": how the camera moves (e.g. static, pan left, zoom in, handheld),
  "tags": a list of short keywords.
Use plain English, keep the whole answer under 180 words, and do not invent details you cannot see."""


def load_prompt_template(path: str) -> tuple[str, str]:
    """An edited prompt template from a file, and its version (`custom-<hash>`, recorded in
    `caption_source`). The template may use `{kind_description}`; literal braces must be doubled."""
    import hashlib
    from pathlib import Path

    text = Path(path).read_text(encoding="utf-8")
    try:
        text.format(kind_description="a video clip")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"prompt template {path}: only {{kind_description}} may be used, and literal braces "
                         f"must be doubled ({type(e).__name__}: {e})") from None
    return text, "custom-" + hashlib.sha1(text.encode()).hexdigest()[:8]


def build_prompt(kind: str, num_frames: int, template: str = PROMPT_TEMPLATE) -> str:
    """The caption prompt for one clip (`kind` video) or image."""
    if kind == "image":
        kind_description = "an image"
    else:
        kind_description = f"a video clip, shown as {num_frames} frames in time order"
    return template.format(kind_description=kind_description)


def count_caption_tokens(caption: Caption | dict, tokenizer: Any = None) -> int:
    """Tokens of the caption's training text. Without a tokenizer, a word-piece estimate:
    words and punctuation, with long words counting as several pieces (~4 characters each)."""
    text = " ".join(str(v) if isinstance(v, str) else " ".join(v) for v in _as_dict(caption).values())
    if tokenizer is not None:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    pieces = re.findall(r"\w+|[^\w\s]", text)
    return sum(max(1, (len(p) + 3) // 4) if p.isalnum() else 1 for p in pieces)


# --------------------------------------------------------------------------------------------
# Training text

# Probability that each present field is kept. Descriptions are kept most often because they
# carry the content; metadata fields are dropped often so the model also learns from short,
# user-like prompts. If every field is dropped, the first present description is kept, so a
# caption with content never becomes empty text.
FIELD_KEEP_PROB: dict[str, float] = {
    "short_description": 0.8,
    "dense_description": 0.8,
    "background": 0.5,
    "style": 0.5,
    "shot_type": 0.5,
    "lighting": 0.5,
    "atmosphere": 0.5,
    "camera_motion": 0.6,
    "tags": 0.2,
}
# Probability that the kept fields are shuffled; otherwise they follow schema order.
PERMUTE_PROB = 0.5

_FIELD_PREFIX = {
    "background": "Background: ",
    "style": "Style: ",
    "shot_type": "Shot: ",
    "lighting": "Lighting: ",
    "atmosphere": "Atmosphere: ",
    "camera_motion": "Camera: ",
    "tags": "Tags: ",
}


def _as_dict(caption: Caption | dict | str) -> dict[str, Any]:
    if isinstance(caption, Caption):
        return caption.to_dict()
    if isinstance(caption, str):
        caption = json.loads(caption)
    return Caption.from_dict(caption).to_dict()


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text[-1:] in ".!?" else text + "."


def _camera_phrase(value: str) -> str:
    # Labels like "pan_left" read as "pan left"; free text is kept as written.
    return value.replace("_", " ")


@dataclass(frozen=True)
class CaptionMix:
    """How structured captions become training text: `keep` overrides FIELD_KEEP_PROB for the
    fields it names, `permute` (when set) replaces PERMUTE_PROB. The default is the defaults."""

    keep: Mapping[str, float] | None = None
    permute: float | None = None


def caption_to_text(caption: dict, rng: np.random.Generator, mix: CaptionMix = CaptionMix()) -> str:
    """Training text from a structured caption, with random field dropout and permutation.

    Each present field is kept with `FIELD_KEEP_PROB[field]`; the kept fields are shuffled with
    probability `PERMUTE_PROB`, else they follow schema order (`mix` overrides both). Descriptions
    are written as plain sentences, the other fields as "Background: ...", "Camera: pan left." etc.
    Accepts a dict (or a `Caption`, or the manifest's JSON string); returns "" only for an empty
    caption. The same rng state always gives the same text.
    """
    data = _as_dict(caption)
    present = [k for k in FIELDS if k in data]
    if not present:
        return ""
    keep = FIELD_KEEP_PROB | dict(mix.keep or {})
    keep_draws = rng.random(len(present))
    kept = [k for k, u in zip(present, keep_draws) if u < keep[k]]
    if not kept:
        descriptions = [k for k in ("short_description", "dense_description") if k in data]
        kept = [descriptions[0] if descriptions else present[0]]
    if len(kept) > 1 and rng.random() < (PERMUTE_PROB if mix.permute is None else mix.permute):
        kept = [kept[i] for i in rng.permutation(len(kept))]
    parts = []
    for key in kept:
        value = data[key]
        if key == "tags":
            value = ", ".join(value)
        elif key == "camera_motion":
            value = _camera_phrase(value)
        parts.append(_FIELD_PREFIX.get(key, "") + _sentence(value))
    return " ".join(parts)
