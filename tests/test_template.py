"""The h2ogpt2 template and label masking: exact layout, piecewise = whole, safe truncation."""

from __future__ import annotations

import pytest

from h2ovl.data.records import BadSample
from h2ovl.data.template import ConversationEncoder, render_prompt
from h2ovl.model.h2ovl import IGNORE_INDEX
from h2ovl.model.tokenizer import ANSWER, END, IMG_CONTEXT, IMG_END, IMG_START, PROMPT


@pytest.fixture(scope="module")
def tokenizer(tiny):
    return tiny[1]


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_layout_and_labels_of_a_multi_turn_sample(tokenizer):
    encoder = ConversationEncoder(tokenizer)
    turns = [("<image>\nWhat is the total?", "12.50"), ("And the date?", "2024-01-31")]
    encoded = encoder.encode(turns, image_tokens=[3])
    whole = (
        f"{PROMPT}{IMG_START}{IMG_CONTEXT * 3}{IMG_END}\nWhat is the total?{END}{ANSWER}12.50{END}"
        f"{PROMPT}And the date?{END}{ANSWER}2024-01-31{END}"
    )
    assert encoded.input_ids == ids(tokenizer, whole)
    assert encoded.input_ids[0] != tokenizer.bos_token_id  # no BOS
    supervised = [t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX]
    assert supervised == ids(tokenizer, f"12.50{END}") + ids(tokenizer, f"2024-01-31{END}")
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(encoded.input_ids, encoded.labels))


@pytest.mark.parametrize(
    "question, answer",
    [("hello   world", " spaced answer "), ("ünïcödé ✓ 日本", "naïve — ok"), ("a\n\nb", "line\nbreaks\n"), ("x<|end|>y", "z")],
)
def test_piecewise_tokenization_equals_whole_string(tokenizer, question, answer):
    encoder = ConversationEncoder(tokenizer, verify=True)
    encoded = encoder.encode([(question, answer), (question, answer)], image_tokens=[])
    assert encoded.input_ids == ids(tokenizer, (PROMPT + question + END + ANSWER + answer + END) * 2)


def test_truncation_never_cuts_an_image_span(tokenizer):
    encoder = ConversationEncoder(tokenizer)
    turns = [("first", "one"), ("<image>\nsecond", "two")]
    full = encoder.encode(turns, image_tokens=[20])
    start = full.input_ids.index(tokenizer.convert_tokens_to_ids(IMG_START))
    cut = ConversationEncoder(tokenizer, max_length=start + 5).encode(turns, image_tokens=[20])
    assert cut.input_ids == full.input_ids[:start]  # moved back before <img>
    assert cut.images_kept == 0
    kept = ConversationEncoder(tokenizer, max_length=len(full.input_ids) - 1).encode(turns, image_tokens=[20])
    assert kept.images_kept == 1 and len(kept.input_ids) == len(full.input_ids) - 1


def test_truncation_that_removes_every_answer_is_a_bad_sample(tokenizer):
    encoder = ConversationEncoder(tokenizer, max_length=6)
    with pytest.raises(BadSample, match="file.jsonl:2") as caught:
        encoder.encode([("a long question " * 5, "answer")], image_tokens=[], where="file.jsonl:2")
    assert caught.value.reason == "truncated"


def test_image_tokens_in_the_text_itself_are_refused(tokenizer):
    with pytest.raises(BadSample) as caught:
        ConversationEncoder(tokenizer).encode([(f"look {IMG_CONTEXT}", "a")], image_tokens=[])
    assert caught.value.reason == "image_mismatch"


def test_generation_prompt(tokenizer):
    assert render_prompt("<image>\nread", [2]) == f"{PROMPT}{IMG_START}{IMG_CONTEXT * 2}{IMG_END}\nread{END}{ANSWER}"
    with pytest.raises(ValueError):
        render_prompt("no placeholder", [2])


@pytest.mark.parametrize("text", ["8204519", "total 12.50", "2024-01-31", "1000000"])
def test_the_tiny_tokenizer_gives_every_digit_its_own_token(tokenizer, text):
    # As the Llama/Danube tokenizers split digits: a merged "20" would make a digit's token depend on
    # its neighbour, which a reader learns far more slowly.
    tokens = [tokenizer.decode([i]) for i in ids(tokenizer, text)]
    digit_tokens = [t for t in tokens if any(c.isdigit() for c in t)]
    assert all(len(t.strip()) == 1 for t in digit_tokens) and len(digit_tokens) == sum(c.isdigit() for c in text)
    assert tokenizer.decode(ids(tokenizer, text)) == text
