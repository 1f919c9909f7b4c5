"""Thought / action token masks from character offsets, never token ids.

RL4VLM found the `"action":` span with hard-coded token ids, which broke with
another tokenizer version. Here the split comes from the decoded text: find
where the `"action"` key starts, map each token to the characters it decodes
to, and call every token that ends after that point an action token.
"""

from __future__ import annotations

import re

# The JSON key that holds the decision ("action" for agents, "answer" for QA),
# tolerant of spacing and of single quotes as models write them.
_ACTION_KEY = re.compile(r"""["'](?:action|answer)["']\s*:""", re.IGNORECASE)


def find_action_key(text: str) -> int | None:
    """Character index where the first `"action":` (or `"answer":`) key starts, or None."""
    m = _ACTION_KEY.search(text)
    return m.start() if m else None


def token_char_ends(tokenizer, ids: list[int]) -> list[int]:
    """End character offset of each token in `tokenizer.decode(ids)`.

    Decodes growing prefixes: correct for byte-level BPE, whose single tokens
    can be partial UTF-8 characters and do not decode on their own. O(T^2) in
    characters, which is negligible for completions of a few hundred tokens.
    """
    ends = []
    for k in range(1, len(ids) + 1):
        ends.append(len(tokenizer.decode(ids[:k], skip_special_tokens=True)))
    return ends


def thought_action_masks(tokenizer, ids: list[int], text: str | None = None) -> tuple[list[bool], list[bool]]:
    """Split completion tokens into (thought_mask, action_mask).

    Tokens that end at or before the `"action":` key are thought tokens; the
    key itself and everything after it (including a stop token) are action
    tokens. With no key in the text every token is an action token, so the
    action log-prob is the whole completion's.
    """
    text = tokenizer.decode(ids, skip_special_tokens=True) if text is None else text
    start = find_action_key(text)
    if start is None:
        return [False] * len(ids), [True] * len(ids)
    ends = token_char_ends(tokenizer, ids)
    thought = [end <= start for end in ends]
    # A trailing special token (e.g. <|im_end|>) decodes to nothing and so
    # "ends" where the text ends; it correctly lands among the action tokens.
    return thought, [not t for t in thought]
