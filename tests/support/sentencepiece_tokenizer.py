"""A released H2OVL tokenizer as the model repositories ship it: a SentencePiece `tokenizer.model` (BPE,
byte fallback) trained here, with `tokenizer_config.json`, `special_tokens_map.json` and
`added_tokens.json` in transformers' slow `LlamaTokenizer` format, the ten H2OVL tokens appended after
the pieces, and no `tokenizer.json` (the releases have none: transformers converts the model on load)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from h2ovl.constants import ADDED_TOKENS

_TEXT = [
    "What is the total amount due on this receipt? The total is 12.50 dollars.",
    "Read the text in the image. Transcribe the document. Invoice number 8204519, date 2024-01-31.",
    "<|prompt|>question<|end|><|answer|>answer<|end|> Answer the question using a single word or phrase.",
    '{"name": "value", "total": "12.50", "store": "ACME"} street city state license check pay word line',
]
_TOKEN = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}


def write_sentencepiece_tokenizer(path: Path, pieces: int = 400) -> int:
    """Writes the files to `path`; returns the vocabulary size (pieces + the ten H2OVL tokens)."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_TEXT * 30),
        model_writer=model,
        vocab_size=pieces,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    path.mkdir(parents=True, exist_ok=True)
    (path / "tokenizer.model").write_bytes(model.getvalue())
    added = {token: pieces + i for i, token in enumerate(ADDED_TOKENS)}
    specials = {0: "<unk>", 1: "<s>", 2: "</s>"}
    decoder = {str(i): {"content": t, **_TOKEN} for i, t in specials.items()} | {
        str(i): {"content": t, **_TOKEN} for t, i in added.items()
    }
    (path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "add_bos_token": True,
                "add_eos_token": False,
                "added_tokens_decoder": decoder,
                "additional_special_tokens": list(ADDED_TOKENS),
                "bos_token": "<s>",
                "clean_up_tokenization_spaces": False,
                "eos_token": "</s>",
                "legacy": False,
                "model_max_length": 1000000000000000019884624838656,
                "pad_token": "<unk>",
                "padding_side": "right",
                "sp_model_kwargs": {},
                "spaces_between_special_tokens": False,
                "tokenizer_class": "LlamaTokenizer",
                "unk_token": "<unk>",
                "use_default_system_prompt": False,
            },
            indent=2,
        )
    )
    (path / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "additional_special_tokens": list(ADDED_TOKENS),
                "bos_token": {"content": "<s>", **_TOKEN},
                "eos_token": {"content": "</s>", **_TOKEN},
                "pad_token": {"content": "<unk>", **_TOKEN},
                "unk_token": {"content": "<unk>", **_TOKEN},
            },
            indent=2,
        )
    )
    (path / "added_tokens.json").write_text(json.dumps(added, indent=2))
    return pieces + len(ADDED_TOKENS)
