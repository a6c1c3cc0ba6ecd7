"""The upstream scorers the project's ANLS, TextVQA and edit distances are tested against, transcribed
from their public definitions in their own structure (sharing only the word tables with
`h2ovl.scoring.vqa`, which are data):

- the textbook Levenshtein dynamic programme (VLMEvalKit's `levenshtein_distance`, DocVQA's scorer);
- DocVQA's ANLS: distance of the normalised strings over the longer *raw* length, thresholded at 0.5;
- mmf's m4c `EvalAIAnswerProcessor` (word_tokenize, then punctuation, then digits/articles), with its
  `re.sub(..., re.UNICODE)` passing 32 as the count, and `TextVQAAccuracyEvaluator`'s leave-one-out score;
- VLMEvalKit's `process_answer` (no word_tokenize step);
- Pix2Struct's `relaxed_correctness` (ChartQA), as Qwen-VL, lmms-eval and VLMEvalKit copy it.
"""

from __future__ import annotations

import re

from h2ovl.scoring.vqa import _CONTRACTIONS, _NUMBERS

PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")


def levenshtein(s1, s2) -> int:
    if len(s1) > len(s2):
        s1, s2 = s2, s1
    distances = list(range(len(s1) + 1))
    for i2, c2 in enumerate(s2):
        row = [i2 + 1]
        for i1, c1 in enumerate(s1):
            row.append(distances[i1] if c1 == c2 else 1 + min(distances[i1], distances[i1 + 1], row[-1]))
        distances = row
    return distances[-1]


def docvqa_anls(prediction: str, answers: list[str], threshold: float = 0.5) -> float:
    values = []
    for gt in answers:
        gt_answer = " ".join(gt.strip().lower().split())
        det_answer = " ".join(prediction.strip().lower().split())
        dist = levenshtein(gt_answer, det_answer)
        length = max(len(gt.upper()), len(prediction.upper()))
        values.append(0.0 if length == 0 else float(dist) / float(length))
    question_result = 1 - min(values)
    return 0.0 if question_result < threshold else question_result


def _process_punctuation(in_text: str, comma_strip: re.Pattern) -> str:
    out_text = in_text
    for p in PUNCT:
        if (p + " " in in_text or " " + p in in_text) or (re.search(comma_strip, in_text) is not None):
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    return PERIOD_STRIP.sub("", out_text, re.UNICODE)  # sic: the flag is the count


def _process_digit_article(in_text: str) -> str:
    out_text = []
    for word in in_text.lower().split():
        word = _NUMBERS.get(word, word)
        if word not in ("a", "an", "the"):
            out_text.append(word)
    for word_id, word in enumerate(out_text):
        if word in _CONTRACTIONS:
            out_text[word_id] = _CONTRACTIONS[word]
    return " ".join(out_text)


def m4c_process(item: str) -> str:
    item = item.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()  # word_tokenize
    item = item.replace("\n", " ").replace("\t", " ").strip()
    item = _process_punctuation(item, re.compile(r"(?<=\d)(\,)+(?=\d)"))
    return _process_digit_article(item)


def vlmevalkit_process(answer: str) -> str:
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    answer = _process_punctuation(answer, re.compile(r"(\d)(,)(\d)"))
    return _process_digit_article(answer)


def textvqa_accuracy(prediction: str, raw_answers: list[str], process=m4c_process) -> float:
    answers = [process(a) for a in raw_answers]
    gt_answers = list(enumerate(answers))
    pred = process(prediction)
    accs = []
    for gt_answer in gt_answers:
        other_answers = [item for item in gt_answers if item != gt_answer]
        matching_answers = [item for item in other_answers if item[1] == pred]
        accs.append(min(1, float(len(matching_answers)) / 3))
    return sum(accs) / len(accs)


def relaxed_correctness(target: str, prediction: str, max_relative_change: float = 0.05) -> bool:
    """Pix2Struct's ChartQA rule as Qwen-VL, lmms-eval and VLMEvalKit copy it (target first, as VLMEvalKit calls it)."""

    def _to_float(text: str):
        try:
            if text.endswith("%"):
                return float(text.rstrip("%")) / 100.0
            else:
                return float(text)
        except ValueError:
            return None

    prediction_float = _to_float(prediction)
    target_float = _to_float(target)
    if prediction_float is not None and target_float:
        relative_change = abs(prediction_float - target_float) / abs(target_float)
        return relative_change <= max_relative_change
    else:
        return prediction.lower() == target.lower()
