"""EZPoints and Points24 (RL4VLM gym-cards): build a formula from the cards.

Each step appends one token to the formula. Rules (../shared/MISSION.md):
- a number token must be the value of a card not used yet (A=1, J/Q/K=10);
  otherwise it is a no-op with `illegal_penalty` (-1) ("reusing a card");
- "=" submits: `correct_reward` (+10) if every card is used and the formula
  equals the target, else `wrong_penalty` (-1); either way the episode ends
  (set wrong_equals_ends=False to let a wrong "=" be a no-op instead);
- the episode truncates when the formula grows past `max_formula_tokens`.

EZPoints: two cards, target 12, tokens 1-10 + * =. Points24: four cards,
target 24, tokens 1-10 + - * / ( ) =.

Fixes to the original: formulas are token lists evaluated by the safe
fraction parser (so "1" then "2" is not the number 12, and nothing is
eval'd); deals are solvable by default (`solvable_only`), checked by the exact
solver; `syntax_check=True` additionally rejects appends that can never
become a valid formula (off by default, as in the original).
"""

from __future__ import annotations

from PIL import ImageDraw

from rlvlm.envs.base import TextImageEnv, check_float, check_int, reply_format
from rlvlm.envs.cards import RANKS, deal, rank_value
from rlvlm.envs.formula import FormulaError, complete, evaluate, is_solvable, is_viable_prefix
from rlvlm.envs.render import card_row, draw_text, new_canvas
from rlvlm.errors import ConfigError

_MAX_DEAL_TRIES = 10_000


def _rank(card) -> str:
    """A rank from "A".."K" or a value 1..13 (1 = A, 11-13 = J, Q, K)."""
    if isinstance(card, str) and card.upper() in RANKS:
        return card.upper()
    if isinstance(card, int) and 1 <= card <= 13:
        return RANKS[card - 1]
    raise ConfigError(f"card {card!r} is not a rank (A, 2-10, J, Q, K) or a value 1-13")


class PointsEnv(TextImageEnv):
    """Shared engine; EZPointsEnv and Points24Env fix the game's constants."""

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
            hand = deal(self.np_random, self.num_cards)
            values = [rank_value(r, self.face_cards_as_10) for r, _ in hand]
            if not self.solvable_only or is_solvable(values, self.target, self.ops):
                break
        else:
            raise ConfigError(
                f"target={self.target}: no solvable deal in {_MAX_DEAL_TRIES} tries; fix: use a reachable target or solvable_only=False"
            )
        self._set_hand(hand, values)

    def _set_hand(self, hand, values) -> None:
        self.cards = [r for r, _ in hand]
        self.suits = [s for _, s in hand]
        self.values = values
        self.used = [False] * self.num_cards
        self.tokens: list[str] = []
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
        return 0.0, False, {}

    def _illegal(self, reason: str):
        return self.illegal_penalty, False, {"action_legal": False, "illegal_reason": reason}

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
        return self.wrong_penalty, self.wrong_equals_ends, extra

    def _over_limit(self) -> bool:
        return len(self.tokens) > self.max_formula_tokens

    def _state(self) -> dict:
        return {
            "cards": list(self.cards),
            "suits": list(self.suits),
            "values": list(self.values),
            "remaining": sorted(v for v, u in zip(self.values, self.used) if not u),
            "used": list(self.used),
            "formula": "".join(self.tokens),
            "formula_tokens": list(self.tokens),
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


class Points24Env(PointsEnv):
    pass
