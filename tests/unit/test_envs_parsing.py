"""Text -> action parsing: tolerant where users expect, strict where it matters."""

import pytest

from rlvlm.envs import action_char_span, parse_action

NL = ("+", "-")
P24 = tuple(str(i) for i in range(1, 11)) + ("+", "-", "*", "/", "(", ")", "=")
BJ = ("stand", "hit")


@pytest.mark.parametrize(
    "text, legal, action",
    [
        ('{"thoughts": "target 3, current 1, move +", "action": "+"}', NL, "+"),
        ('{"action":"-"}', NL, "-"),
        ("{'action': '+'}", NL, "+"),  # single quotes
        ('{"Action": " + "}', NL, "+"),  # key case, padding
        ('  \n{ "thoughts" : "x" ,\n  "action" :\n "-" }\n', NL, "-"),
        ('```json\n{"thoughts": "x", "action": "+"}\n```', NL, "+"),
        ('Sure! {"thoughts": "x", "action": "+"} Hope this helps.', NL, "+"),
        ('{"thoughts": "x", "action": "+"', NL, "+"),  # truncated JSON
        ('{"action": "\u2212"}', NL, "-"),  # unicode minus
        ("\u201caction\u201d: \u201c+\u201d", NL, "+"),  # typographic quotes
        ("+", NL, "+"),  # bare action
        ('  "-"  ', NL, "-"),
        ("```\n-\n```", NL, "-"),
        ('{"action": 10}', P24, "10"),  # unquoted number
        ('{"action": "\u00d7"}', P24, "*"),
        ('{"action": "HIT"}', BJ, "hit"),
        ('{"thoughts": "dealer 10, player 16, hit", "action": "Stand"}', BJ, "stand"),
        ('{"thoughts": "say \\"hi\\"", "action": "hit"}', BJ, "hit"),
    ],
)
def test_tolerant_parsing(text, legal, action):
    parsed = parse_action(text, legal)
    assert parsed.valid, parsed.error
    assert parsed.action == action


ADVERSARIAL = [
    "",
    "   ",
    "{}",
    '{"thoughts": "no action here"}',
    '{"action": "+", "action": "-"}',  # several actions
    '{"action": "+"} {"action": "+"}',
    '{"action": {"action": "+"}}',  # nested JSON
    '{"action": ["+"]}',
    '{"action": ""}',
    '{"action": "+ -"}',
    '{"action": "++"}',
    '{"action": "*"}',  # outside NumberLine's legal set
    '{"action": "__import__(\'os\').system(\'rm -rf /\')"}',  # code
    '{"action": "eval(\'1+1\')"}',
    '{"action": "1+1"}',
    '{"action": "plus"}',
    "+ because it gets closer",  # bare action with trailing talk
    "+-",
    '{"answer": "+"}',  # the wrong key
    '{"action": "+',  # unterminated
    "\x00\x01\x02",
    "\U0001f600" * 50,
    "+" * 10_000,  # huge
    '{"action": "' + "+" * 5000 + '"}',
    "{" * 3000 + "}" * 3000,
    '{"action": "\\u002b"}',
    None,
    12,
    b'{"action": "+"}',
]


@pytest.mark.parametrize("text", ADVERSARIAL)
def test_adversarial_inputs_never_raise_and_are_invalid(text):
    parsed = parse_action(text, NL)
    assert not parsed.valid
    assert parsed.action is None
    assert isinstance(parsed.error, str) and parsed.error


def test_huge_text_is_rejected_before_scanning():
    parsed = parse_action("x" * 1_000_000, NL)
    assert not parsed.valid and "limit" in parsed.error


def test_free_text_answers():
    parsed = parse_action('{"thoughts": "3 circles", "answer": "Three"}', None, key="answer")
    assert parsed.action == "three" and parsed.raw == "Three"
    assert parse_action("red", None, key="answer").action == "red"
    assert not parse_action('{"answer": "' + "a" * 500 + '"}', None, key="answer").valid
    assert not parse_action("line one\nline two", None, key="answer").valid
    assert not parse_action('{"answer": "1", "answer": "2"}', None, key="answer").valid


def test_action_char_span_marks_the_action_key():
    text = '{"thoughts": "target 3, current 1, move +", "action": "+"}'
    start, end = action_char_span(text)
    assert text[start:].startswith('"action":')
    assert text[start:end] == '"action": "+"'
    assert parse_action(text, NL).span == (start, end)
    # The answer key counts too, and the first key wins for the split.
    qa = '{"thoughts": "x", "answer": "red"}'
    assert qa[action_char_span(qa)[0] :].startswith('"answer"')
    assert action_char_span("no json at all") is None
    assert action_char_span(None) is None
    # An unreadable value still gives a split: everything from the key on.
    bad = '{"thoughts": "x", "action": ["+"]}'
    assert action_char_span(bad) == (bad.index('"action"'), len(bad))


def test_span_of_bare_action_points_at_it():
    text = '  "hit" '
    parsed = parse_action(text, BJ)
    assert parsed.valid and text[parsed.span[0] : parsed.span[1]] == "hit"
