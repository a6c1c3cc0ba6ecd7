"""Tokenizers: loading a pretrained or released one, and an offline tokenizer for tiny presets.

A released H2OVL tokenizer is used exactly as shipped: it already holds the ten H2OVL tokens, and its
`<|prompt|>`/`<|answer|>` are plain text. A base LLM's tokenizer (Danube, for a first training stage)
gets the ten H2OVL tokens added, as H2OVL added them, and nothing else. Tiny presets need a tokenizer
that exists without a hub: a byte-level BPE trained deterministically on the project's own text (it
keeps the two markers as tokens), saved in the standard Hugging Face format.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from h2ovl.constants import ADDED_TOKENS, ANSWER, END, IMG_CONTEXT, IMG_END, IMG_START, PROMPT
from h2ovl.model.parts import PretrainedPartError, resolve_part

__all__ = [
    "ADDED_TOKENS",
    "ANSWER",
    "END",
    "IMG_CONTEXT",
    "IMG_END",
    "IMG_START",
    "PROMPT",
    "build_tiny_tokenizer",
    "ensure_h2ovl_tokens",
    "load_tokenizer",
]

_BASE_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", PROMPT, ANSWER]


def _training_text() -> list[str]:
    """Deterministic text in the domains the tiny models see: digits, words, receipts, JSON."""
    words = (
        "the a of and to in is for on with total amount due date invoice receipt number name address "
        "license check pay order store item price tax cash card change subtotal what which how many "
        "read text transcribe image document field value answer question json key street city state"
    ).split()
    lines = [" ".join(words[i:] + words[:i]) for i in range(len(words))]
    lines += [" ".join(str(n) for n in range(k, k + 40)) for k in range(0, 1000, 40)]
    lines += [
        '{"name": "value", "total": "12.50", "date": "2024-01-31"}',
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz .,:;!?-$%#/()[]{}'\"",
    ]
    return lines


def build_tiny_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A small byte-level BPE (every byte encodable, so no text is ever <unk>), with H2OVL's tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    # One token per digit, as the Llama/Danube tokenizers split them: BPE merges of digit pairs
    # ("20", "19") make the same digit a different token by its neighbour, which a reader learns slowly.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_BASE_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_text(), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=[PROMPT, ANSWER, *ADDED_TOKENS],
    )
    return wrapped


def ensure_h2ovl_tokens(tokenizer: PreTrainedTokenizerFast) -> int:
    """Add whichever of the ten H2OVL tokens is missing (never the prompt/answer markers, which the
    released tokenizers keep as text); returns how many were added."""
    missing = [t for t in ADDED_TOKENS if t not in tokenizer.get_added_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return len(missing)


def load_tokenizer(path: str | Path, add_missing: bool = True) -> PreTrainedTokenizerFast:
    """A tokenizer from a directory or a hub id (through transformers' cache; `HF_HUB_OFFLINE=1` is
    respected). With `add_missing` (a base LLM's tokenizer) the H2OVL tokens it lacks are added and
    `h2ovl_added_tokens` says how many; without (a released checkpoint's), one that lacks them is refused."""
    tokenizer = resolve_part("model.init.tokenizer", str(path), lambda: AutoTokenizer.from_pretrained(str(path)))
    if add_missing:
        tokenizer.h2ovl_added_tokens = ensure_h2ovl_tokens(tokenizer)
    else:
        missing = [t for t in ADDED_TOKENS if t not in tokenizer.get_added_vocab()]
        if missing:
            raise PretrainedPartError(
                f"{path}: the tokenizer lacks the H2OVL tokens {missing}: not a released H2OVL tokenizer "
                "(a base LLM's tokenizer belongs in model.init.tokenizer, where they are added)"
            )
        tokenizer.h2ovl_added_tokens = 0
    return tokenizer
