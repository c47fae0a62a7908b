"""The self-revision checks: stems, colours, numbers, negations, main nouns, MiniLM similarity."""

from __future__ import annotations

import pytest

from videoforge.rewrite.fidelity import check_fidelity, main_nouns, minilm_embedder, stem, words
from videoforge.rewrite.rewriter import clean_reply, is_english


@pytest.mark.parametrize("a,b", [("dogs", "dog"), ("foxes", "fox"), ("puppies", "puppy"), ("running", "runs"),
                                 ("hopped", "hop"), ("children", "child"), ("glasses", "glass")])
def test_stem_merges_inflections(a, b):
    assert stem(a) == stem(b)


def test_stem_keeps_different_words_apart():
    assert len({stem(w) for w in ["cat", "car", "cart", "bus", "bush"]}) == 5


def _missing(original, rewrite):
    return check_fidelity(original, rewrite, embedder=None, threshold=0.0).missing


def test_faithful_rewrite_passes_explicit_checks():
    original = "two red foxes run through a snowy forest, no people"
    rewrite = ("Two red foxes with bushy tails are running through a snowy pine forest at dawn. "
               "There are no people in the scene; wide shot, soft light, the camera pans slowly.")
    assert _missing(original, rewrite) == []


def test_each_kind_of_loss_is_named():
    original = "two red foxes run through a snowy forest, no people"
    assert _missing(original, "Two blue foxes run through a snowy forest, no people.") == ["the colour 'red' is missing"]
    assert _missing(original, "Three red foxes run through a snowy forest, no people.") == ["the number 2 is missing"]
    assert _missing(original, "Two red foxes run through a snowy forest among people.") == [
        "the negation 'no people' is missing"]
    assert _missing(original, "Two red dogs run through a snowy forest, no people.") == ["the noun 'foxes' is missing"]


def test_digits_and_number_words_are_the_same_number():
    assert _missing("3 cats on a sofa", "Three fluffy cats rest on a sofa.") == []


def test_main_nouns_skip_verbs_adjectives_and_function_words():
    assert main_nouns(words("A happy dog slowly runs along the beach with a ball")) == ["dog", "beach", "ball"]


def test_minilm_similarity_separates_faithful_from_unrelated():
    embed = minilm_embedder()
    original = "a red fox runs through a snowy forest"
    faithful = check_fidelity(original, "A red fox with a bushy tail runs through a snowy pine forest, soft winter "
                              "light, wide shot.", embed, threshold=0.5)
    unrelated = check_fidelity(original, "A white rabbit hops across a green meadow on a sunny day.", embed, 0.5)
    assert faithful.ok and faithful.similarity > 0.75
    assert not unrelated.ok and unrelated.similarity < 0.5
    assert "semantic similarity" in unrelated.describe() and "the noun 'fox' is missing" in unrelated.describe()


def test_language_detection():
    assert is_english("a cat sleeps on the roof")
    assert is_english("sunset")
    assert not is_english("一只猫在屋顶上睡觉")
    assert not is_english("un chat noir dort sur le toit")


def test_clean_reply_strips_wrappers():
    assert clean_reply('<think>hmm</think>\nRewritten prompt: "A cat\nsleeps."  ') == "A cat sleeps."


# (original, faithful rewrite in the normal or master style, corrupted rewrite) — hand-written.
CASES = [
    ("a cat sleeping on a windowsill",
     "A ginger cat sleeps curled up on a sunlit windowsill, soft morning light, close-up shot, static camera.",
     "A small dog sleeps curled up on a sunlit windowsill, soft morning light, close-up shot, static camera."),
    ("3 kids flying kites on a hill",
     "Three children fly colourful kites on a grassy hill under a wide sky; wide shot, warm afternoon light, "
     "the camera slowly tilts up to follow the kites.",
     "Two children fly colourful kites on a grassy hill under a wide sky; wide shot, warm afternoon light."),
    ("empty street at night with no cars",
     "An empty city street at night with no cars, wet asphalt reflecting orange street lamps, a lonely and "
     "quiet atmosphere, low-angle wide shot, the camera pushes in slowly.",
     "A city street at night full of cars, wet asphalt reflecting orange street lamps, low-angle wide shot."),
    ("a woman in a blue dress dancing in the rain",
     "A young woman in a flowing blue dress dances gracefully in the rain on a cobblestone square; cinematic "
     "medium shot, cool blue-grey light, melancholic mood, the camera orbits her slowly.",
     "A young woman in a flowing red dress dances gracefully in the rain on a cobblestone square."),
    ("an old man feeding pigeons in the park",
     "An elderly man sits on a park bench feeding a flock of pigeons, golden hour light through the trees, "
     "shallow depth of field, medium shot, calm atmosphere, static camera.",
     "An elderly man sits on a park bench reading a newspaper, golden hour light through the trees."),
    ("a spaceship landing on mars",
     "A sleek silver spaceship descends and lands on the dusty red surface of Mars, clouds of dust swirling, "
     "dramatic wide shot, harsh sunlight, the camera tilts down to follow the landing.",
     "A sleek silver airplane lands on a desert runway, clouds of dust swirling, dramatic wide shot."),
]


@pytest.mark.parametrize("original,faithful,corrupted", CASES, ids=[c[0][:24] for c in CASES])
def test_checks_accept_faithful_and_reject_corrupted_rewrites(original, faithful, corrupted):
    embed = minilm_embedder()
    good = check_fidelity(original, faithful, embed, threshold=0.5)
    bad = check_fidelity(original, corrupted, embed, threshold=0.5)
    assert good.ok, good.describe()
    assert not bad.ok and bad.missing, bad.describe()


def test_noun_synonyms_count_but_other_nouns_do_not():
    embed = minilm_embedder()
    assert check_fidelity("kids on a sofa", "Children sit on a couch.", embed, 0.0).missing == []
    assert check_fidelity("a cat on a sofa", "A dog sits on a sofa.", embed, 0.0).missing == ["the noun 'cat' is missing"]
