"""Safe arithmetic for the card games: tokenizer, exact evaluator and solver.

RL4VLM ran Python's `eval()` on model-written formulas. Here a formula is a
list of tokens (numbers, `+ - * /`, parentheses) evaluated by a small
recursive-descent parser over `fractions.Fraction`, so nothing the model writes
is ever executed, `8/(3-8/3)` is exactly 24, and division by zero is an
ordinary invalid formula rather than a crash.

The solver answers two questions:
- `is_solvable(values, target)`: can the values, each used exactly once, reach
  the target? It works on sets of reachable values, memoised per multiset, and
  at the top level inverts the last operation, so checking all 1,820 deals of
  the classic 24 game takes well under a second.
- `solve(values, target)`: one concrete solution as tokens (printed with the
  fewest parentheses), which the oracle types in token by token.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from functools import lru_cache

from rlvlm.errors import RlvlmError

OPERATORS = ("+", "-", "*", "/")
# Binding strength: a child needs parentheses when it binds more loosely than
# its parent operator (see `_needs_parens`).
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
# Caps keep adversarial input cheap: no formula in these games comes close.
MAX_TOKENS = 200
MAX_DEPTH = 32


class FormulaError(RlvlmError, ValueError):
    """A formula is malformed, uses a forbidden token or divides by zero."""


def tokenize(formula: str | list[str] | tuple[str, ...]) -> list[str]:
    """Split a formula into tokens: integers, `+ - * /`, `(` and `)`.

    A list or tuple is taken as already tokenised (each item is checked).
    Anything else, letters, dots, `**`, underscores, raises FormulaError:
    only arithmetic ever reaches the evaluator.
    """
    if isinstance(formula, (list, tuple)):
        tokens = [str(t) for t in formula]
        for tok in tokens:
            if not (tok.isdigit() and tok.isascii()) and tok not in OPERATORS and tok not in "()":
                raise FormulaError(f"formula token {tok!r} is not a number, operator or parenthesis")
            if tok == "":
                raise FormulaError("formula has an empty token")
    else:
        tokens = []
        i, n = 0, len(formula)
        while i < n:
            ch = formula[i]
            if ch.isspace():
                i += 1
            elif "0" <= ch <= "9":
                j = i
                while j < n and "0" <= formula[j] <= "9":
                    j += 1
                tokens.append(formula[i:j])
                i = j
            elif ch in "+-*/()":
                tokens.append(ch)
                i += 1
            else:
                raise FormulaError(f"formula character {ch!r} is not allowed (only digits, + - * / and parentheses)")
            if len(tokens) > MAX_TOKENS:
                break
    if len(tokens) > MAX_TOKENS:
        raise FormulaError(f"formula is longer than {MAX_TOKENS} tokens")
    return tokens


class _Parser:
    """expr := term (('+'|'-') term)* ; term := factor (('*'|'/') factor)* ;
    factor := NUMBER | '(' expr ')'. No unary minus: the games never need one."""

    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expr(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term()
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self) -> Fraction:
        value = self.factor()
        while self.peek() in ("*", "/"):
            op = self.take()
            rhs = self.factor()
            if op == "*":
                value = value * rhs
            elif rhs == 0:
                raise FormulaError("division by zero")
            else:
                value = value / rhs
        return value

    def factor(self) -> Fraction:
        tok = self.peek()
        if tok is None:
            raise FormulaError("formula ends where a number was expected")
        if tok == "(":
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise FormulaError(f"parentheses nested deeper than {MAX_DEPTH}")
            value = self.expr()
            if self.peek() != ")":
                raise FormulaError("unbalanced parentheses")
            self.take()
            self.depth -= 1
            return value
        if tok.isdigit():
            self.take()
            return Fraction(int(tok))
        raise FormulaError(f"unexpected {tok!r} where a number was expected")


def evaluate(formula: str | list[str] | tuple[str, ...]) -> Fraction:
    """Exact value of an arithmetic formula; FormulaError if it is not one."""
    tokens = tokenize(formula)
    if not tokens:
        raise FormulaError("formula is empty")
    parser = _Parser(tokens)
    value = parser.expr()
    if parser.pos != len(tokens):
        raise FormulaError(f"unexpected {tokens[parser.pos]!r} after a complete expression")
    return value


def is_viable_prefix(tokens: list[str] | tuple[str, ...]) -> bool:
    """Can `tokens` still be extended into a syntactically valid formula?

    A two-state machine: we either expect an operand (at the start, after an
    operator or `(`) or an operator (after a number or `)`); `)` needs an open
    parenthesis. Used to reject dead-end moves when the env is configured to.
    """
    expect_operand, depth = True, 0
    for tok in tokens:
        if tok.isdigit():
            if not expect_operand:
                return False
            expect_operand = False
        elif tok == "(":
            if not expect_operand:
                return False
            depth += 1
        elif tok == ")":
            if expect_operand or depth == 0:
                return False
            depth -= 1
        elif tok in OPERATORS:
            if expect_operand:
                return False
            expect_operand = True
        else:
            return False
    return True


# ----------------------------------------------------------------- solver ---
def _apply(op: str, a: Fraction, b: Fraction) -> Fraction | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if b != 0 else None


def _splits(values: tuple[int, ...]):
    """Each way to split a sorted multiset into an ordered pair (left, right)
    of non-empty sub-multisets, without repeating identical pairs."""
    n = len(values)
    seen = set()
    for r in range(1, n):
        for idx in itertools.combinations(range(n), r):
            left = tuple(values[i] for i in idx)
            right = tuple(values[i] for i in range(n) if i not in idx)
            if (left, right) not in seen:
                seen.add((left, right))
                yield left, right


@lru_cache(maxsize=65536)
def reachable(values: tuple[int, ...], ops: str = "+-*/") -> frozenset[Fraction]:
    """Every exact value an expression using each of `values` once can take.

    `values` must be sorted (the cache key is the multiset)."""
    if len(values) == 1:
        return frozenset({Fraction(values[0])})
    out = set()
    for left, right in _splits(values):
        for a in reachable(left, ops):
            for b in reachable(right, ops):
                for op in ops:
                    v = _apply(op, a, b)
                    if v is not None:
                        out.add(v)
    return frozenset(out)


def _needed_right(op: str, a: Fraction, target: Fraction) -> Fraction | None:
    """The right operand b with `a op b == target`, if one exists."""
    if op == "+":
        return target - a
    if op == "-":
        return a - target
    if op == "*":
        return target / a if a != 0 else None
    # a / b == target, b != 0
    return a / target if target != 0 and a != 0 else None


def _find(values: tuple[int, ...], target: Fraction, ops: str):
    """A tree (op, left, right) / int with value `target`, or None.

    Inverting the last operation turns "try every value of the right side"
    into one set lookup, which is what makes the search fast."""
    if len(values) == 1:
        return values[0] if Fraction(values[0]) == target else None
    for left, right in _splits(values):
        right_vals = reachable(right, ops)
        for a in sorted(reachable(left, ops)):
            for op in ops:
                b = _needed_right(op, a, target)
                if b is None or b not in right_vals:
                    continue
                return (op, _find(left, a, ops), _find(right, b, ops))
    return None


def _prec(tree) -> int:
    return 3 if isinstance(tree, int) else _PRECEDENCE[tree[0]]


def _needs_parens(child, op: str, is_right: bool) -> bool:
    # a-(b+c) and a/(b*c) need them; a+(b-c) and a*(b/c) do not (exact arithmetic).
    if _prec(child) < _PRECEDENCE[op]:
        return True
    return is_right and _prec(child) == _PRECEDENCE[op] and op in "-/"


def tree_tokens(tree) -> list[str]:
    """Print an expression tree as tokens with the fewest parentheses."""
    if isinstance(tree, int):
        return [str(tree)]
    op, left, right = tree
    out = []
    for child, is_right in ((left, False), (right, True)):
        toks = tree_tokens(child)
        if _needs_parens(child, op, is_right):
            toks = ["(", *toks, ")"]
        out.extend(toks)
        if not is_right:
            out.append(op)
    return out


def is_solvable(values, target: int = 24, ops: str = "+-*/") -> bool:
    """True when `values` (each used once) can make `target` with `ops`."""
    vals = tuple(sorted(int(v) for v in values))
    if len(vals) == 1:
        return vals[0] == target
    return _find(vals, Fraction(target), ops) is not None


def solve(values, target: int = 24, ops: str = "+-*/") -> list[str] | None:
    """One solution as tokens, e.g. ['6', '/', '(', '1', '-', '3', '/', '4', ')'].

    Deterministic for a given multiset, whatever order the cards are in."""
    found = _solve_sorted(tuple(sorted(int(v) for v in values)), int(target), ops)
    return None if found is None else list(found)


@lru_cache(maxsize=8192)
def _solve_sorted(values: tuple[int, ...], target: int, ops: str) -> tuple[str, ...] | None:
    # Cached: the oracle asks again at every step of an episode.
    tree = _find(values, Fraction(target), ops)
    return None if tree is None else tuple(tree_tokens(tree))


def _all_trees(items: tuple, ops: str):
    """Every expression tree over `items` (ints or subtrees); brute force,
    used only when the oracle must continue someone else's partial formula."""
    if len(items) == 1:
        yield items[0]
        return
    for i, j in itertools.permutations(range(len(items)), 2):
        rest = tuple(items[k] for k in range(len(items)) if k not in (i, j))
        for op in ops:
            yield from _all_trees(rest + ((op, items[i], items[j]),), ops)


def _tree_value(tree) -> Fraction | None:
    if isinstance(tree, int):
        return Fraction(tree)
    a, b = _tree_value(tree[1]), _tree_value(tree[2])
    if a is None or b is None:
        return None
    return _apply(tree[0], a, b)


@lru_cache(maxsize=256)
def _all_solutions(values: tuple[int, ...], target: int, ops: str) -> tuple[tuple[str, ...], ...]:
    sols = {tuple(tree_tokens(t)) for t in _all_trees(values, ops) if _tree_value(t) == target}
    return tuple(sorted(sols, key=lambda s: (len(s), s)))


def complete(values, prefix, target: int = 24, ops: str = "+-*/") -> list[str] | None:
    """A full solution whose tokens start with `prefix`, or None if the
    partial formula can no longer reach the target.

    Fast path: the canonical `solve()` answer usually extends the prefix
    (it does whenever the oracle typed the prefix itself)."""
    prefix = list(prefix)
    first = solve(values, target, ops)
    if first is None:
        return None
    if first[: len(prefix)] == prefix:
        return first
    vals = tuple(sorted(int(v) for v in values))
    for sol in _all_solutions(vals, int(target), ops):
        if list(sol[: len(prefix)]) == prefix:
            return list(sol)
    return None


def count_solvable(max_value: int = 13, cards: int = 4, target: int = 24, ops: str = "+-*/") -> tuple[int, int]:
    """(solvable, total) over all multisets of `cards` values in 1..max_value.

    The classic figure for the 24 game (values 1-13, four cards) is 1362 of 1820."""
    combos = list(itertools.combinations_with_replacement(range(1, max_value + 1), cards))
    return sum(is_solvable(c, target, ops) for c in combos), len(combos)
