"""Safe formula evaluation and the exact 24-game solver."""

from fractions import Fraction

import pytest

from rlvlm.envs.formula import (
    FormulaError,
    complete,
    count_solvable,
    evaluate,
    is_solvable,
    is_viable_prefix,
    solve,
    tokenize,
)


@pytest.mark.parametrize(
    "formula, value",
    [
        ("2*6", 12),
        ("10+2", 12),
        ("1+2*3", 7),
        ("(1+2)*3", 9),
        ("8/(3-8/3)", 24),  # needs exact fractions: 3-8/3 = 1/3
        ("6/(1-3/4)", 24),
        ("10-4-3", 3),  # left-associative
        ("12/2/3", 2),
        (" 3 * ( 4 + 4 ) ", 24),
        (["10", "+", "10", "+", "4"], 24),
    ],
)
def test_evaluate_hand_values(formula, value):
    assert evaluate(formula) == Fraction(value)


def test_evaluate_keeps_fractions_exact():
    assert evaluate("1/3") == Fraction(1, 3)
    assert evaluate("1/3+1/3+1/3") == 1


@pytest.mark.parametrize(
    "formula",
    [
        "1/0",
        "5/(3-3)",
        "4/(2-2)*3",
        "",
        "+",
        "2+",
        "(2+3",
        "2+3)",
        "()",
        "2 3",  # two numbers in a row are not the number 23
        "-3+27",  # no unary minus
        "2**3",
        "1.5*16",
        "__import__('os').system('ls')",
        "abs(24)",
        "24 if 1 else 0",
        "0x18",
        "2^3",
        "\u0662\u0664",  # Arabic-Indic digits: not ASCII
        "(" * 40 + "1" + ")" * 40,
        "1+" * 300 + "1",
    ],
)
def test_evaluate_rejects_non_arithmetic_and_division_by_zero(formula):
    with pytest.raises(FormulaError):
        evaluate(formula)


def test_tokenize_rejects_bad_tokens_in_lists():
    with pytest.raises(FormulaError):
        tokenize(["2", "**", "3"])
    assert tokenize(["10", "*", "2"]) == ["10", "*", "2"]
    assert tokenize("10*(2+3)") == ["10", "*", "(", "2", "+", "3", ")"]


@pytest.mark.parametrize(
    "prefix, ok",
    [
        ([], True),
        (["3"], True),
        (["3", "+"], True),
        (["(", "(", "3"], True),
        (["+"], False),
        (["3", "4"], False),
        (["3", "+", "*"], False),
        ([")"], False),
        (["3", ")"], False),
        (["(", ")"], False),
        (["3", "("], False),
    ],
)
def test_viable_prefix(prefix, ok):
    assert is_viable_prefix(prefix) is ok


@pytest.mark.parametrize("deal", [(1, 3, 4, 6), (3, 3, 8, 8), (1, 5, 5, 5), (4, 4, 10, 10), (1, 2, 3, 4), (4, 4, 7, 7)])
def test_known_solvable_deals(deal):
    assert is_solvable(deal, 24)
    tokens = solve(deal, 24)
    assert evaluate(tokens) == 24
    # Each card exactly once.
    assert sorted(int(t) for t in tokens if t.isdigit()) == sorted(deal)


@pytest.mark.parametrize("deal", [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 5, 9), (1, 1, 2, 2), (1, 6, 7, 7), (9, 9, 9, 10)])
def test_known_unsolvable_deals(deal):
    assert not is_solvable(deal, 24)
    assert solve(deal, 24) is None


def test_count_of_solvable_deals_matches_the_classic_figures():
    # 24 game: 1,362 of the 1,820 four-card multisets of 1..13 are solvable;
    # with face cards counted as 10 (values 1..10), 566 of 715.
    assert count_solvable(13) == (1362, 1820)
    assert count_solvable(10) == (566, 715)


def test_ezpoints_solver_uses_only_plus_and_times():
    assert solve([2, 6], 12, "+*") in (["2", "*", "6"], ["6", "*", "2"], ["2", "+", "10"])
    assert solve([4, 8], 12, "+*") == ["4", "+", "8"]
    assert not is_solvable([1, 5], 12, "+*")
    assert not is_solvable([6, 7], 12, "+*")  # 7-... would need minus


def test_solution_is_independent_of_card_order():
    assert solve([6, 4, 3, 1]) == solve([1, 3, 4, 6]) == ["6", "/", "(", "1", "-", "3", "/", "4", ")"]


def test_complete_continues_a_foreign_prefix():
    # The canonical answer for 3,3,8,8 is 8/(3-8/3); a prefix "3" forces another.
    assert complete([3, 3, 8, 8], ["8", "/"])[:2] == ["8", "/"]
    sol = complete([2, 3, 4, 10], ["10"])
    assert sol[0] == "10" and evaluate(sol) == 24
    assert complete([1, 3, 4, 6], ["1", "+"]) is None  # 1,3,4,6 has only 6/(1-3/4)
    assert complete([1, 1, 1, 1], []) is None
