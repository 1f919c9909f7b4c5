"""Blackjack (RL4VLM gym-cards, after gymnasium's Blackjack).

Rules:
- the dealer shows one card (the other is face down until the end); the
  player sees both of theirs; A counts 1 or 11, J/Q/K 10;
- "hit" draws a card (over 21: -1, the episode ends); "stand" lets the dealer
  draw to 17 (standing on soft 17 unless dealer_hits_soft_17) and compares:
  +1 win, -1 loss, 0 draw;
- an infinite deck by default (as in gymnasium), or one shuffled 52-card
  deck per episode with infinite_deck=False.
`natural_reward` pays a two-card 21 that wins (1.0 = an ordinary win, as in
gymnasium's default; 1.5 for casino rules).
"""

from __future__ import annotations

from rlvlm.envs.base import TextImageEnv, check_float, reply_format
from rlvlm.envs.cards import RANKS, deal, rank_value
from rlvlm.tasks.render import card_row, draw_text, new_canvas
from rlvlm.errors import ConfigError


def hand_value(ranks) -> tuple[int, bool]:
    """(best total, soft): an ace counts 11 when that does not bust the hand."""
    total = sum(rank_value(r) for r in ranks)
    if "A" in ranks and total + 10 <= 21:
        return total + 10, True
    return total, False


def up_value(rank: str) -> int:
    """The dealer's up card as basic strategy reads it (ace high)."""
    return 11 if rank == "A" else rank_value(rank)


def basic_strategy(player_total: int, soft: bool, dealer_up: int) -> str:
    """Hit/stand basic strategy (no doubling or splitting)."""
    if soft:
        if player_total >= 19:
            return "stand"
        if player_total == 18:
            return "stand" if 2 <= dealer_up <= 8 else "hit"
        return "hit"
    if player_total >= 17:
        return "stand"
    if player_total >= 13:
        return "stand" if 2 <= dealer_up <= 6 else "hit"
    if player_total == 12:
        return "stand" if 4 <= dealer_up <= 6 else "hit"
    return "hit"


class BlackjackEnv(TextImageEnv):
    legal_actions = ("stand", "hit")

    def __init__(self, dealer_hits_soft_17: bool = False, natural_reward: float = 1.0, infinite_deck: bool = True, **kwargs):
        self.dealer_hits_soft_17 = bool(dealer_hits_soft_17)
        self.natural_reward = check_float("natural_reward", natural_reward)
        self.infinite_deck = bool(infinite_deck)
        kwargs.setdefault("max_steps", 16)
        super().__init__(**kwargs)

    def _draw_card(self):
        if self._stacked:
            return self._stacked.pop(0)
        if self.infinite_deck:
            return deal(self.np_random, 1, replace=True)[0]
        return self._deck.pop()

    def _new_episode(self, options: dict) -> None:
        """options={"player": [...], "dealer": [...], "deck": [...]} (ranks)
        fix the hands and the next cards drawn, for hand-worked cases."""
        self._stacked = []
        for key in ("player", "dealer", "deck"):
            ranks = options.get(key, [])
            bad = [r for r in ranks if r not in RANKS]
            if bad or (key != "deck" and ranks and len(ranks) != 2):
                raise ConfigError(f"options {key}={ranks!r} must be {'' if key == 'deck' else 'two '}ranks from {', '.join(RANKS)}")
        if not self.infinite_deck:
            self._deck = deal(self.np_random, 52)
        self.player = [self._draw_card(), self._draw_card()]
        self.dealer = [self._draw_card(), self._draw_card()]
        if options.get("player"):
            self.player = [(r, "S") for r in options["player"]]
        if options.get("dealer"):
            self.dealer = [(r, "H") for r in options["dealer"]]
        self._stacked = [(r, "C") for r in options.get("deck", [])]
        self.revealed = False

    def _ranks(self, hand):
        return [r for r, _ in hand]

    def _act(self, action: str):
        if action == "hit":
            self.player.append(self._draw_card())
            if hand_value(self._ranks(self.player))[0] > 21:
                self.revealed = True
                return -1.0, True, {"outcome": "bust"}
            return 0.0, False, {}
        self.revealed = True
        while True:
            total, soft = hand_value(self._ranks(self.dealer))
            if total < 17 or (total == 17 and soft and self.dealer_hits_soft_17):
                self.dealer.append(self._draw_card())
            else:
                break
        player, dealer = hand_value(self._ranks(self.player))[0], hand_value(self._ranks(self.dealer))[0]
        if dealer > 21 or player > dealer:
            natural = len(self.player) == 2 and player == 21
            return (self.natural_reward if natural else 1.0), True, {"outcome": "win"}
        if player < dealer:
            return -1.0, True, {"outcome": "loss"}
        return 0.0, True, {"outcome": "draw"}

    def _state(self) -> dict:
        player_total, soft = hand_value(self._ranks(self.player))
        shown = self.dealer if self.revealed else self.dealer[:1]
        return {
            "player": self._ranks(self.player),
            "player_sum": player_total,
            "usable_ace": soft,
            "dealer": self._ranks(shown),
            "dealer_up": self.dealer[0][0],
            "dealer_sum": hand_value(self._ranks(shown))[0],
        }

    def _draw(self):
        s = self.image_size
        img, draw = new_canvas(s)
        pad, half = s * 0.04, s / 2
        dealer_cards = [(r, su, False) for r, su in self.dealer]
        if not self.revealed:
            dealer_cards[1] = (None, None, True)
        for top, label, cards in ((0, "Dealer", dealer_cards), (half, "Player", [(r, su, False) for r, su in self.player])):
            draw_text(draw, (pad, top + pad / 2, s * 0.5, top + s * 0.11), label, align="left")
            card_row(img, (pad, top + s * 0.12, s - pad, top + half - pad / 2), cards)
        draw.line((0, half, s, half), fill=(0, 0, 0), width=max(1, s // 112))
        return img

    def _instructions(self) -> str:
        fmt = reply_format([("thoughts", '"dealer D, player P, hit or stand"'), ("action", '"hit" or "stand"')], self.prompt_style)
        return (
            "Blackjack. The image shows the dealer's cards (top, one face down) and yours (bottom). "
            "A counts 1 or 11; J, Q, K count 10. Beat the dealer without going over 21; "
            'the dealer draws to 17. "hit" takes a card, "stand" ends your turn.\n' + fmt
        )

    def _state_text(self) -> str:
        return f"Dealer shows {self.dealer[0][0]}. Your cards: {', '.join(self._ranks(self.player))}."

    def oracle_reply(self, info: dict) -> str:
        total, soft, up = info["player_sum"], info["usable_ace"], up_value(info["dealer_up"])
        action = basic_strategy(total, soft, up)
        thoughts = f"dealer {up}, player {'soft ' if soft else ''}{total}, {action}"
        return self.reply({"thoughts": thoughts, "action": action})
