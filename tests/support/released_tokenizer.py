"""A tokenizer shaped like the released H2OVL ones, built offline: a SentencePiece-style BPE (Metaspace
"▁", byte fallback) loaded back as transformers' `LlamaTokenizer`, with the ten H2OVL tokens added and
`<|prompt|>`/`<|answer|>` left as plain text. Its vocabulary size is exactly `len(tokenizer)`."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from h2ovl.constants import ADDED_TOKENS

_TEXT = [
    "What is the total amount due on this receipt? The total is 12.50 dollars.",
    "Read the text in the image. Transcribe the document. Invoice number 8204519, date 2024-01-31.",
    "<|prompt|>question<|end|><|answer|>answer<|end|> <|prompt|> <|answer|> |> <| prompt answer",
    '{"name": "value", "total": "12.50", "store": "ACME"} street city state license check pay',
]


def write_released_tokenizer(path: Path, vocab_size: int = 420) -> PreTrainedTokenizerFast:
    """Writes the tokenizer files to `path` and returns the tokenizer as transformers loads it."""
    model = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    model.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    model.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    specials = ["<unk>", "<s>", "</s>"]
    model.train_from_iterator(
        _TEXT * 20, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    )
    # The 256 byte-fallback pieces sit in the ordinary vocabulary right after the specials, as in Llama's.
    config = json.loads(model.to_str())
    pieces = [p for p, _ in sorted(config["model"]["vocab"].items(), key=lambda item: item[1]) if p not in specials]
    vocab = specials + [f"<0x{i:02X}>" for i in range(256)] + pieces
    config["model"]["vocab"] = {piece: i for i, piece in enumerate(vocab)}
    model = Tokenizer.from_str(json.dumps(config))
    wrapped = PreTrainedTokenizerFast(tokenizer_object=model, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    wrapped.add_special_tokens({"additional_special_tokens": list(ADDED_TOKENS)})
    wrapped.save_pretrained(str(path))
    config_file = path / "tokenizer_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "tokenizer_class": "LlamaTokenizer"}))
    return AutoTokenizer.from_pretrained(str(path))
