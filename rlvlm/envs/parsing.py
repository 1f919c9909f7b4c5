"""Turn a model's raw text into one environment action, or say why not.

Tolerant where a user expects it:
- whitespace, letter case, single or double (or typographic) quotes;
- code fences, text before or after the JSON, a JSON that is not quite valid;
- unicode look-alikes of the operators (`−`, `×`, `÷`);
- a bare action (`+`, `hit`) with no JSON at all.

Strict where it matters:
- exactly one `"action":` key (two keys, or one nested in another, is invalid);
- the value must be in the env's legal set, and a list or object is invalid;
- oversized text is rejected before any scanning.

Nothing here raises on model output: every failure is a `ParsedAction` with
`valid=False` and a short `error`, so the env can apply its penalty.

`action_char_span` gives the character span of the `"action":` key and its
value. The policy layer maps it to tokens to separate thought tokens from
action tokens (RL4VLM's λ weighting); character offsets work with any
tokenizer, unlike the original's hard-coded token ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ACTION_KEYS = ("action", "answer")
DEFAULT_MAX_CHARS = 4096
# Longest free-text answer accepted by open-vocabulary envs (VisualQA).
MAX_ANSWER_CHARS = 200

_QUOTES = "\"'\u201c\u201d\u2018\u2019"
_CLOSING = {"\u201c": "\u201d\u201c", "\u2018": "\u2019\u2018"}
_ALIASES = {"\u2212": "-", "\u2013": "-", "\u00d7": "*", "\u00f7": "/"}
_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.S)


def _key_pattern(key: str) -> re.Pattern:
    # A quoted key followed by a colon; the quote may be any of _QUOTES.
    return re.compile(rf"[{_QUOTES}]({re.escape(key)})[{_QUOTES}]\s*:", re.I)


_KEY_RES = {k: _key_pattern(k) for k in ACTION_KEYS}


def _key_re(key: str) -> re.Pattern:
    if key not in _KEY_RES:
        _KEY_RES[key] = _key_pattern(key)
    return _KEY_RES[key]


@dataclass(frozen=True)
class ParsedAction:
    """The outcome of parsing one completion.

    action: the normalised legal action (or free-text answer), None if invalid.
    raw: the value as written (before normalisation), None if none was found.
    span: (start, end) characters of the action in the text: from the key's
        opening quote to the end of the value, or the bare action itself.
    error: why it is invalid, None when valid.
    """

    action: str | None
    raw: str | None = None
    span: tuple[int, int] | None = None
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.action is not None


def normalize_action(value: str, case_sensitive: bool = False) -> str:
    """Canonical spelling of an action: trimmed, inner whitespace collapsed,
    operator look-alikes replaced, lower-cased unless `case_sensitive`."""
    out = " ".join(value.split())
    for src, dst in _ALIASES.items():
        out = out.replace(src, dst)
    return out if case_sensitive else out.lower()


def _read_value(text: str, start: int) -> tuple[str | None, int, str | None]:
    """Read the JSON-ish value starting at `start` (just after the colon).

    Returns (value, end, error). Quoted values end at the matching quote
    (a backslash escapes); bare values end at `,`, `}` or a line break."""
    i, n = start, len(text)
    while i < n and text[i] in " \t\r\n":
        i += 1
    if i >= n:
        return None, n, "the action value is missing"
    ch = text[i]
    if ch in "{[":
        return None, i + 1, "the action must be a single string, not a list or object"
    if ch in _QUOTES:
        closers = _CLOSING.get(ch, ch)
        j, buf = i + 1, []
        while j < n:
            c = text[j]
            if c == "\\" and j + 1 < n:
                buf.append(text[j + 1])
                j += 2
                continue
            if c in closers:
                return "".join(buf), j + 1, None
            buf.append(c)
            j += 1
        return None, n, "the action value has no closing quote"
    j = i
    while j < n and text[j] not in ",}\r\n":
        j += 1
    value = text[i:j].strip()
    if not value:
        return None, j, "the action value is missing"
    return value, i + len(text[i:j].rstrip()), None


def _find_keys(text: str, keys) -> list[re.Match]:
    matches = []
    for key in keys:
        matches.extend(_key_re(key).finditer(text))
    return sorted(matches, key=lambda m: m.start())


def action_char_span(text: str, keys: tuple[str, ...] | str = ACTION_KEYS) -> tuple[int, int] | None:
    """(start, end) character offsets of the first `"action":` (or `"answer":`)
    key and its value in `text`, or None when there is no such key.

    `start` is the key's opening quote, so `text[start:]` is what RL4VLM calls
    the action tokens and `text[:start]` the thought tokens. `end` is the end
    of the value, or len(text) when the value cannot be read.
    """
    if not isinstance(text, str):
        return None
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    matches = _find_keys(text, keys)
    if not matches:
        return None
    m = matches[0]
    value, end, err = _read_value(text, m.end())
    return m.start(), (end if err is None else len(text))


def _strip_wrapping(text: str) -> tuple[str, int]:
    """Remove a code fence and surrounding quotes around a bare action;
    return the inner text and its offset in the original."""
    offset = 0
    m = _FENCE.match(text)
    if m:
        offset, text = m.start(1), m.group(1)
    lead = len(text) - len(text.lstrip())
    text, offset = text.strip(), offset + lead
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text, offset = text[1:-1].strip(), offset + 1 + (len(text[1:-1]) - len(text[1:-1].lstrip()))
    return text, offset


def parse_action(
    text,
    legal=None,
    *,
    key: str = "action",
    max_chars: int = DEFAULT_MAX_CHARS,
    case_sensitive: bool = False,
) -> ParsedAction:
    """Parse exactly one action from a completion.

    legal: the allowed actions (already normalised), or None for an open
        vocabulary (free-text answers up to MAX_ANSWER_CHARS, one line).
    key: the JSON key holding the action ("action"; VisualQA uses "answer").
    """
    if not isinstance(text, str):
        return ParsedAction(None, error=f"expected text, got {type(text).__name__}")
    if len(text) > max_chars:
        return ParsedAction(None, error=f"text is {len(text)} characters, over the limit of {max_chars}")
    # Both keys are looked for, so `{"action": "+", "answer": "-"}` counts as two.
    matches = _find_keys(text, ACTION_KEYS if key in ACTION_KEYS else (key,))
    if len(matches) > 1:
        return ParsedAction(None, error=f"found {len(matches)} action keys; write exactly one")
    if matches:
        m = matches[0]
        if m.group(1).lower() != key.lower():
            return ParsedAction(None, span=(m.start(), len(text)), error=f'use the key "{key}"')
        raw, end, err = _read_value(text, m.end())
        span = (m.start(), end if err is None else len(text))
        if err:
            return ParsedAction(None, span=span, error=err)
    else:
        if "{" in text:
            return ParsedAction(None, error=f'no "{key}" key in the reply')
        raw, start = _strip_wrapping(text)
        span = (start, start + len(raw))
    return _check_legal(raw, legal, span, case_sensitive)


def _check_legal(raw: str, legal, span, case_sensitive: bool) -> ParsedAction:
    value = normalize_action(raw, case_sensitive)
    if not value:
        return ParsedAction(None, raw=raw, span=span, error="the action is empty")
    if legal is None:
        if len(value) > MAX_ANSWER_CHARS or "\n" in raw:
            return ParsedAction(None, raw=raw, span=span, error=f"the answer must be one line of at most {MAX_ANSWER_CHARS} characters")
        return ParsedAction(value, raw=raw, span=span)
    if value not in legal:
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        return ParsedAction(None, raw=raw, span=span, error=f"{shown!r} is not a legal action ({', '.join(legal)})")
    return ParsedAction(value, raw=raw, span=span)
