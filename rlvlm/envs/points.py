"""EZPoints and Points24 (RL4VLM gym-cards): build a formula from the cards.

Each step appends one token to the formula. Rules (../shared/MISSION.md):
- a number token must be the value of a card not used yet (A=1, J/Q/K=10);
  otherwise it is a no-op with `illegal_penalty` (-1) ("reusing a card");
- "=" submits: `correct_reward` (+10) if every card is used and the formula
  equals the target, else `wrong_penalty` (-1); either way the episode ends
  (set wrong_equals_ends=False to let a wrong "=" be a no-op instead);
- the formula has room for `max_formula_tokens` tokens (5 / 20): the move
  that goes past that ends the episode as a failed attempt, with
  `wrong_penalty` (-1) on that step, terminated (not truncated). The
  original charges -1 for it too; its env flags that step truncated, but its
  PPO (masks from done; time-limit bootstrapping only at gymnasium's 300
  steps, and off) learns from it as terminal. Running out of room is the
  game's outcome, not a time limit: were it bootstrapped with reward 0,
  stalling would score better than a wrong "=".

EZPoints: two cards, target 12, tokens 1-10 + * =. Points24: four cards,
target 24, tokens 1-10 + - * / ( ) =.

Fixes to the original: formulas are token lists evaluated by the safe
fraction parser (so "1" then "2" is not the number 12, and nothing is
eval'd); deals are solvable by default (`solvable_only`), checked by the exact
solver; `syntax_check=True` additionally rejects appends that can never
become a valid formula (off by default, as in the original). Where the
original's rules are a matter of taste rather than a bug, `length_rule` and
`deal_rule` choose them (see PointsEnv).
"""

from __future__ import annotations

from PIL import ImageDraw

from rlvlm.envs.base import TextImageEnv, check_choice, check_float, check_int, reply_format
from rlvlm.envs.cards import RANKS, SUITS, deal, rank_value
from rlvlm.envs.formula import FormulaError, complete, evaluate, is_solvable, is_viable_prefix
from rlvlm.tasks.render import card_row, draw_text, new_canvas
from rlvlm.errors import ConfigError

_MAX_DEAL_TRIES = 10_000
LENGTH_RULES = ("accepted", "rl4vlm")
DEAL_RULES = ("deck", "rl4vlm")


def _rank(card) -> str:
    """A rank from "A".."K" or a value 1..13 (1 = A, 11-13 = J, Q, K)."""
    if isinstance(card, str) and card.upper() in RANKS:
        return card.upper()
    if isinstance(card, int) and 1 <= card <= 13:
        return RANKS[card - 1]
    raise ConfigError(f"card {card!r} is not a rank (A, 2-10, J, Q, K) or a value 1-13")


class PointsEnv(TextImageEnv):
    """Shared engine; EZPointsEnv and Points24Env fix the game's constants.

    Two options choose between our rules and those of the original (RL4VLM
    gym-cards, gym_cards/envs/ezpoints.py and points.py); pass
    `length_rule="rl4vlm", deal_rule="rl4vlm"` to reproduce the original's
    episodes (its bugs stay fixed: see the module docstring).

    length_rule: which moves use up the formula's `max_formula_tokens` room.
      "accepted" (default): only tokens the formula accepted. A rejected move
        (a reused card, a number no card shows, a syntax_check refusal, a
        wrong "=" under wrong_equals_ends=False) is a no-op that costs its
        penalty and nothing else; episodes are bounded by max_steps
        (2 x max_formula_tokens). Why the default: a mistake costs its
        penalty once and never makes the hand unwinnable. Under "rl4vlm" it
        also eats room: EZPoints solutions take 3 of the 5 slots, so after a
        third rejected card no solution fits and the rest of the episode is
        lost whatever the model does, steps that carry no learning signal.
      "rl4vlm": every move that does not end the episode uses one slot, as
        in the original, which appends a blank " " to the formula for a
        rejected card. A game then lasts at most max_formula_tokens + 1
        moves (6 / 21). The original notices the overflow one step later:
        at the start of the next step it charges -1 whatever that action is;
        here the overflowing move itself ends the episode and carries the
        -1 (on top of its own -1 if it was rejected), so returns are the
        original's, and no model call is spent on an action that cannot
        matter. Replies that do not parse never reach the game and use no
        slot in either rule (the original replaced them by a random action).

    deal_rule: how a hand is dealt (reset options={"cards": ...} overrides both).
      "deck" (default): from one shuffled 52-card deck, dealt again until
        solvable (solvable_only). EZPoints hands come in proportion to the
        card pairs that make 12: (2, 10) 64/150 (sixteen 10-valued cards),
        (2, 6), (3, 4), (3, 9), (4, 8), (5, 7) 16/150 each, (6, 6) 6/150.
        Why the default: it is what "deal two cards" means, every card of
        the deck that can be in a solution appears (J, Q, K on either side),
        and it is the same procedure for both games.
      "rl4vlm": the original's dealer. EZPoints: the first card is uniform
        over 2..K (never an ace); the second is the one that makes 12 with
        it, by "*" with probability 1/2 when the first is 2, 3, 4 or 6 and by
        "+" otherwise (a 10-valued second card is always a 10, never J/Q/K);
        suits are uniform and the two cards are shown in random order. So
        (2, 10) 9/24, (5, 7) 4/24, (3, 9) and (4, 8) 3/24 each, (2, 6) and
        (3, 4) 2/24 each, (6, 6) 1/24. It is built for 12 with J/Q/K as 10,
        so it needs target=12 and face_cards_as_10=True. Points24: four
        independent cards (an infinite deck, as the original draws four
        independent ranks and suits), dealt again until solvable under
        solvable_only (our fix, kept).
    """

    num_cards = 4
    default_target = 24
    ops = "+-*/"
    parens = True
    default_max_tokens = 20
    game_name = "Points24"

    def __init__(
        self,
        target: int | None = None,
        face_cards_as_10: bool = True,
        solvable_only: bool = True,
        correct_reward: float = 10.0,
        wrong_penalty: float = -1.0,
        illegal_penalty: float = -1.0,
        wrong_equals_ends: bool = True,
        syntax_check: bool = False,
        max_formula_tokens: int | None = None,
        length_rule: str = "accepted",
        deal_rule: str = "deck",
        **kwargs,
    ):
        self.target = check_int("target", self.default_target if target is None else target, 1, 10**6)
        self.face_cards_as_10 = bool(face_cards_as_10)
        self.solvable_only = bool(solvable_only)
        self.correct_reward = check_float("correct_reward", correct_reward)
        self.wrong_penalty = check_float("wrong_penalty", wrong_penalty)
        self.illegal_penalty = check_float("illegal_penalty", illegal_penalty)
        self.wrong_equals_ends = bool(wrong_equals_ends)
        self.syntax_check = bool(syntax_check)
        self.max_formula_tokens = check_int(
            "max_formula_tokens", self.default_max_tokens if max_formula_tokens is None else max_formula_tokens, 1, 1000
        )
        check_choice("length_rule", length_rule, LENGTH_RULES)
        check_choice("deal_rule", deal_rule, DEAL_RULES)
        self.length_rule = length_rule
        self.deal_rule = deal_rule
        self._check_deal_rule()
        top = 10 if self.face_cards_as_10 else 13
        self.legal_actions = (
            tuple(str(v) for v in range(1, top + 1)) + tuple(self.ops) + (("(", ")") if self.parens else ()) + ("=",)
        )
        kwargs.setdefault("max_steps", 2 * self.max_formula_tokens)
        super().__init__(**kwargs)

    # ---------------------------------------------------------- the game ---
    def _new_episode(self, options: dict) -> None:
        """options={"cards": ["A", "3", "4", "6"]} deals given ranks (spades)."""
        if "cards" in options:
            hand = [(_rank(c), "S") for c in options["cards"]]
            if len(hand) != self.num_cards:
                raise ConfigError(f"options cards={options['cards']!r} must list {self.num_cards} cards")
            self._set_hand(hand, [rank_value(r, self.face_cards_as_10) for r, _ in hand])
            return
        for _ in range(_MAX_DEAL_TRIES):
            hand = self._deal()
            values = [rank_value(r, self.face_cards_as_10) for r, _ in hand]
            if not self.solvable_only or is_solvable(values, self.target, self.ops):
                break
        else:
            raise ConfigError(
                f"target={self.target}: no solvable deal in {_MAX_DEAL_TRIES} tries; fix: use a reachable target or solvable_only=False"
            )
        self._set_hand(hand, values)

    def _check_deal_rule(self) -> None:
        """Refuse a deal_rule that cannot deal for this configuration."""

    def _deal(self) -> list[tuple[str, str]]:
        # rl4vlm: the original's Points24 draws each card independently.
        return deal(self.np_random, self.num_cards, replace=self.deal_rule == "rl4vlm")

    def _set_hand(self, hand, values) -> None:
        self.cards = [r for r, _ in hand]
        self.suits = [s for _, s in hand]
        self.values = values
        self.used = [False] * self.num_cards
        self.tokens: list[str] = []
        # Slots of max_formula_tokens used so far: len(tokens), plus rejected
        # moves under length_rule="rl4vlm".
        self.formula_length = 0
        self._layer = None

    def _act(self, action: str):
        if action == "=":
            return self._submit()
        if action.isdigit():
            free = [i for i, v in enumerate(self.values) if v == int(action) and not self.used[i]]
            if not free:
                return self._illegal(f"no unused card has value {action}")
            if self.syntax_check and not is_viable_prefix(self.tokens + [action]):
                return self._illegal(f"{action!r} cannot follow {''.join(self.tokens)!r}")
            self.used[free[0]] = True
        elif self.syntax_check and not is_viable_prefix(self.tokens + [action]):
            return self._illegal(f"{action!r} cannot follow {''.join(self.tokens) or 'an empty formula'!r}")
        self.tokens.append(action)
        return self._use_slot(0.0, {})

    def _illegal(self, reason: str):
        return self._noop(self.illegal_penalty, {"action_legal": False, "illegal_reason": reason})

    def _noop(self, reward: float, extra: dict):
        """A move the game refused: under length_rule="rl4vlm" it still uses a slot."""
        if self.length_rule == "rl4vlm":
            return self._use_slot(reward, extra)
        return reward, False, extra

    def _use_slot(self, reward: float, extra: dict):
        """Count one slot; the move that overflows the formula ends the
        episode as a failure: `wrong_penalty` on top of the move's own reward,
        terminated (see the module docstring)."""
        self.formula_length += 1
        if self.formula_length <= self.max_formula_tokens:
            return reward, False, extra
        return reward + self.wrong_penalty, True, {**extra, "over_length": True}

    def _submit(self):
        try:
            value = evaluate(self.tokens) if self.tokens else None
            error = None
        except FormulaError as exc:
            value, error = None, str(exc)
        correct = value == self.target and all(self.used)
        extra = {"formula_value": None if value is None else str(value), "formula_error": error}
        if correct:
            return self.correct_reward, True, extra
        if self.wrong_equals_ends:
            return self.wrong_penalty, True, extra
        return self._noop(self.wrong_penalty, extra)

    def _state(self) -> dict:
        return {
            "cards": list(self.cards),
            "suits": list(self.suits),
            "values": list(self.values),
            "remaining": sorted(v for v, u in zip(self.values, self.used) if not u),
            "used": list(self.used),
            "formula": "".join(self.tokens),
            "formula_tokens": list(self.tokens),
            "formula_length": self.formula_length,
            "target": self.target,
        }

    # ------------------------------------------------------------ images ---
    def _draw(self):
        # The cards and label never change within an episode: draw them once
        # per episode and only add the formula at each step.
        if self._layer is None:
            self._layer = self._draw_cards()
        img = self._layer.copy()
        formula = "".join(self.tokens)
        if formula:
            s, pad = self.image_size, self.image_size * 0.04
            draw_text(ImageDraw.Draw(img), (pad, s * 0.8, s - pad, s - pad / 2), formula, align="left", max_size=int(s * 0.2))
        return img

    def _draw_cards(self):
        s = self.image_size
        img, draw = new_canvas(s)
        pad = s * 0.04
        cards = [(r, su, False) for r, su in zip(self.cards, self.suits)]
        card_bottom = s * 0.68
        if self.num_cards <= 3:
            card_row(img, (pad, pad, s - pad, card_bottom), cards)
        else:  # 2 x 2: each card twice as large as in one row of four
            mid = (pad + card_bottom) / 2
            card_row(img, (pad, pad, s - pad, mid - pad / 4), cards[:2], aspect=0.9)
            card_row(img, (pad, mid + pad / 4, s - pad, card_bottom), cards[2:], aspect=0.9)
        draw_text(draw, (pad, card_bottom + pad / 2, s - pad, s * 0.8), "Formula:", align="left")
        return img

    # ----------------------------------------------------------- prompts ---
    def _tokens_text(self) -> str:
        numbers = "1-10" if self.face_cards_as_10 else "1-13"
        symbols = " ".join(f'"{c}"' for c in self.ops + ("()" if self.parens else "") + "=")
        return f"a card number ({numbers}) or one of {symbols}"

    def _instructions(self) -> str:
        faces = "J, Q and K are 10" if self.face_cards_as_10 else "J=11, Q=12, K=13"
        n = "two" if self.num_cards == 2 else "four" if self.num_cards == 4 else str(self.num_cards)
        fmt = reply_format(
            [
                ("cards", "[" + ", ".join("abcdefgh"[: self.num_cards]) + "]"),
                ("formula", '"current formula"'),
                ("thoughts", '"a solution"'),
                ("action", '"next token"'),
            ],
            self.prompt_style,
        )
        return (
            f"{self.game_name} game. The image shows {n} cards and a formula. A is 1, {faces}. "
            f"Each step appends one token: {self._tokens_text()}. "
            f'Use every card once to make the formula equal {self.target}, then append "=".\n' + fmt
        )

    def _state_text(self) -> str:
        return f"Cards: {', '.join(map(str, self.values))}. Formula: {''.join(self.tokens)}"

    def oracle_reply(self, info: dict) -> str:
        """Type the next token of a solution that extends the current formula;
        with none left (an unsolvable deal, or someone else's mistake) submit."""
        prefix = list(info["formula_tokens"])
        solution = complete(info["values"], prefix, self.target, self.ops)
        if solution is None:
            thoughts, action = "no solution", "="
        else:
            thoughts = "".join(solution) + f"={self.target}"
            action = solution[len(prefix)] if len(prefix) < len(solution) else "="
        return self.reply({"cards": list(info["values"]), "formula": info["formula"], "thoughts": thoughts, "action": action})


class EZPointsEnv(PointsEnv):
    num_cards = 2
    default_target = 12
    ops = "+*"
    parens = False
    default_max_tokens = 5
    game_name = "EZPoints"

    def _check_deal_rule(self) -> None:
        if self.deal_rule == "rl4vlm" and (self.target != 12 or not self.face_cards_as_10):
            raise ConfigError(
                f"deal_rule='rl4vlm' deals the original's EZPoints hands, made for target=12 with J/Q/K as 10 "
                f"(got target={self.target}, face_cards_as_10={self.face_cards_as_10}); fix: use deal_rule='deck'"
            )

    def _deal(self) -> list[tuple[str, str]]:
        if self.deal_rule != "rl4vlm":
            return super()._deal()
        # The original's procedure (gym_cards/envs/ezpoints.py): the first
        # card uniform over 2..K, its partner the card that makes 12 with it,
        # by "*" half the time when the first divides 12, else by "+".
        rng = self.np_random
        first = RANKS[int(rng.integers(1, 13))]
        v = rank_value(first)
        partner = self.target // v if self.target % v == 0 and rng.random() < 0.5 else self.target - v
        hand = [(first, SUITS[int(rng.integers(4))]), (RANKS[partner - 1], SUITS[int(rng.integers(4))])]
        if rng.random() < 0.5:
            hand.reverse()
        return hand


class Points24Env(PointsEnv):
    pass
