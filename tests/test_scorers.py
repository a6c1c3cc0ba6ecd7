"""The benchmark scorers on hand-worked cases, KIE against Donut's evaluator on random JSON trees, the
prediction-file reader's errors, `h2ovl score`, and the metrics' sums under two DDP processes."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics.functional.text import char_error_rate, word_error_rate

from h2ovl.cli import main
from h2ovl.scoring import PredictionsError, Scored, TaskScorer, read_predictions, score_samples
from h2ovl.scoring.anls import anls
from h2ovl.scoring.kie import field_counts, parse_prediction, ted_accuracy
from h2ovl.scoring.ocrbench import HANDWRITTEN_MATHS, ocrbench_hit
from h2ovl.scoring.vqa import normalize_vqa_answer, vqa_accuracy

from support import donut_reference, reference_scorers
from support.benchmark_files import ocrbench_result


def scored(prediction: str, *answers: str, category: str | None = None, scorer: str | None = None) -> Scored:
    return Scored(id="x", prediction=prediction, answers=answers, category=category, scorer=scorer, where="test")


# -- OCRBench -----------------------------------------------------------------------------------------
def test_ocrbench_substring_rule_and_the_handwritten_maths_exception():
    assert ocrbench_hit("The sign says STOP here", ["stop"], "Regular Text Recognition")
    assert ocrbench_hit("line one\nline two", ["one line"], "Scene Text-centric VQA")  # newlines are spaces
    assert not ocrbench_hit("stp", ["stop"], "Regular Text Recognition")
    assert ocrbench_hit("nothing", ["zzz", "NOTHING"], "Doc-oriented VQA")  # any answer
    # Maths: spaces removed from both, case kept.
    assert ocrbench_hit("$x ^ { 2 } + 1$", ["x^{2}+1"], HANDWRITTEN_MATHS)
    assert not ocrbench_hit("X^{2}", ["x^{2}"], HANDWRITTEN_MATHS)
    assert ocrbench_hit("X^{2}", ["x^{2}"], "Regular Text Recognition")


def test_ocrbench_scores_per_category_group_and_total():
    samples = [
        scored("hello", "hello", category="Regular Text Recognition"),
        scored("123", "123", category="Digit String Recognition"),
        scored("no", "yes", category="Artistic Text Recognition"),
        scored("paris", "Paris", category="Scene Text-centric VQA"),
        scored("x+y", "x + y", category=HANDWRITTEN_MATHS),
    ]
    scores = score_samples(samples, "ocrbench")
    assert scores["ocrbench/n"] == 5
    assert scores["ocrbench/text_recognition"] == 2  # the six recognition categories summed
    assert scores["ocrbench/digit_string_recognition"] == 1 and scores["ocrbench/artistic_text_recognition"] == 0
    assert scores["ocrbench/scene_text_vqa"] == 1 and scores["ocrbench/handwritten_maths"] == 1
    assert scores["ocrbench/final_score"] == 4
    assert scores["ocrbench/final_score_per_1000"] == pytest.approx(800)
    with pytest.raises(ValueError, match="test: OCRBench category 'Poetry'"):
        score_samples([scored("a", "a", category="Poetry")], "ocrbench")


def test_ocrbench_own_json_format_is_read(tmp_path: Path):
    path = tmp_path / "ocrbench.json"
    results = [
        ocrbench_result("coffee", ["Coffee"], "Regular Text Recognition"),
        {**ocrbench_result("A^{2}", "a^{2}", HANDWRITTEN_MATHS, position=1), "dataset_name": "HME100k"},
    ]
    path.write_text(json.dumps(results))
    records = read_predictions(path)
    assert [r.prediction for r in records] == ["coffee", "A^{2}"] and records[1].answers == ("a^{2}",)
    scores = score_samples(records, "ocrbench")
    assert scores["ocrbench/final_score"] == 1 and scores["ocrbench/regular_text_recognition"] == 1


# -- ANLS ---------------------------------------------------------------------------------------------
def test_anls_hand_worked():
    assert anls("hello wrld", ["hello world"]) == pytest.approx(1 - 1 / 11)
    assert anls("  Hello   World ", ["hello world"]) == 1.0  # case and whitespace are normalised
    # The denominator is the longer *raw* length: 12 here, while the normalised strings have 10 and 11.
    assert anls("hello   wrld", ["hello world"]) == pytest.approx(1 - 1 / 12)
    assert anls("ab", ["ax"]) == 0.5  # exactly at the threshold: kept
    assert anls("abc", ["xyc"]) == 0.0  # 1/3 < 0.5
    assert anls("total", ["x", "totals"]) == pytest.approx(1 - 1 / 6)  # best over answers
    assert anls("", ["answer"]) == 0.0  # an empty prediction scores 0 ...
    assert anls("", ["   "]) == 1.0  # ... except against an answer that normalises to nothing
    assert score_samples([scored("hello wrld", "hello world"), scored("abc", "xyc")], "anls")[
        "anls/anls"
    ] == pytest.approx((1 - 1 / 11) / 2)


# -- VQA accuracy -------------------------------------------------------------------------------------
def test_vqa_answer_normalisation():
    assert normalize_vqa_answer("Two dogs.") == "2 dogs"
    assert normalize_vqa_answer("The Cat!") == "cat"
    assert normalize_vqa_answer("dont") == "don't"
    assert normalize_vqa_answer("1,000") == "1000"
    assert normalize_vqa_answer("a red-car") == "red car"


@pytest.mark.parametrize(("matches", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_vqa_accuracy_leave_one_out(matches: int, expected: float):
    # With k matching annotators out of 10: the k subsets without one of them have k-1 matches, the
    # 10-k others have k: mean of min(1, .../3).
    answers = ["two"] * matches + ["other"] * (10 - matches)
    assert vqa_accuracy("2", answers) == pytest.approx(expected)


def test_vqa_refuses_a_single_answer():
    with pytest.raises(ValueError, match="needs the annotators' answers"):
        score_samples([scored("a", "a")], "vqa")


# -- KIE ----------------------------------------------------------------------------------------------
def test_kie_hand_worked():
    answer = {"store": "ACME", "total": "12.50"}
    # One leaf off by one character: TED 1; TED({}, gt) = two keys (1 each) + leaves "ACME" (4) + "12.50" (5) = 11.
    pred = {"store": "ACME", "total": "12.51"}
    assert ted_accuracy(pred, answer) == pytest.approx(1 - 1 / 11)
    assert field_counts(pred, answer) == (1, 2)
    scores = score_samples(
        [scored(json.dumps(pred), json.dumps(answer)), scored(json.dumps(answer), json.dumps(answer))], "kie"
    )
    assert scores["kie/perfect_match"] == 0.5
    assert scores["kie/ted_accuracy"] == pytest.approx((1 - 1 / 11 + 1) / 2)
    assert scores["kie/field_f1"] == pytest.approx(3 / (3 + 2 / 2))  # corpus-level: tp 3, wrong 2
    assert scores["kie/score"] == pytest.approx((0.5 + (1 - 1 / 11 + 1) / 2 + 0.75) / 3)
    assert scores["kie/json_parse_rate"] == 1.0


def test_kie_unparseable_prediction_counts_as_empty():
    assert parse_prediction(' {"a": "1"}\n') == ({"a": "1"}, True)
    # Donut's reading by default: the whole text is the JSON; fences and prose are ours, as options.
    for wrapped in ('```json\n{"a": "1"}\n```', 'Sure! {"a": "1"} hope it helps'):
        assert parse_prediction(wrapped) == ({}, False)
        assert parse_prediction(wrapped, extract_json=True) == ({"a": "1"}, True)
    assert parse_prediction('{"a": ') == ({}, False)
    assert parse_prediction("[1, 2]") == ({}, False)
    assert parse_prediction('[{"a": "1"}]', accept_lists=True) == ([{"a": "1"}], True)
    scores = score_samples([scored('{"store": ', '{"store": "ACME"}'), scored("", '{"store": "ACME"}')], "kie")
    assert scores["kie/json_parse_rate"] == 0.0
    assert scores["kie/ted_accuracy"] == 0.0 and scores["kie/field_f1"] == 0.0 and scores["kie/score"] == 0.0


def _random_value(rng: random.Random, depth: int):
    kind = rng.choice(
        ["text", "text", "number", "list", "dict", "records", "empty"] if depth < 3 else ["text", "number", "empty"]
    )
    if kind == "text":
        return "".join(rng.choice("abcde 12") for _ in range(rng.randint(1, 8)))
    if kind == "number":
        return rng.choice([rng.randint(0, 999), round(rng.uniform(0, 99), 2)])
    if kind == "empty":
        return rng.choice(["", [], {}, None])
    if kind == "list":
        return [_random_value(rng, 3) for _ in range(rng.randint(0, 3))]
    if kind == "dict":
        return _random_dict(rng, depth + 1)
    return [_random_dict(rng, depth + 1) for _ in range(rng.randint(1, 3))]


def _random_dict(rng: random.Random, depth: int = 0) -> dict:
    return {
        rng.choice(["name", "price", "total", "date", "items", "id", "a", "bb"]): _random_value(rng, depth)
        for _ in range(rng.randint(1, 4))
    }


def _mutate(value, rng: random.Random):
    if isinstance(value, dict):
        out = {k: _mutate(v, rng) for k, v in value.items() if rng.random() > 0.15}
        if rng.random() < 0.2:
            out[rng.choice(["extra", "name", "total"])] = _random_value(rng, 2)
        return out
    if isinstance(value, list):
        out = [_mutate(v, rng) for v in value if rng.random() > 0.15]
        return out[::-1] if rng.random() < 0.2 else out
    if isinstance(value, str) and value and rng.random() < 0.5:
        i = rng.randrange(len(value))
        return value[:i] + rng.choice("xyz") + value[i + 1 :]
    return value


def test_kie_matches_donuts_evaluator_on_random_json_trees():
    rng = random.Random(0)
    preds, answers = [], []
    while len(answers) < 150:
        answer = _random_dict(rng)
        if not donut_reference.normalize_dict(answer):  # Donut divides by TED({}, gt): gt must not be empty
            continue
        pred = _mutate(answer, rng) if rng.random() < 0.8 else _random_dict(rng)
        assert ted_accuracy(pred, answer) == pytest.approx(donut_reference.cal_acc(pred, answer)), (pred, answer)
        preds.append(pred)
        answers.append(answer)
    scores = score_samples([scored(json.dumps(p), json.dumps(a)) for p, a in zip(preds, answers)], "kie")
    assert scores["kie/field_f1"] == pytest.approx(donut_reference.cal_f1(preds, answers))
    assert scores["kie/ted_accuracy"] == pytest.approx(
        sum(donut_reference.cal_acc(p, a) for p, a in zip(preds, answers)) / 150
    )
    assert 0.05 < scores["kie/ted_accuracy"] < 0.95  # the trees differ in varied amounts


def test_kie_options_through_the_score_command(tmp_path: Path, capsys: pytest.CaptureFixture):
    records = [{"id": "0", "prediction": '```json\n{"a": "1"}\n```', "answers": ['{"a": "1"}']}]
    path = _write(tmp_path / "kie.jsonl", records)
    assert main(["score", str(path), "--task", "kie"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["kie/perfect_match"] == 0.0
    assert main(["score", str(path), "--task", "kie", "--kie-extract-json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["kie/perfect_match"] == 1.0


def test_kie_reference_with_nan_or_a_list_is_refused():
    with pytest.raises(ValueError, match="not valid JSON"):
        score_samples([scored('{"a": 1}', '{"a": NaN}')], "kie")
    with pytest.raises(ValueError, match="a list needs accept_lists"):
        score_samples([scored('{"a": 1}', '[{"a": 1}]')], "kie")
    scores = score_samples([scored('[{"a": "1"}]', '[{"a": "1"}]')], "kie", {"kie": {"accept_lists": True}})
    assert scores["kie/perfect_match"] == 1.0


def test_kie_leaf_rule_is_donuts_contains_and_strip_all():
    # Donut treats any label containing "<leaf>" as a leaf and removes every occurrence; keys and values
    # holding the marker (mid-string, twice) and long leaves with long shared prefixes are scored alike.
    rng = random.Random(1)
    long_a = "x" * 300 + "".join(rng.choice("ab") for _ in range(60))
    long_b = "".join(rng.choice("ab") for _ in range(60)) + "x" * 300
    cases = [
        ({"k<leaf>ey": "v"}, {"k<leaf>ey": "w"}),
        ({"a": "x<leaf>y<leaf>z"}, {"a": "xyz"}),
        ({"a<leaf>": {"b": "1"}}, {"a<leaf>": {"b": "2"}}),
        ({"a": long_a}, {"a": long_b}),
        ({"a": [long_a, "q"], "b": long_b}, {"a": [long_b], "b": long_a}),
    ]
    for pred, answer in cases:
        assert ted_accuracy(pred, answer) == pytest.approx(donut_reference.cal_acc(pred, answer), abs=1e-12), (
            pred,
            answer,
        )


# -- exact edit distances (ANLS, CER) ------------------------------------------------------------------
def _long_pair(rng: random.Random) -> tuple[str, str]:
    """Long strings sharing a long prefix or suffix: where a banded edit distance overestimates."""
    common = "".join(rng.choice("ab ") for _ in range(rng.randint(100, 300)))
    tail = lambda: "".join(rng.choice("abcxyz ") for _ in range(rng.randint(0, 80)))  # noqa: E731
    return (common + tail(), tail() + common) if rng.random() < 0.5 else (tail() + common + tail(), common)


def test_anls_equals_the_docvqa_scorer_on_long_and_unicode_strings():
    rng = random.Random(0)
    pairs = [_long_pair(rng) for _ in range(60)]
    pairs += [("Straße", "STRASSE"), ("İstanbul", "istanbul"), ("  ", ""), ("ﬁle", "file"), ("日本 語", "日本語")]
    differing = 0
    for prediction, answer in pairs:
        ours = anls(prediction, [answer, answer[::-1]])
        assert ours == pytest.approx(reference_scorers.docvqa_anls(prediction, [answer, answer[::-1]]), abs=1e-12), (
            prediction,
            answer,
        )
        differing += ours != 0.0
    assert differing > 10  # the pairs exercise both sides of the threshold


def test_cer_uses_exact_distances_and_integer_counts():
    rng = random.Random(2)
    pairs = [_long_pair(rng) for _ in range(30)]
    expected = sum(reference_scorers.levenshtein(p, t) for p, t in pairs) / sum(len(t) for _, t in pairs)
    assert score_samples([scored(p, t) for p, t in pairs], "cer")["cer/cer"] == pytest.approx(expected, rel=1e-12)
    # 2**24 + 1 edits against one reference character: exactly representable in float64, not float32.
    huge = score_samples([scored("x" * (2**24 + 1), "y")], "cer")["cer/cer"]
    assert huge == 2**24 + 1


# -- TextVQA processing ---------------------------------------------------------------------------------
def test_textvqa_processing_equals_m4c_and_vlmevalkit_verbatim():
    rng = random.Random(3)
    alphabet = [
        "a",
        "the",
        "two",
        "dont",
        "Cat",
        "1,000",
        "3.5",
        ".",
        "..",
        "?",
        "!",
        "-",
        "'s",
        " ",
        "\n",
        "(x)",
        "a.b",
        "Its",
    ]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(400)]
    texts += ["." * 40 + "end", "a." * 35, "What's the 1,000th?", "Two dogs."]
    for text in texts:
        assert normalize_vqa_answer(text) == reference_scorers.m4c_process(text), text
        assert normalize_vqa_answer(text, "vlmevalkit") == reference_scorers.vlmevalkit_process(text), text
    # the count quirk: only the first 32 periods (those not before a digit) are stripped
    assert normalize_vqa_answer("." * 40 + "end") == "." * 8 + "end"
    assert normalize_vqa_answer("What's up?") != normalize_vqa_answer("What's up?", "vlmevalkit")
    for _ in range(100):
        answers = [rng.choice(["two", "2", "Two.", "three", "the cat"]) for _ in range(10)]
        prediction = rng.choice(["2", "two", "cat", "3"])
        for processing, process in (
            ("m4c", reference_scorers.m4c_process),
            ("vlmevalkit", reference_scorers.vlmevalkit_process),
        ):
            assert vqa_accuracy(prediction, answers, processing) == pytest.approx(
                reference_scorers.textvqa_accuracy(prediction, answers, process)
            )


def test_vqa_processing_option_through_the_scorer():
    sample = scored("What's it?", *(["what 's it"] * 10))
    assert score_samples([sample], "vqa")["vqa/accuracy"] == 1.0
    assert score_samples([sample], "vqa", {"vqa": {"processing": "vlmevalkit"}})["vqa/accuracy"] == 0.0
    with pytest.raises(ValueError, match="'m4c' or 'vlmevalkit'"):
        score_samples([sample], "vqa", {"vqa": {"processing": "evalai"}})
    with pytest.raises(ValueError, match="unknown task"):
        score_samples([sample], "vqa", {"textvqa": {}})


# -- transcription --------------------------------------------------------------------------------------
def test_transcription_is_torchmetrics_cer_wer_plus_exact_match():
    preds, targets = ["hello wrld", "total 12.50 ", "x"], ["hello world", "total 12.50", "abc def"]
    scores = score_samples([scored(p, t) for p, t in zip(preds, targets)], "cer")
    assert scores["cer/cer"] == pytest.approx(float(char_error_rate(preds, targets)))
    assert scores["cer/wer"] == pytest.approx(float(word_error_rate(preds, targets)))
    assert scores["cer/exact_match"] == pytest.approx(1 / 3)  # surrounding whitespace ignored
    assert score_samples([scored("", "abc")], "cer")["cer/cer"] == 1.0  # empty prediction: every character missed


# -- prediction files and `h2ovl score` ---------------------------------------------------------------
def _write(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_jsonl_records_may_hold_unicode_line_separators(tmp_path: Path):
    # json.dumps(ensure_ascii=False) writes U+2028, U+2029 and U+0085 raw; only "\n" ends a JSON Lines record.
    texts = ["a\u2028b", "c\u2029d", "e\u0085f"]
    path = tmp_path / "p.jsonl"
    path.write_text(
        "\r\n".join(
            json.dumps({"id": str(i), "prediction": t, "answers": [t]}, ensure_ascii=False) for i, t in enumerate(texts)
        )
        + "\n",
        encoding="utf-8",
    )
    records = read_predictions(path)
    assert [r.prediction for r in records] == texts and [r.where for r in records] == [f"{path}:{i}" for i in (1, 2, 3)]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"answers": ["a"]}, "no 'prediction'"),
        ({"prediction": 3, "answers": ["a"]}, "'prediction' is int, not a string"),
        ({"prediction": None, "answer": "a"}, "'prediction' is NoneType"),
        ({"prediction": "a"}, "no 'answers' or 'answer'"),
        ({"prediction": "a", "answers": []}, "non-empty list"),
        ({"prediction": "a", "answers": ["a", " "]}, "an answer is empty"),
        ({"prediction": "a", "answers": ["a", 5]}, "an answer is int"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_prediction_records_name_the_line(tmp_path: Path, bad, message: str):
    path = _write(tmp_path / "p.jsonl", [{"prediction": "a", "answers": ["a"]}, bad])
    with pytest.raises(PredictionsError, match=rf"p\.jsonl:2: .*{message}"):
        read_predictions(path)


def test_score_command_prints_scores_on_its_last_line(tmp_path: Path, capsys: pytest.CaptureFixture):
    path = _write(
        tmp_path / "p.jsonl",
        [
            {"id": 1, "prediction": "hello", "answer": "hello", "scorer": "cer"},
            {"id": 2, "prediction": '{"a": "1"}', "answer": {"a": "1"}, "scorer": "kie"},  # a JSON object answer
            {"id": 3, "prediction": "", "answers": ["paris"], "scorer": "anls"},  # empty prediction: 0
        ],
    )
    assert main(["score", "--task", "auto", str(path), "--out", str(tmp_path / "s.json")]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["cer/exact_match"] == 1.0 and last["kie/score"] == 1.0 and last["anls/anls"] == 0.0
    assert json.loads((tmp_path / "s.json").read_text()) == last
    assert main(["score", "--task", "kie", str(path)]) == 2  # "hello" is not a JSON reference
    assert "p.jsonl:1: KIE reference is not valid JSON" in capsys.readouterr().err
    del_scorer = _write(tmp_path / "q.jsonl", [{"prediction": "a", "answer": "a"}])
    assert main(["score", "--task", "auto", str(del_scorer)]) == 2
    assert "q.jsonl:1: task 'auto' scores by the record's 'scorer' field" in capsys.readouterr().err


# -- DDP ----------------------------------------------------------------------------------------------
def _samples() -> list[Scored]:
    rng = random.Random(1)
    out = []
    for _ in range(24):
        truth = rng.choice(["hello world", "total 12.50", "receipt"])
        guess = truth if rng.random() < 0.5 else truth[:-2]
        out.append(scored(guess, truth, scorer="cer"))
        out.append(scored(guess, truth, scorer="anls"))
        out.append(scored(json.dumps({"t": guess}), json.dumps({"t": truth}), scorer="kie"))
        out.append(scored(guess, truth, category="Regular Text Recognition", scorer="ocrbench"))
        out.append(scored(guess, *([truth] * rng.randint(0, 4) + ["x"] * 6), scorer="vqa"))
    return out


def _rank_scores(rank: int, world: int, init: str, queue) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    scorer = TaskScorer("auto")
    scorer.update(_samples()[rank::world])
    queue.put((rank, scorer.compute()))
    dist.destroy_process_group()


def test_scores_under_two_ddp_processes_equal_one_process(tmp_path: Path):
    context = mp.get_context("spawn")
    queue = context.Queue()
    init = f"file://{tmp_path / 'rendezvous'}"
    processes = [context.Process(target=_rank_scores, args=(rank, 2, init, queue)) for rank in range(2)]
    for process in processes:
        process.start()
    results = dict(queue.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    single = score_samples(_samples(), "auto")
    assert {key.split("/")[0] for key in single} == {"cer", "anls", "kie", "ocrbench", "vqa"}
    for rank in (0, 1):
        assert results[rank].keys() == single.keys()
        for key, value in single.items():
            assert results[rank][key] == pytest.approx(value), key
    assert single["cer/n"] == 24 and results[0]["cer/n"] == 24  # each rank saw 12


# -- ChartQA relaxed accuracy, KIE's NaN, file encodings -------------------------------------------------
def _chart_answer(rng: random.Random) -> str:
    kind = rng.choice(["int", "float", "percent", "zero", "word", "sci", "spaced", "nan"])
    if kind == "int":
        return str(rng.randint(-500, 5000))
    if kind == "float":
        return f"{rng.uniform(-100, 100):.{rng.randint(0, 3)}f}"
    if kind == "percent":
        return f"{rng.uniform(0, 100):.1f}%"
    if kind == "zero":
        return rng.choice(["0", "0.0", "0%", "-0"])
    if kind == "sci":
        return f"{rng.uniform(1, 9):.1f}e{rng.randint(-2, 3)}"
    if kind == "spaced":
        return f" {rng.randint(1, 99)} "
    if kind == "nan":
        return rng.choice(["nan", "inf", "-Infinity"])
    return rng.choice(["Yes", "no", "Brazil", "BRAZIL", "2019-2020", "1,200", "a"])


def _near(answer: str, rng: random.Random) -> str:
    """A prediction close to, equal to, or far from `answer` (numbers moved by up to ~8%)."""
    roll = rng.random()
    if roll < 0.25:
        return answer if rng.random() < 0.5 else answer.upper()
    try:
        value = float(answer.rstrip("%")) * (1 + rng.uniform(-0.08, 0.08))
    except ValueError:
        return _chart_answer(rng)
    text = f"{value:.{rng.randint(0, 4)}f}"
    return text + "%" if answer.endswith("%") and rng.random() < 0.7 else text


def test_relaxed_accuracy_equals_the_reference_rule_on_random_answers():
    rng = random.Random(0)
    samples, expected = [], []
    for _ in range(3000):
        refs = [_chart_answer(rng) for _ in range(rng.choice([1, 1, 2]))]
        pred = _near(rng.choice(refs), rng)
        samples.append(scored(pred, *refs, category=rng.choice(["test_human", "augmented_test"])))
        expected.append(any(reference_scorers.relaxed_correctness(ref, pred) for ref in refs))
    scores = score_samples(samples, "relaxed")
    assert scores["relaxed/accuracy"] == pytest.approx(sum(expected) / len(expected))
    assert 0.2 < scores["relaxed/accuracy"] < 0.8  # the generator covers hits and misses
    for split in ("human", "augmented"):
        mine = [e for e, s in zip(expected, samples) if split in s.category]
        assert scores[f"relaxed/{split}"] == pytest.approx(sum(mine) / len(mine)) and scores[
            f"relaxed/{split}_n"
        ] == len(mine)
    assert scores["relaxed/mean_of_splits"] == pytest.approx(
        (scores["relaxed/human"] + scores["relaxed/augmented"]) / 2
    )


@pytest.mark.parametrize(
    ("prediction", "answer", "correct"),
    [
        ("104", "100", True),
        ("105", "100", True),
        ("105.1", "100", False),
        ("95", "100", True),
        ("50%", "0.5", True),
        ("0.5", "50%", True),
        ("0", "0", True),
        ("0.0", "0", False),  # a zero target compares strings
        ("yes", "Yes", True),
        (" 12 ", "12", True),
        ("1e3", "1000", True),
        ("1,000", "1000", False),
    ],
)
def test_relaxed_accuracy_hand_worked(prediction: str, answer: str, correct: bool):
    assert score_samples([scored(prediction, answer)], "relaxed")["relaxed/accuracy"] == float(correct)
    assert reference_scorers.relaxed_correctness(answer, prediction) == correct


def test_relaxed_accuracy_refuses_a_split_it_cannot_name():
    with pytest.raises(ValueError, match="ChartQA split 'val'"):
        score_samples([scored("1", "1", category="val")], "relaxed")


def test_kie_predictions_with_nan_or_infinity_parse_as_donut_parses_them():
    for text, parsed in (
        ('{"a": NaN}', {"a": float("nan")}),
        ('{"total": Infinity, "b": "x"}', {"total": float("inf"), "b": "x"}),
    ):
        value, ok = parse_prediction(text)
        assert ok and json.dumps(value) == json.dumps(parsed)
    pred, answer = json.loads('{"total": NaN, "name": "ACME"}'), {"total": "12.50", "name": "ACME"}
    scores = score_samples([scored('{"total": NaN, "name": "ACME"}', json.dumps(answer))], "kie")
    assert scores["kie/json_parse_rate"] == 1.0
    assert scores["kie/ted_accuracy"] == pytest.approx(donut_reference.cal_acc(pred, answer))
    assert scores["kie/field_f1"] == pytest.approx(donut_reference.cal_f1([pred], [answer])) == 0.5


def test_a_predictions_file_that_is_not_utf8_is_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        json.dumps({"prediction": "café", "answers": ["café"]}, ensure_ascii=False).encode("latin-1") + b"\n"
    )
    assert main(["score", "--task", "anls", str(path)]) == 2
    assert f"{path}: not UTF-8 text" in capsys.readouterr().err
