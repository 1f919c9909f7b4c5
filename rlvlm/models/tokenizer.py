"""A byte-level BPE tokenizer trained locally with the `tokenizers` library.

No model hub is reachable here, so the tiny VLMs get a tokenizer trained on a
procedural corpus that covers what rlvlm's tasks say and answer: digits and
numbers, card names and suits, formula symbols, JSON punctuation of the CoT
action format, colours/shapes/spatial words of the visual QA tasks, and common
English. Byte-level BPE means any string still encodes (no <unk>), so prompts
the corpus did not foresee still work, just with more tokens.

Training is deterministic: the corpus is generated from a fixed word list with
a seeded RNG, and BPE merges are chosen by (count, pair) order.
"""

from __future__ import annotations

import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

_ENGLISH = """
the a an of to in on at by for with from and or not is are was were be been it its this that these those
there here what which who how many much where when why yes no true false can cannot should would will
i you we they he she my your our their me us them do does did done have has had make made take look see
seen show shows shown image picture photo scene view question answer answers thought thoughts action
actions reason reasoning step steps because so then if else only all any each every some none more less
most least than equal equals sum total number numbers count counting value values left right above below
top bottom middle center between next near far front behind inside outside over under first second third
last one two three four five six seven eight nine ten eleven twelve zero hundred half
red green blue yellow orange purple pink brown black white gray grey colour color colours colors shape
shapes circle circles square squares triangle triangles star stars cross dot dots object objects digit
digits letter letters word words text line lines small large big tiny little bigger smaller same different
target current position move moves moving goal reach reached closer further distance increase decrease
plus minus times divided add subtract multiply divide formula formulas expression card cards deck hand
dealer player players points point score win wins lose loses draw draws tie bust stand stands hit hits
ace king queen jack spades hearts diamonds clubs suit suits rank ranks
you are playing game games must output valid json format your response following should be
ask asking help missing unclear blurred blurry occluded cropped blank hidden visible clear need needs
information info sure unsure know unknown cannot tell answerable unanswerable please provide
system user assistant
"""

_SYMBOLS = list('{}[]()":,.;!?+-*/=<>#%&_|\'') + ["\n", " "]


def _corpus_lines(seed: int, n_lines: int) -> list[str]:
    """Generate a deterministic training corpus for the BPE merges."""
    rng = random.Random(seed)
    words = _ENGLISH.split()
    cards = ["A", "J", "Q", "K"] + [str(i) for i in range(2, 11)]
    actions = ["+", "-", "*", "/", "(", ")", "=", "stand", "hit"] + [str(i) for i in range(1, 11)]
    lines: list[str] = []
    for i in range(n_lines):
        kind = i % 6
        if kind == 0:  # plain English
            lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))).capitalize() + ".")
        elif kind == 1:  # the CoT JSON action format
            thought = " ".join(rng.choice(words + cards) for _ in range(rng.randint(2, 8)))
            lines.append(f'{{"thoughts": "{thought}", "action": "{rng.choice(actions)}"}}')
        elif kind == 2:  # numbers and arithmetic
            a, b = rng.randint(0, 120), rng.randint(0, 24)
            op = rng.choice("+-*/")
            lines.append(f"Formula: {a}{op}{b}= target {rng.randint(0, 24)} current {rng.randint(0, 9)}")
        elif kind == 3:  # cards
            hand = ", ".join(rng.choice(cards) for _ in range(rng.randint(2, 4)))
            lines.append(f'Cards: [{hand}] dealer: {rng.choice(cards)} player: {hand} "cards": [{hand}]')
        elif kind == 4:  # visual QA style
            lines.append(
                f"How many {rng.choice(['red', 'blue', 'green'])} {rng.choice(['circles', 'squares'])} are there? "
                f"Answer: {rng.randint(0, 9)}"
            )
        else:  # symbol soup so every punctuation pair appears
            lines.append(" ".join(rng.choice(_SYMBOLS) + rng.choice(words) for _ in range(6)))
    return lines


def train_bpe_tokenizer(special_tokens: list[str], vocab_size: int = 1024, seed: int = 0) -> Tokenizer:
    """Train a byte-level BPE `Tokenizer` whose first ids are `special_tokens`, in order.

    `vocab_size` counts the special tokens and the 256 byte symbols.
    """
    tok = Tokenizer(models.BPE())
    # add_prefix_space=False keeps "action" and " action" distinct, like GPT-2/Qwen.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(_corpus_lines(seed, 6000), trainer=trainer)
    return tok
