"""Playing cards shared by the card games: ranks, suits, values, dealing."""

from __future__ import annotations

import numpy as np

RANKS = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")
SUITS = ("S", "H", "D", "C")


def rank_value(rank: str, face_cards_as_10: bool = True) -> int:
    """A=1, number cards their number, J/Q/K 10 (or 11/12/13)."""
    i = RANKS.index(rank)
    return min(i + 1, 10) if face_cards_as_10 else i + 1


def deal(rng: np.random.Generator, n: int, replace: bool = False) -> list[tuple[str, str]]:
    """`n` (rank, suit) cards: from one shuffled 52-card deck, or, with
    replace=True, from an infinite deck (each card independent)."""
    if replace:
        return [(RANKS[int(rng.integers(13))], SUITS[int(rng.integers(4))]) for _ in range(n)]
    idx = rng.choice(52, size=n, replace=False)
    return [(RANKS[int(i) % 13], SUITS[int(i) // 13]) for i in idx]
