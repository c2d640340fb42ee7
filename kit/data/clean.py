"""Filters and duplicate removal shared by `kit data build` and `kit data generate`."""

import functools
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

# Phrases that break character: a role-play model must never learn to say these.
OUT_OF_CHARACTER = ("作为一个AI", "作为AI", "人工智能助手", "语言模型", "as an AI", "language model",
                    "I'm sorry, but", "OpenAI", "ChatGPT")
_CJK = re.compile(r"[\u3400-\u9fff]")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


@dataclass(frozen=True)
class Filters:
    min_chars: int = 2  # per assistant turn
    max_chars: int = 300
    min_cjk_ratio: float = 0.5  # share of letters that are Chinese characters ("language" filter)
    markers: tuple[str, ...] = ()  # if set, at least one must appear in the replies (persona filter)

    def reason(self, replies: str) -> str | None:
        """Why these replies are dropped, or None to keep them."""
        turns = replies.split("\n")
        if any(len(t.strip()) < self.min_chars for t in turns):
            return "too short"
        if any(len(t) > self.max_chars for t in turns):
            return "too long"
        letters = _LETTER.findall(replies)
        if letters and len(_CJK.findall(replies)) / len(letters) < self.min_cjk_ratio:
            return "not Chinese"
        if any(p.lower() in replies.lower() for p in OUT_OF_CHARACTER):
            return "out of character"
        if self.markers and not any(m in replies for m in self.markers):
            return "no persona marker"
        return None


def normalize(text: str) -> str:
    """Text with punctuation, spaces and case removed: what 'the same line' means for dedup."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if ch.isalnum())


_PRIME = (1 << 32) - 5  # a, b, h < 2**32, so a*h + b stays inside uint64


@functools.cache
def _permutations(count: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)  # fixed: signatures must not change between runs
    return (rng.integers(1, _PRIME, count, dtype=np.uint64), rng.integers(0, _PRIME, count, dtype=np.uint64))


def _shingles(text: str, n: int = 2) -> set[str]:
    return {text[i:i + n] for i in range(max(1, len(text) - n + 1))}


@dataclass
class Deduper:
    """Exact (normalized) and near-duplicate (character-bigram Jaccard) removal.

    Near duplicates are found through MinHash with banding (LSH), so each new text is compared only
    with the few earlier texts that share a band, then confirmed with the exact Jaccard similarity.
    """
    threshold: float = 0.8
    bands: int = 16
    rows: int = 2
    _exact: set[str] = field(default_factory=set)
    _buckets: dict = field(default_factory=dict)
    _kept: list[set[str]] = field(default_factory=list)

    def _signature(self, grams: set[str]) -> list[int]:
        # One 32-bit hash per shingle, then bands x rows universal-hash permutations (a*h + b) mod p,
        # vectorised: one blake2b per shingle instead of one per shingle and permutation.
        hashes = np.fromiter((int.from_bytes(hashlib.blake2b(g.encode(), digest_size=4).digest(), "little")
                              for g in grams), dtype=np.uint64, count=len(grams))
        a, b = _permutations(self.bands * self.rows)
        return ((a[:, None] * hashes[None, :] + b[:, None]) % _PRIME).min(axis=1).tolist()

    def check(self, text: str) -> str | None:
        """'duplicate' / 'near duplicate' if seen before, else None (and remember the text)."""
        norm = normalize(text)
        if norm in self._exact:
            return "duplicate"
        grams = _shingles(norm)
        sig = self._signature(grams)
        keys = [(b, tuple(sig[b * self.rows:(b + 1) * self.rows])) for b in range(self.bands)]
        candidates = {i for k in keys for i in self._buckets.get(k, ())}
        for i in candidates:
            other = self._kept[i]
            if len(grams & other) / len(grams | other) >= self.threshold:
                return "near duplicate"
        self._exact.add(norm)
        self._kept.append(grams)
        for k in keys:
            self._buckets.setdefault(k, []).append(len(self._kept) - 1)
        return None
