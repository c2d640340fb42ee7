"""Style-marker rate: the share of generated replies that use at least one of the persona's markers
(style_markers + catchphrases from persona.yaml, e.g. the self-address 俺老猪).

A garbled reply (one holding U+FFFD, i.e. token bytes that decode to no text) is speech in no voice:
it counts as having no marker, even if a marker happens to sit among the noise."""

from dataclasses import dataclass

from kit.persona import Persona


GARBLED = "\ufffd"


@dataclass
class StyleResult:
    rate: float  # replies with >= 1 marker / replies
    markers_per_reply: float
    replies: int
    garbled: int


def is_garbled(text: str) -> bool:
    return GARBLED in text


def persona_markers(persona: Persona) -> list[str]:
    return list(dict.fromkeys(persona.style_markers + persona.catchphrases))


def markers_in(text: str, markers: list[str]) -> list[str]:
    return [] if is_garbled(text) else [m for m in markers if m in text]


def style_marker_rate(replies: list[str], persona: Persona) -> StyleResult:
    markers = persona_markers(persona)
    hits = [len(markers_in(r, markers)) for r in replies]
    n = max(len(replies), 1)
    return StyleResult(sum(h > 0 for h in hits) / n, sum(hits) / n, len(replies),
                       sum(map(is_garbled, replies)))
