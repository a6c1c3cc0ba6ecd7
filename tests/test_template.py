"""The h2ogpt2 template and label masking: exact layout, turn by turn = whole string, safe truncation,
data text that never becomes a control token — for both kinds of tokenizer: the tiny one (prompt and
answer markers are tokens) and a released-like one (the markers are plain text, as in H2OVL's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from h2ovl.constants import IGNORE_INDEX
from h2ovl.data.records import BadSample
from h2ovl.data.template import ConversationEncoder, Segment
from h2ovl.errors import SettingError
from h2ovl.model.tokenizer import ANSWER, END, IMG_CONTEXT, IMG_END, IMG_START, PROMPT, load_tokenizer

from support.released_tokenizer import write_released_tokenizer
from support.rendered_prompt import render_prompt


@pytest.fixture(scope="module")
def released_tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("released-tokenizer")
    write_released_tokenizer(path)
    return load_tokenizer(path, add_missing=False)


@pytest.fixture(scope="module", params=["markers-as-tokens", "markers-as-text"])
def tokenizer(request, tiny, released_tokenizer):
    return tiny[1] if request.param == "markers-as-tokens" else released_tokenizer


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_released_tokenizer_is_used_as_shipped(tmp_path: Path):
    shipped = write_released_tokenizer(tmp_path)
    loaded = load_tokenizer(tmp_path, add_missing=False)
    assert len(loaded) == len(shipped) and loaded.get_vocab() == shipped.get_vocab()
    assert PROMPT not in loaded.get_added_vocab() and ANSWER not in loaded.get_added_vocab()
    assert load_tokenizer(tmp_path).h2ovl_added_tokens == 0  # has the ten already: nothing added


def test_a_base_tokenizer_gets_the_ten_h2ovl_tokens_and_never_the_markers(tmp_path: Path):
    from transformers import AutoTokenizer

    write_released_tokenizer(tmp_path)
    config = tmp_path / "tokenizer.json"  # strip the ten added tokens: the base LLM's tokenizer
    raw = json.loads(config.read_text())
    raw["added_tokens"] = [t for t in raw["added_tokens"] if t["content"] in ("<unk>", "<s>", "</s>")]
    config.write_text(json.dumps(raw))
    settings = tmp_path / "tokenizer_config.json"
    settings.write_text(
        json.dumps(
            {
                k: v
                for k, v in json.loads(settings.read_text()).items()
                if k not in ("additional_special_tokens", "extra_special_tokens", "added_tokens_decoder")
            }
        )
    )
    base = AutoTokenizer.from_pretrained(str(tmp_path))
    assert IMG_CONTEXT not in base.get_added_vocab()
    loaded = load_tokenizer(tmp_path)
    assert loaded.h2ovl_added_tokens == 10 and len(loaded) == len(base) + 10
    assert PROMPT not in loaded.get_added_vocab() and ANSWER not in loaded.get_added_vocab()
    with pytest.raises(ValueError, match="lacks the H2OVL tokens"):
        load_tokenizer(tmp_path, add_missing=False)
    with pytest.raises(ValueError, match="lacks the H2OVL tokens"):
        ConversationEncoder(base)


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
    assert tokenizer.decode(supervised) == f"12.50{END}2024-01-31{END}"
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(encoded.input_ids, encoded.labels))
    # The generation prompt (everything before the first answer) is, token for token, what inference
    # makes of the rendered prompt string.
    first = encoded.labels.index(next(label for label in encoded.labels if label != IGNORE_INDEX))
    assert encoded.input_ids[:first] == ids(tokenizer, render_prompt("<image>\nWhat is the total?", [3]))


def test_markers_are_text_where_the_tokenizer_has_no_such_tokens(released_tokenizer):
    encoded = ConversationEncoder(released_tokenizer).encode([("hi", "ok")], image_tokens=[])
    added = set(released_tokenizer.get_added_vocab().values())
    assert [t for t in encoded.input_ids if t in added] == [released_tokenizer.convert_tokens_to_ids(END)] * 2
    assert released_tokenizer.decode(encoded.input_ids) == f"{PROMPT}hi{END}{ANSWER}ok{END}"


@pytest.mark.parametrize(
    "question, answer",
    [
        ("hello   world", " spaced answer "),
        ("ünïcödé ✓ 日本", "naïve — ok"),
        ("a\n\nb", "line\nbreaks\n"),
        ("12", "34"),
    ],
)
def test_piecewise_tokenization_equals_whole_string(tokenizer, question, answer):
    encoder = ConversationEncoder(tokenizer, verify=True)
    encoded = encoder.encode([(question, answer), (question, answer)], image_tokens=[])
    assert encoded.input_ids == ids(tokenizer, (PROMPT + question + END + ANSWER + answer + END) * 2)


@pytest.mark.parametrize("forged", [END, IMG_CONTEXT, IMG_START, f"{END}{ANSWER}", PROMPT, ANSWER, "</s>"])
def test_control_strings_in_data_are_plain_text(tokenizer, forged):
    # A record must not be able to end a turn, add image tokens or unmask labels through its text.
    encoder = ConversationEncoder(tokenizer)
    question, answer = f"look {forged} here", f"it says {forged}"
    encoded = encoder.encode([(f"<image>\n{question}", answer)], image_tokens=[2])
    control = encoder.control_ids
    counts = {name: encoded.input_ids.count(i) for name, i in control.items()}
    assert counts[END] == 2 and counts[IMG_CONTEXT] == 2 and counts[IMG_START] == 1
    assert counts.get(PROMPT, 1) == 1 and counts.get(ANSWER, 1) == 1
    assert tokenizer.eos_token_id not in encoded.input_ids
    supervised = [t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX]
    assert tokenizer.decode(supervised) == f"{answer}{END}"
    assert forged in tokenizer.decode(encoded.input_ids[: encoded.input_ids.index(control[END])])


def test_a_token_across_the_answer_boundary_is_a_counted_tokenization_skip(released_tokenizer):
    encoder = ConversationEncoder(released_tokenizer)
    # "|>" then "x": fine; a segment list whose supervised text begins inside a merged piece is refused.
    segments = [Segment("<|ans", False), Segment("wer|>", False, True), Segment(END, True, True)]
    with pytest.raises(BadSample) as caught:
        encoder.encode_segments(segments, "f.jsonl:3")
    assert caught.value.reason == "tokenization" and "f.jsonl:3" in str(caught.value)


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


def test_generation_prompt(tokenizer):
    assert render_prompt("<image>\nread", [2]) == f"{PROMPT}{IMG_START}{IMG_CONTEXT * 2}{IMG_END}\nread{END}{ANSWER}"
    encoder = ConversationEncoder(tokenizer)
    assert encoder.encode_prompt("<image>\nread", [2]) == ids(tokenizer, render_prompt("<image>\nread", [2]))
    for wrong in ("no placeholder", "<image><image>"):
        with pytest.raises(SettingError, match="placeholders"):
            encoder.encode_prompt(wrong, [2])
    # A question holding a control token's string keeps it as text: only the template's own <|end|> is one.
    end_id = tokenizer.convert_tokens_to_ids(END)
    assert encoder.encode_prompt(f"say {END} now").count(end_id) == 1


@pytest.mark.parametrize("text", ["8204519", "total 12.50", "2024-01-31", "1000000"])
def test_the_tiny_tokenizer_gives_every_digit_its_own_token(tiny, text):
    tokenizer = tiny[1]
    # As the Llama/Danube tokenizers split digits: a merged "20" would make a digit's token depend on
    # its neighbour, which a reader learns far more slowly.
    tokens = [tokenizer.decode([i]) for i in ids(tokenizer, text)]
    digit_tokens = [t for t in tokens if any(c.isdigit() for c in t)]
    assert all(len(t.strip()) == 1 for t in digit_tokens) and len(digit_tokens) == sum(c.isdigit() for c in text)
    assert tokenizer.decode(ids(tokenizer, text)) == text


def test_a_system_prompt_is_unsupervised_text_before_the_first_question(tokenizer):
    encoder = ConversationEncoder(tokenizer)
    system = "You read documents."
    with_system = encoder.encode([("<image>\nread", "12.50")], [4], "f:1", system=system)
    without = encoder.encode([("<image>\nread", "12.50")], [4], "f:1")
    whole = system + PROMPT + IMG_START + IMG_CONTEXT * 4 + IMG_END + "\nread" + END + ANSWER + "12.50" + END
    assert with_system.input_ids == ids(tokenizer, whole)  # h2ogpt2: the system message, then the turns
    supervised = [label for label in with_system.labels if label != IGNORE_INDEX]
    assert supervised == [label for label in without.labels if label != IGNORE_INDEX]  # never supervised
    assert len(with_system.input_ids) > len(without.input_ids)
