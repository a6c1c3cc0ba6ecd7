"""VQA accuracy as TextVQA reports it.

Two answer processings are offered, because the evaluators people report with differ:
- `m4c` (default): mmf's TextVQA evaluator (`EvalAIAnswerProcessor` + `TextVQAAccuracyEvaluator`), which
  InternVL's TextVQA script follows: lower-case, drop "," and "?", split "'s", then punctuation, number
  words, articles and contractions;
- `vlmevalkit`: VLMEvalKit's `process_answer`, which skips that first step (commas and question marks go
  through the punctuation rule instead, "'s" is not split).
Both keep the reference's quirks verbatim, since a reported number means what the reference computed:
`re.UNICODE` is passed as the *count* of the period strip (so only the first 32 periods are removed), and
"(?!<=\\d)" is a lookahead, so every period not followed by a digit is dropped. The score is the mean over
the leave-one-out subsets of the references of min(1, matches / 3).
"""

from __future__ import annotations

import re
from typing import Literal

import torch

from h2ovl.errors import SettingError
from h2ovl.scoring.base import AnswerMetric

_CONTRACTIONS = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldve": "could've",
    "couldnt": "couldn't",
    "couldn'tve": "couldn't've",
    "couldnt've": "couldn't've",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hadnt've": "hadn't've",
    "hadn'tve": "hadn't've",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hed": "he'd",
    "hed've": "he'd've",
    "he'dve": "he'd've",
    "hes": "he's",
    "howd": "how'd",
    "howll": "how'll",
    "hows": "how's",
    "Id've": "I'd've",
    "I'dve": "I'd've",
    "Im": "I'm",
    "Ive": "I've",
    "isnt": "isn't",
    "itd": "it'd",
    "itd've": "it'd've",
    "it'dve": "it'd've",
    "itll": "it'll",
    "let's": "let's",
    "maam": "ma'am",
    "mightnt": "mightn't",
    "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've",
    "mightve": "might've",
    "mustnt": "mustn't",
    "mustve": "must've",
    "neednt": "needn't",
    "notve": "not've",
    "oclock": "o'clock",
    "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at",
    "shant": "shan't",
    "shed've": "she'd've",
    "she'dve": "she'd've",
    "she's": "she's",
    "shouldve": "should've",
    "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll",
    "somebodys": "somebody's",
    "someoned": "someone'd",
    "someoned've": "someone'd've",
    "someone'dve": "someone'd've",
    "someonell": "someone'll",
    "someones": "someone's",
    "somethingd": "something'd",
    "somethingd've": "something'd've",
    "something'dve": "something'd've",
    "somethingll": "something'll",
    "thats": "that's",
    "thered": "there'd",
    "thered've": "there'd've",
    "there'dve": "there'd've",
    "therere": "there're",
    "theres": "there's",
    "theyd": "they'd",
    "theyd've": "they'd've",
    "they'dve": "they'd've",
    "theyll": "they'll",
    "theyre": "they're",
    "theyve": "they've",
    "twas": "'twas",
    "wasnt": "wasn't",
    "wed've": "we'd've",
    "we'dve": "we'd've",
    "weve": "we've",
    "werent": "weren't",
    "whatll": "what'll",
    "whatre": "what're",
    "whats": "what's",
    "whatve": "what've",
    "whens": "when's",
    "whered": "where'd",
    "wheres": "where's",
    "whereve": "where've",
    "whod": "who'd",
    "whod've": "who'd've",
    "who'dve": "who'd've",
    "wholl": "who'll",
    "whos": "who's",
    "whove": "who've",
    "whyll": "why'll",
    "whyre": "why're",
    "whys": "why's",
    "wont": "won't",
    "wouldve": "would've",
    "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've",
    "yall": "y'all",
    "yall'll": "y'all'll",
    "y'allll": "y'all'll",
    "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've",
    "youd": "you'd",
    "youd've": "you'd've",
    "you'dve": "you'd've",
    "youll": "you'll",
    "youre": "you're",
    "youve": "you've",
}
_NUMBERS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_PUNCTUATION = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
# Kept verbatim from the references, typo included: "(?!<=\d)" is a lookahead, so every period not followed
# by a digit is dropped.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
# Both references call `_PERIOD_STRIP.sub("", text, re.UNICODE)`: the flag lands in `count`.
_PERIOD_STRIP_COUNT = int(re.UNICODE)
_COMMA_STRIP = {"m4c": re.compile(r"(?<=\d)(\,)+(?=\d)"), "vlmevalkit": re.compile(r"(\d)(,)(\d)")}
Processing = Literal["m4c", "vlmevalkit"]


def _punctuation(text: str, processing: Processing) -> str:
    out = text
    for mark in _PUNCTUATION:
        if (mark + " " in text or " " + mark in text) or _COMMA_STRIP[processing].search(text) is not None:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def _digits_and_articles(text: str) -> str:
    words = [_NUMBERS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in _ARTICLES]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words)


def normalize_vqa_answer(answer: str, processing: Processing = "m4c") -> str:
    """The answer processing of `processing`'s evaluator: punctuation, number words, articles, contractions."""
    text = answer
    if processing == "m4c":  # mmf's word_tokenize
        text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    elif processing != "vlmevalkit":
        raise SettingError(f"VQA answer processing must be 'm4c' or 'vlmevalkit', got {processing!r}")
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _digits_and_articles(_punctuation(text, processing))


def vqa_accuracy(prediction: str, answers: list[str], processing: Processing = "m4c") -> float:
    """Mean over the len(answers) leave-one-out subsets of min(1, matches in the subset / 3)."""
    predicted = normalize_vqa_answer(prediction, processing)
    matches = [normalize_vqa_answer(answer, processing) == predicted for answer in answers]
    total = sum(matches)
    return sum(min(1.0, (total - hit) / 3) for hit in matches) / len(matches)


class VQAAccuracy(AnswerMetric):
    """Mean VQA accuracy (`accuracy`, in [0, 1]). Needs the annotators' answers (TextVQA has ten per
    question): with one answer every leave-one-out subset is empty, so single answers are refused.

    Args:
        processing: whose answer processing to apply, "m4c" (mmf / InternVL) or "vlmevalkit".
    """

    higher_is_better = True

    def __init__(self, processing: Processing = "m4c", **kwargs) -> None:
        super().__init__(**kwargs)
        normalize_vqa_answer("", processing)  # validates the name before any state exists
        self.processing = processing
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def score_batch(self, preds: list[str], answers: list[list[str]], categories: list[str | None]) -> None:
        for i, refs in enumerate(answers):
            if len(refs) < 2:
                raise ValueError(
                    f"sample {i}: VQA accuracy needs the annotators' answers (TextVQA has 10), got {len(refs)}; "
                    "score single answers with --task anls or --task cer (exact match)"
                )
        self.total += sum(vqa_accuracy(p, a, self.processing) for p, a in zip(preds, answers))

    def scores(self) -> dict[str, float]:
        return {"accuracy": float(self.total / self.n)}
