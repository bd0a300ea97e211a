"""`humpback eval`: AlpacaEval-format answers, pairwise judging, win rates; backward fidelity."""

import json
import math
import sys

import pytest
import yaml
from conftest import ScriptedEngine, shared_data

from humpback.config import BackwardEvalConfig, EvalConfig, JudgeConfig
from humpback.evaluate import (
    VERDICT_PREFIX,
    alpaca_eval_config,
    backward_fidelity,
    compare,
    evaluate,
    judge_pairs,
    length_controlled_win_rate,
    load_prompt_set,
    parse_verdict,
    split_seed,
    win_rate,
)
from humpback.seed import load_seed


@pytest.mark.parametrize(
    "text,verdict",
    [
        ("A is clearer.\nVerdict: A", "A"),
        ("verdict - b", "B"),
        ("**Verdict:** tie", "tie"),
        ("Verdict: B\nOn reflection... Verdict: A", "A"),  # the last verdict counts
        ("I prefer the first one.", None),
        ("Verdict: C", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


PAIRS = [{"instruction": f"question {i}", "output": "long answer " * (i + 2), "reference": "short"} for i in range(6)]


def _shown(prompt):
    """The two answers in a judge prompt, as shown (A, B)."""
    user = prompt[1]["content"]
    a = user.split("Answer A:\n", 1)[1].split("\n\nAnswer B:", 1)[0]
    b = user.split("Answer B:\n", 1)[1].split("\n\nWhich answer", 1)[0]
    return a, b


def test_both_orders_cancel_a_judge_that_always_says_a():
    cfg = JudgeConfig(mode="generate", order="both")
    judgements = judge_pairs(PAIRS, ScriptedEngine(lambda p: "Looks fine.\nVerdict: A"), cfg)
    assert len(judgements) == 12 and {j["model_shown_as"] for j in judgements} == {"A", "B"}
    result = win_rate(judgements, "m", "ref")
    assert result["win_rate"] == 50.0 and result["n_draws"] == 6 and result["standard_error"] == 0.0


def test_a_judge_that_prefers_the_longer_answer_gives_the_longer_side_every_win():
    def longer(prompt):
        a, b = _shown(prompt)
        return "Verdict: A" if len(a) > len(b) else "Verdict: B"

    judgements = judge_pairs(PAIRS, ScriptedEngine(longer), JudgeConfig(mode="generate", order="both"))
    assert all(j["preference"] == 1.0 for j in judgements)
    assert all(j["judge_output"] in ("Verdict: A", "Verdict: B") for j in judgements)  # raw text kept
    result = win_rate(judgements, "m", "ref")
    assert result["win_rate"] == 100.0 and result["avg_length"] > result["reference_avg_length"]


def test_ties_count_half_and_missing_verdicts_are_counted_not_guessed():
    answers = iter(["Verdict: tie", "no idea"] * 6)
    judgements = judge_pairs(PAIRS, ScriptedEngine(lambda p: next(answers)), JudgeConfig(mode="generate"))
    result = win_rate(judgements, "m", "ref")
    assert result["unjudged"] == 6 and result["win_rate"] == 50.0 and result["n_prompts"] == 6


def test_logprob_judging_reads_the_probability_of_a_against_b():
    def logprobs(prompt):
        assert prompt[-1] == {"role": "assistant", "content": VERDICT_PREFIX}
        return {" A": math.log(0.6), " B": math.log(0.2)}  # renormalised: 0.75 for whatever is shown first

    judgements = judge_pairs(PAIRS[:2], ScriptedEngine(None, logprobs), JudgeConfig(mode="logprob", order="both"))
    first = [j["preference"] for j in judgements if j["model_shown_as"] == "A"]
    second = [j["preference"] for j in judgements if j["model_shown_as"] == "B"]
    assert first == [0.75, 0.75] and second == [0.25, 0.25]
    assert win_rate(judgements, "m", "ref")["win_rate"] == 50.0


def test_random_order_is_seeded_and_judges_once_per_pair():
    cfg = JudgeConfig(mode="generate", order="random", random_seed=3)
    engine = ScriptedEngine(lambda p: "Verdict: A")
    once = [j["model_shown_as"] for j in judge_pairs(PAIRS, engine, cfg)]
    assert len(once) == 6 and once == [j["model_shown_as"] for j in judge_pairs(PAIRS, engine, cfg)]


def test_standard_error_is_over_prompts():
    judgements = [
        {"instruction": f"q{i}", "output": "x", "reference": "y", "preference": p}
        for i, p in enumerate([1.0, 0.0, 1.0, 1.0])
    ]
    result = win_rate(judgements, "m", "ref")
    assert result["win_rate"] == 75.0
    assert result["standard_error"] == pytest.approx(100 * 0.5 / 2, abs=0.01)  # stdev 0.5 over sqrt(4)


def test_length_control_removes_a_preference_that_length_alone_explains():
    import numpy as np

    diffs = np.linspace(-200, 600, 60)  # the model is usually longer
    prefs = 0.5 + 0.45 * np.tanh(diffs / diffs.std())  # the judge likes length, nothing else
    raw = 100 * prefs.mean()
    controlled = length_controlled_win_rate(list(prefs), list(diffs))
    assert raw > 60 and abs(controlled - 50) < 5
    assert length_controlled_win_rate([1.0] * 5, [1.0] * 5) is None  # too few to fit


def _alpaca_file(tmp_path, n=6):
    rows = [
        {
            "instruction": f"Name a colour number {i}.",
            "output": f"Colour {i} is blue.",
            "generator": "text_davinci_003",
            "dataset": "helpful_base",
        }
        for i in range(n)
    ]
    path = tmp_path / "alpaca_eval.json"
    path.write_text(json.dumps(rows))
    return path


def test_limit_takes_a_fixed_seeded_sample(tmp_path):
    path = _alpaca_file(tmp_path, 20)
    a, _ = load_prompt_set(path, limit=5, seed=1)
    b, _ = load_prompt_set(path, limit=5, seed=1)
    c, _ = load_prompt_set(path, limit=5, seed=2)
    assert [p["instruction"] for p in a] == [p["instruction"] for p in b] != [p["instruction"] for p in c]
    assert len(a) == 5


def test_evaluate_writes_alpaca_eval_outputs_and_a_judged_win_rate(tmp_path, tiny_model):
    cfg = EvalConfig(
        prompts=_alpaca_file(tmp_path),
        limit=4,
        max_new_tokens=8,
        dtype="float32",
        judge=JudgeConfig(model=tiny_model, dtype="float32", min_choice_mass=0),
    )  # random: no mass on A/B
    result = evaluate(cfg, tiny_model, tmp_path / "eval", name="tiny")
    outputs = json.loads((tmp_path / "eval" / "model_outputs.json").read_text())
    assert len(outputs) == 4 and all(
        set(o) - {"cut_off"} == {"instruction", "output", "generator", "dataset"} for o in outputs
    )
    assert {o["generator"] for o in outputs} == {"tiny"} and {o["dataset"] for o in outputs} == {"helpful_base"}
    judgements = [json.loads(line) for line in (tmp_path / "eval" / "judgements.jsonl").read_text().splitlines()]
    assert len(judgements) == 8 and all(0 <= j["preference"] <= 1 for j in judgements)
    board = json.loads((tmp_path / "eval" / "leaderboard.json").read_text())
    assert board["reference"] == "text_davinci_003" and board["n_prompts"] == 4
    assert 0 <= board["win_rate"] <= 100 and board["standard_error"] is not None
    assert result["win_rate"] == board["win_rate"]


def test_bad_prompt_lines_are_rejected_with_file_and_line(tmp_path, tiny_model):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"instruction": "Say hi."}\nnot json\n{"other": 1}\n{"instruction": "Say bye."}\n')
    cfg = EvalConfig(prompts=path, max_new_tokens=4, dtype="float32", judge=JudgeConfig(enabled=False))
    result = evaluate(cfg, tiny_model, tmp_path / "eval")
    assert result["answers"] == 2 and result["rejects"] == 2
    rejects = [json.loads(line) for line in (tmp_path / "eval" / "rejects.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rejects] == [f"{path}:2", f"{path}:3"]


def test_compare_judges_two_models_on_the_same_prompts(tmp_path, tiny_model):
    cfg = EvalConfig(
        prompts=_alpaca_file(tmp_path),
        limit=3,
        max_new_tokens=6,
        dtype="float32",
        judge=JudgeConfig(model=tiny_model, dtype="float32", order="random", min_choice_mass=0),
    )
    result = compare(cfg, tiny_model, tiny_model, tmp_path / "cmp", name="m2", baseline_name="m0")
    assert result["model"] == "m2" and result["reference"] == "m0" and result["n_judgements"] == 3
    a = json.loads((tmp_path / "cmp" / "m2" / "model_outputs.json").read_text())
    b = json.loads((tmp_path / "cmp" / "m0" / "model_outputs.json").read_text())
    assert [x["instruction"] for x in a] == [x["instruction"] for x in b]


def test_cli_eval_compare_resolves_a_runs_models(tmp_path, tiny_model):
    import shutil

    from typer.testing import CliRunner

    from humpback.cli import app

    run = tmp_path / "run"
    for name in ("m0", "m2"):
        shutil.copytree(tiny_model, run / "models" / name)
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--run",
            str(run),
            "--compare",
            "m0",
            "m2",
            "--prompts",
            str(_alpaca_file(tmp_path)),
            "--limit",
            "2",
            "--max-new-tokens",
            "4",
            "--dtype",
            "float32",
            "--judge-model",
            tiny_model,
            "--judge-dtype",
            "float32",
            "--judge-min-choice-mass",
            "0",
        ],
    )  # a random judge: no mass on A/B
    assert result.exit_code == 0, result.output
    board = json.loads((run / "eval" / "m2_vs_m0" / "leaderboard.json").read_text())
    assert board["model"] == "m2" and board["reference"] == "m0" and board["n_prompts"] == 2
    assert "win rate" in result.output


def test_alpaca_eval_config_names_the_judge_and_never_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    out = alpaca_eval_config(tmp_path / "annotator", "my-judge", "http://127.0.0.1:8000/v1")
    config = yaml.safe_load((out / "configs.yaml").read_text())
    assert config["humpback_judge"]["completions_kwargs"]["model_name"] == "my-judge"
    assert yaml.safe_load((out / "openai_configs.yaml").read_text())["default"][0]["base_url"].endswith("/v1")
    assert all("sk-secret-123" not in p.read_text() for p in out.iterdir())


def test_seed_split_is_seeded_and_disjoint():
    seed, _ = load_seed("demo")
    train, held = split_seed(seed, 0.2, 0)
    again, held_again = split_seed(seed, 0.2, 0)
    assert held == held_again and len(held) == round(len(seed) * 0.2)
    assert not {r["instruction"] for r in train} & {r["instruction"] for r in held}
    assert split_seed(seed, 0.2, 1)[1] != held


def test_backward_fidelity_scores_trained_and_base(tmp_path, tiny_model):
    seed, _ = load_seed("demo")
    cfg = BackwardEvalConfig(holdout=0.3, max_new_tokens=8, dtype="float32", embedding_model=None)
    cfg.train.max_steps = 1
    cfg.train.micro_batch_size = 4
    result = backward_fidelity(seed[:12], tiny_model, tmp_path, cfg)
    assert result["held_out"] == 4 and result["trained_on"] == 8
    assert set(result["models"]) == {"trained", "base"}
    assert all(0 <= m["rouge_l"] <= 1 and m["embedding_similarity"] is None for m in result["models"].values())
    assert result["embedding_note"] == "no embedding model configured"
    assert (tmp_path / "backward" / "config.json").exists()
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all("trained_instruction" in r and "base_rouge_l" in r for r in rows)


def test_backward_fidelity_on_pairs_from_elsewhere_trains_on_the_whole_seed(tmp_path, tiny_model):
    from typer.testing import CliRunner

    from humpback.cli import app

    seed, _ = load_seed("demo")
    other = tmp_path / "other.jsonl"
    other.write_text(
        "".join(json.dumps({"instruction": f"Name a colour number {i}.", "output": "Blue."}) + "\n" for i in range(3))
    )
    result = CliRunner().invoke(
        app,
        [
            "eval-backward",
            "--seed",
            "demo",
            "--held-out",
            str(other),
            "--model",
            tiny_model,
            "--out",
            str(tmp_path / "e"),
            "--train-max-steps",
            "1",
            "--max-new-tokens",
            "4",
            "--dtype",
            "float32",
            "--embedding-model",
            "",
        ],
    )
    assert result.exit_code == 0, result.output
    fidelity = json.loads((tmp_path / "e" / "fidelity.json").read_text())
    assert fidelity["held_out"] == 3 and fidelity["trained_on"] == len(seed) and fidelity["split_seed"] is None
    rows = [json.loads(line) for line in (tmp_path / "e" / "predictions.jsonl").read_text().splitlines()]
    assert [r["instruction"] for r in rows] == [f"Name a colour number {i}." for i in range(3)]


def test_rouge_l_is_the_real_metric():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    assert scorer.score("write a poem about the sea", "write a poem about the sea")["rougeL"].fmeasure == 1.0
    assert scorer.score("write a poem about the sea", "list three prime numbers")["rougeL"].fmeasure == 0.0


@pytest.mark.e2e
def test_eval_on_20_alpaca_eval_prompts_with_the_embedded_model(tmp_path, embedded_model):
    from typer.testing import CliRunner

    from humpback.cli import app

    prompts = shared_data("alpaca_eval/text_davinci_003_outputs.json")
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--model",
            "smollm2-135m",
            "--prompts",
            str(prompts),
            "--limit",
            "20",
            "--max-new-tokens",
            "192",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    outputs = json.loads((out / "model_outputs.json").read_text())
    assert len(outputs) == 20 and all(o["output"].strip() for o in outputs)
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["reference"] == "text_davinci_003" and board["n_prompts"] == 20
    assert board["standard_error"] > 0 and "±" in result.output


@pytest.mark.e2e
def test_eval_backward_on_the_self_instruct_seed(tmp_path, embedded_model):
    from typer.testing import CliRunner

    from humpback.cli import app

    seed = shared_data("seed/self_instruct_seed_tasks.jsonl")
    result = CliRunner().invoke(
        app,
        [
            "eval-backward",
            "--seed",
            str(seed),
            "--out",
            str(tmp_path),
            "--train-max-steps",
            "6",
            "--train-max-length",
            "512",
            "--max-new-tokens",
            "48",
        ],
    )
    assert result.exit_code == 0, result.output
    fidelity = json.loads((tmp_path / "fidelity.json").read_text())
    assert fidelity["held_out"] == 35 and fidelity["trained_on"] == 140
    for name in ("trained", "base"):
        assert 0 < fidelity["models"][name]["rouge_l"] < 1
    assert "trained" in result.output and "base" in result.output and "ROUGE-L" in result.output


def test_embedding_similarity_is_the_cosine_of_normalised_embeddings(monkeypatch):
    """sentence-transformers is optional (and its models need the hub): a stand-in module with
    its API checks our side, the cosine of the normalised embeddings, and the fallback."""
    import sys
    import types

    import numpy as np

    from humpback.evaluate import _embedding_similarity

    class StandIn:
        def __init__(self, name):
            if name == "missing":
                raise OSError("not on disk")

        def encode(self, texts, normalize_embeddings, convert_to_numpy):
            vectors = np.array([[len(t), t.count("a") + 1.0] for t in texts])
            return vectors / np.linalg.norm(vectors, axis=1, keepdims=True) if normalize_embeddings else vectors

    monkeypatch.setitem(sys.modules, "sentence_transformers", types.SimpleNamespace(SentenceTransformer=StandIn))
    scores, note = _embedding_similarity("stand-in", ["aaaa", "abc"], ["aaaa", "xyz"])
    assert scores[0] == pytest.approx(1.0) and scores[1] < 1.0 and "stand-in" in note
    assert _embedding_similarity("missing", ["a"], ["b"]) == (None, "could not load missing: OSError")
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # not installed
    assert "not installed" in _embedding_similarity("any", ["a"], ["b"])[1]


def test_a_verdict_read_on_little_probability_is_unjudged():
    """ " A" and " B" with 0.3 of the judge's probability between them (it wanted to write something
    else): below the 0.5 floor the pair is unjudged, never a confident preference."""
    engine = ScriptedEngine(None, lambda p: {" A": math.log(0.2), " B": math.log(0.1)})
    judgements = judge_pairs(PAIRS[:2], engine, JudgeConfig(mode="logprob", order="both"))
    assert all(j["preference"] is None and j["unjudged_reason"] == "low_choice_mass" for j in judgements)
    assert all(j["choice_mass"] == pytest.approx(0.3) for j in judgements)
    assert win_rate(judgements, "m", "ref")["unjudged"] == 4
    lenient = judge_pairs(PAIRS[:2], engine, JudgeConfig(mode="logprob", order="both", min_choice_mass=0.2))
    assert all(j["preference"] is not None for j in lenient)


def test_compared_models_of_the_same_folder_name_stay_apart():
    from humpback.evaluate import distinct_names

    assert distinct_names("runA/models/m2", "runB/models/m2") == ("runA-models-m2", "runB-models-m2")
    assert distinct_names("runs/x/models/m2", "runs/x/models/m0") == ("m2", "m0")
    assert distinct_names("m2", "m2") == ("m2", "m2-baseline")


def test_eval_of_a_run_asks_as_its_models_were_trained(tmp_path):
    from humpback.config import RunConfig, dump_yaml
    from humpback.evaluate import as_the_run_trained

    dump_yaml(RunConfig(forward={"tag_placement": "none"}), tmp_path / "config.yaml")
    assert as_the_run_trained(EvalConfig(), tmp_path).tag_placement == "none"
    assert as_the_run_trained(EvalConfig(tag_placement="system"), tmp_path).tag_placement == "system"  # the user's
    assert as_the_run_trained(EvalConfig(), tmp_path / "elsewhere").tag_placement == "system"


def test_eval_metric_nll_is_the_loss_on_the_reference_answers(tmp_path, tiny_model):
    from humpback.evaluate import reference_loss
    from humpback.probe import answer_loss

    cfg = EvalConfig(prompts=_alpaca_file(tmp_path), limit=3, metric="nll")
    result = reference_loss(cfg, tiny_model, tmp_path / "nll", name="tiny")
    saved = json.loads((tmp_path / "nll" / "nll.json").read_text())
    assert saved == result and result["pairs"] == 3 and result["answer_loss"] > 0
    from humpback.evaluate import load_prompt_set

    chosen, _ = load_prompt_set(cfg.prompts, 3, 0)
    assert result["answer_loss"] == answer_loss(chosen, tiny_model)  # the same pairs, asked the same way


def test_eval_outputs_judges_existing_answers_without_generating(tmp_path, monkeypatch):
    """`humpback eval --outputs`: answers already written (AlpacaEval model_outputs) are judged against
    the prompt set's references; a judge that prefers them shows them winning, beside the published rate."""
    from typer.testing import CliRunner

    from humpback.cli import app

    evaluate_module = sys.modules["humpback.evaluate"]  # the package's `evaluate` attribute is the function

    prompts = _alpaca_file(tmp_path)
    asked = json.loads(prompts.read_text())
    answers = [
        {"instruction": p["instruction"], "output": "GOOD " + p["output"], "generator": "best_model"} for p in asked
    ]
    answers.append({"instruction": "Never asked.", "output": "GOOD but unmatched"})
    answers.append({"instruction": "No answer here."})
    outputs = tmp_path / "model_outputs.json"
    outputs.write_text(json.dumps(answers))

    def prefers_good(prompt):  # the answer starting GOOD wins, whichever side shows it
        a, _ = _shown(prompt)
        return "Verdict: A" if a.startswith("GOOD") else "Verdict: B"

    judge_engine, original = ScriptedEngine(prefers_good), evaluate_module.engine_for
    monkeypatch.setattr(
        evaluate_module, "engine_for", lambda model, cfg, engine=None: original(model, cfg, judge_engine)
    )
    result = CliRunner().invoke(
        app,
        ["eval", "--outputs", str(outputs), "--prompts", str(prompts), "--out", str(tmp_path / "judged")]
        + ["--judge-model", "test/scripted-judge", "--judge-mode", "generate", "--published-win-rate", "80.5"],
    )
    assert result.exit_code == 0, result.output
    board = json.loads((tmp_path / "judged" / "leaderboard.json").read_text())
    assert board["model"] == "best_model" and board["win_rate"] == 100.0 and board["n_prompts"] == len(asked)
    assert board["published_win_rate"] == 80.5 and "+19.5 points" in result.output
    assert not (tmp_path / "judged" / "model_outputs.json").exists()  # nothing was generated
    rejects = (tmp_path / "judged" / "rejects.jsonl").read_text()
    assert "no 'output' to judge" in rejects and "No answer here." in rejects
