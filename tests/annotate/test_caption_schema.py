import json

import numpy as np
import pytest

from videoforge.annotate.captions import (
    FIELD_KEEP_PROB,
    Caption,
    CaptionValidationError,
    build_prompt,
    caption_to_text,
    count_caption_tokens,
    parse_vlm_reply,
)

FULL = {
    "short_description": "A red ball rolls across a wooden table",
    "dense_description": "A small red ball rolls from left to right across a wooden table and stops near a cup.",
    "background": "a kitchen with white tiles",
    "style": "documentary",
    "shot_type": "medium shot",
    "lighting": "daylight",
    "atmosphere": "calm",
    "camera_motion": "pan_left",
    "tags": ["ball", "table", "aesthetic:5.1"],
}


def test_caption_round_trip_and_validation_errors():
    cap = Caption.from_dict(FULL)
    assert Caption.from_dict(json.loads(cap.to_json())) == cap
    assert Caption.from_dict({}).to_dict() == {}
    with pytest.raises(CaptionValidationError, match="unknown caption key"):
        Caption.from_dict({"colour": "red"})
    with pytest.raises(CaptionValidationError, match="'style' must be a string"):
        Caption.from_dict({"style": 3})
    with pytest.raises(CaptionValidationError, match="'tags' must be a list of strings"):
        Caption.from_dict({"tags": "a, b"})
    with pytest.raises(CaptionValidationError, match="'lighting' is empty"):
        Caption.from_dict({"lighting": "  "})
    with pytest.raises(CaptionValidationError, match="JSON object"):
        Caption.from_dict(["x"])


def test_parse_vlm_reply_repairs_common_mistakes():
    reply = (
        "Sure! Here is the caption:\n```json\n"
        '{"Short Description": "A dog runs", "description": "A brown dog runs on grass.", '
        '"tags": "dog, grass", "shot": ["wide", "low angle"], "confidence": 0.9,}\n```'
    )
    cap = parse_vlm_reply(reply)
    assert cap.short_description == "A dog runs"
    assert cap.dense_description == "A brown dog runs on grass."
    assert cap.tags == ["dog", "grass"]
    assert cap.shot_type == "wide, low angle"
    # chatter (even with braces) after the object, or the object repeated, is ignored
    assert parse_vlm_reply('{"short_description": "x"} Note: {not json}').short_description == "x"
    assert parse_vlm_reply('{"short_description": "x"} {"short_description": "x"}').short_description == "x"
    with pytest.raises(CaptionValidationError, match="not a JSON object"):
        parse_vlm_reply("I cannot see the video.")
    with pytest.raises(CaptionValidationError, match="neither 'short_description' nor"):
        parse_vlm_reply('{"style": "cinematic"}')
    with pytest.raises(CaptionValidationError, match="invalid JSON"):
        parse_vlm_reply('{"short_description": "unterminated}')


def test_caption_to_text_is_deterministic_and_uses_documented_probabilities():
    a = caption_to_text(FULL, np.random.default_rng(7))
    b = caption_to_text(FULL, np.random.default_rng(7))
    assert a == b and a
    # the JSON string stored in the manifest works the same
    assert caption_to_text(json.dumps(FULL), np.random.default_rng(7)) == a

    rng = np.random.default_rng(0)
    n = 4000
    texts = [caption_to_text(FULL, rng) for _ in range(n)]
    # keep frequency of a metadata field ~ its documented probability (it is never the fallback)
    bg_rate = np.mean(["Background: a kitchen with white tiles." in t for t in texts])
    assert abs(bg_rate - FIELD_KEEP_PROB["background"]) < 0.03
    tags_rate = np.mean(["Tags: ball, table, aesthetic:5.1." in t for t in texts])
    assert abs(tags_rate - FIELD_KEEP_PROB["tags"]) < 0.03
    assert all("Camera: pan left." in t for t in texts if "Camera:" in t)
    # permutation: the short description appears both first and later
    starts = np.mean([t.startswith("A red ball rolls") for t in texts])
    assert 0.2 < starts < 0.9
    assert len(set(texts)) > 200


def test_caption_to_text_never_empty_for_non_empty_caption():
    rng = np.random.default_rng(1)
    for _ in range(200):
        assert caption_to_text({"tags": ["x"]}, rng) == "Tags: x."
        assert caption_to_text({"dense_description": "a cat sleeps"}, rng) == "a cat sleeps."
    assert caption_to_text({}, rng) == ""


def test_prompt_and_token_count():
    assert "4 frames" in build_prompt("video", 4)
    assert "an image" in build_prompt("image", 1)
    assert count_caption_tokens(FULL) < 256
    long = dict(FULL, dense_description=" ".join(["word"] * 400))
    assert count_caption_tokens(long) > 256
