"""Tokenizers: the special tokens of the h2ogpt2 template, and an offline tokenizer for tiny presets.

The released models use the Danube tokenizer from a local directory. Tiny presets need one that exists
without a hub: a byte-level BPE trained deterministically on the project's own text, saved in the
standard Hugging Face format and loaded back through `transformers`.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast

IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
PROMPT, ANSWER, END = "<|prompt|>", "<|answer|>", "<|end|>"
#: Added by H2OVL on top of the Danube vocabulary.
ADDED_TOKENS = [IMG_START, IMG_END, IMG_CONTEXT, "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>", END]
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
    lines += ['{"name": "value", "total": "12.50", "date": "2024-01-31"}', "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz .,:;!?-$%#/()[]{}'\""]
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


def ensure_special_tokens(tokenizer: PreTrainedTokenizerFast) -> int:
    """Add whatever of the template and image tokens is missing; returns how many were added."""
    missing = [t for t in (PROMPT, ANSWER, *ADDED_TOKENS) if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return len(missing)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """A tokenizer from a directory or a hub id (through transformers' cache; `HF_HUB_OFFLINE=1` is
    respected), with the H2OVL tokens present; `h2ovl_added_tokens` records how many were added."""
    from h2ovl.model.config import resolve_part

    tokenizer = resolve_part("model.tokenizer", str(path), lambda: AutoTokenizer.from_pretrained(str(path)))
    tokenizer.h2ovl_added_tokens = ensure_special_tokens(tokenizer)
    return tokenizer


def special_token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """Ids looked up from the tokenizer (never hard-coded)."""
    vocab = tokenizer.get_vocab()
    return {token: vocab[token] for token in (IMG_START, IMG_END, IMG_CONTEXT, PROMPT, ANSWER, END)}
