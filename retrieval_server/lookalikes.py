"""Look-alike corpora: the real documents of :mod:`retrieval_server.lookalike_families`
hidden among documents written from the same templates, for measuring retrieval where
names and details, not topics, tell documents apart.

``corpus(n)`` is deterministic and grows by appending: the first 1,000 documents of
``corpus(10_000)`` are ``corpus(1_000)``. The real documents come first; look-alikes then
cycle through the families. A look-alike never carries a real document's name, nor a real
document's values for a whole aspect (so every question keeps one right answer); it often
shares a part of one (same colours, other pattern).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from retrieval_server.chunking import Section
from retrieval_server.loaders import SourceDocument
from retrieval_server.lookalike_families import FAMILIES, QUESTIONS, Family, LookalikeQuestion

SEED = 18
_STEMS = (
    "Ash",
    "Bel",
    "Brack",
    "Carr",
    "Dun",
    "Elm",
    "Fen",
    "Gar",
    "Hal",
    "Iver",
    "Kel",
    "Lan",
    "Mar",
    "Nor",
    "Orr",
    "Pen",
    "Quar",
    "Ros",
    "Sel",
    "Tam",
    "Ull",
    "Vard",
    "Wes",
    "Yar",
    "Bram",
    "Cal",
    "Dray",
    "Esk",
    "Frem",
    "Glen",
    "Hest",
    "Ket",
    "Loth",
    "Mell",
    "Ness",
    "Ost",
    "Pyr",
    "Red",
    "Stan",
    "Thorn",
    "Wick",
    "Alder",
    "Birch",
    "Cold",
)
_ENDINGS = (
    "by",
    "ford",
    "mere",
    "wick",
    "ton",
    "holm",
    "stead",
    "moor",
    "dale",
    "gate",
    "hithe",
    "combe",
    "ley",
    "thorpe",
    "worth",
    "bury",
    "haven",
    "ness",
    "field",
    "well",
)
_FIRST = (
    "Ada",
    "Bram",
    "Cora",
    "Dell",
    "Edda",
    "Finn",
    "Greta",
    "Hugo",
    "Ines",
    "Jory",
    "Kaia",
    "Lorn",
    "Mira",
    "Nils",
    "Oda",
    "Pell",
    "Runa",
    "Sven",
    "Tilde",
    "Ulla",
    "Vik",
    "Wren",
    "Yannick",
    "Zora",
    "Ansel",
    "Bette",
    "Cato",
)
_LAST = (
    "Abbot",
    "Birk",
    "Coyle",
    "Dorran",
    "Eskew",
    "Fairley",
    "Gorse",
    "Hewitt",
    "Ingram",
    "Jessop",
    "Kettle",
    "Lusk",
    "Marlow",
    "Nairn",
    "Oakes",
    "Prynne",
    "Quill",
    "Rook",
    "Saddler",
    "Tarrant",
    "Umber",
    "Voss",
    "Wyatt",
    "Yeld",
)


@dataclass(frozen=True)
class LookalikeDocument:
    kind: str
    name: str
    real: bool
    document: SourceDocument
    slots: dict[str, str]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def source_of(kind: str, name: str) -> str:
    """The source (and so the document id) of the real document ``name`` of family ``kind``."""
    return f"lookalike://{kind}/{slug(name)}"


def _render(family: Family, slots: dict[str, str], source: str) -> SourceDocument:
    title = family.title.format(**slots)
    return SourceDocument(source, title, [Section("", family.body.format(**slots))], "txt")


def _words(values: list[str]) -> tuple[str, ...]:
    return tuple(sorted(w for v in values for w in re.findall(r"[a-z0-9]+", v.lower()) if w != "and"))


class _Drafter:
    """Slot values for one family's look-alikes, re-drawn until they clash with no real document."""

    def __init__(self, family: Family, rng: random.Random) -> None:
        self.family = family
        self.rng = rng
        self.real_names = {r["name"].lower() for r in family.real}
        self.forbidden = {
            aspect: {_words([r[slot] for slot in slots]) for r in family.real}
            for aspect, slots in family.aspects.items()
        }

    def _place(self) -> str:
        return self.rng.choice(_STEMS) + self.rng.choice(_ENDINGS)

    def draft(self) -> dict[str, str]:
        while True:
            slots = self._draw()
            if slots["name"].lower() in self.real_names:
                continue
            if any(
                _words([slots[s] for s in self.family.aspects[aspect]]) in taken
                for aspect, taken in self.forbidden.items()
            ):
                continue
            return slots

    def _draw(self) -> dict[str, str]:
        rng = self.rng
        slots = {
            "name": self._place() if rng.random() < 0.7 else f"{self._place()} {rng.choice(('Old', 'New', 'Upper'))}",
            "town": self._place(),
            "other": self._place(),
            "river": f"River {self._place()}",
            "person": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
        }
        for slot, pool in self.family.pools.items():
            if slot in self.family.pairs:
                first, second = rng.sample(list(pool), 2)
                slots[slot] = f"{first} and {second}"
            else:
                slots[slot] = rng.choice(pool)
        for slot, (low, high) in self.family.numbers.items():
            slots[slot] = str(rng.randint(low, high))
        return slots


def corpus(size: int, seed: int = SEED) -> Iterator[LookalikeDocument]:
    """``size`` documents: every real one first, then look-alikes (deterministic for a seed)."""
    real = [(f, slots) for f in FAMILIES for slots in f.real]
    if size < len(real):
        raise ValueError(f"a look-alike corpus holds at least the {len(real)} real documents")
    for family, slots in real:
        source = source_of(family.kind, slots["name"])
        yield LookalikeDocument(family.kind, slots["name"], True, _render(family, slots, source), slots)
    drafters = [_Drafter(f, random.Random(f"{seed}/{f.kind}")) for f in FAMILIES]
    for n in range(size - len(real)):
        drafter = drafters[n % len(drafters)]
        slots = drafter.draft()
        source = f"lookalike://{drafter.family.kind}/{n:07d}"
        yield LookalikeDocument(
            drafter.family.kind, slots["name"], False, _render(drafter.family, slots, source), slots
        )


def questions(by: str) -> list[LookalikeQuestion]:
    """The question set ``by`` = "name" or "content"."""
    if by not in ("name", "content"):
        raise ValueError(f"unknown question set {by!r}")
    return [q for q in QUESTIONS if q.by == by]
