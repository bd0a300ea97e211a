import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ScriptedEngine, write_jsonl

from humpback.config import CurateConfig
from humpback.curate import curate, rate, select
from humpback.rubric import RUBRIC, SCORE_CHOICES, load_template, parse_score, rating_prompt
from humpback.shards import read_stage, stage_counters


@pytest.mark.parametrize(
    "text,score",
    [
        ("The answer is complete and helpful.\nScore: 4", 4),
        ("Reasoning.\n\nScore: 5\n", 5),
        ("Reasoning.\n**Score:** 3", 3),
        ("score: 2", 2),
        ("Score: 1.", 1),
        ("Reasoning.\nScore: 10", None),  # a popular single-digit regex reads this as 1
        ("Reasoning.\nScore: 10502", None),
        ("Reasoning.\nscore 4", None),  # no colon
        ("Score: 3\nOn reflection...\nScore: 4", None),  # two score lines: contradictory
        ("Score: 4\nbecause it is good", None),  # not the final line
        ("I would give this a 5.", None),
        ("Reasoning.\nScore: 4.5", None),
        ("Reasoning.\nScore: 0", None),
        ("Reasoning.\nScore: four", None),
        ("Reasoning.\nScore: 4/5", None),
        ("", None),
        ("   \n  ", None),
    ],
)
def test_parse_score_only_counts_a_final_score_line(text, score):
    assert parse_score(text) == score


def test_rubric_has_the_five_levels_and_the_score_format():
    for level in ("1:", "2:", "3:", "4:", "5:"):
        assert level in RUBRIC
    for criterion in ("AI assistant", "blog", "forum", "navigation", "Score: <rating>", "{instruction}", "{output}"):
        assert criterion in RUBRIC
    prompt = rating_prompt({"instruction": "Say {hi}", "output": "Hi {there}"})
    assert "Say {hi}" in _user(prompt) and "Hi {there}" in _user(prompt)


def test_custom_template(tmp_path):
    (tmp_path / "t.txt").write_text("Q: {instruction}\nA: {output}\nRate it.")
    assert load_template(tmp_path / "t.txt").startswith("Q:")
    (tmp_path / "bad.txt").write_text("no fields")
    with pytest.raises(ValueError, match="must contain"):
        load_template(tmp_path / "bad.txt")


def candidates(n: int) -> list[dict]:
    return [
        {
            "id": f"c{i:03d}",
            "source": f"s{i}",
            "instruction": f"QID-{i} question",
            "output": f"answer {i}",
            "backward_model": "bw",
        }
        for i in range(n)
    ]


def judge(prompt):
    i = int(_user(prompt).split("QID-")[1].split()[0])
    return ["Off topic.\nScore: 1", "Fine.\nScore: 4", "Perfect.\nScore: 5", "I think it deserves 5", "Score: 10"][
        i % 5
    ]


def test_curate_selects_a_k_and_keeps_unparsed_raw(tmp_path):
    cfg = CurateConfig(k=5, records_per_shard=3, finish_score_line=False)
    curated = curate(candidates(10), "m0", tmp_path, cfg, engine=ScriptedEngine(judge))
    ratings = list(read_stage(tmp_path / "ratings"))
    assert len(ratings) == 10 and len(list((tmp_path / "ratings").glob("part-*.jsonl"))) == 4
    assert [r["id"] for r in curated] == ["c002", "c007"]
    unparsed = [r for r in ratings if r["score"] is None]
    assert len(unparsed) == 4 and unparsed[0]["judge_output"] in ("I think it deserves 5", "Score: 10")
    assert stage_counters(tmp_path / "ratings")["unparsed"] == 4
    assert [r["id"] for r in select(ratings, 4)] == ["c001", "c002", "c006", "c007"]
    assert all(r["iteration"] == 1 and r["judge_model"] == "m0" for r in ratings)


def test_judge_without_score_line_is_handed_score_prefix(tmp_path):
    def judge_then_number(prompt):
        if prompt[-1]["role"] == "assistant":  # the continuation: the judge writes the number
            assert prompt[-1]["content"].endswith("\nScore:")
            return " 4" if "rambles" in prompt[-1]["content"] else " 10"
        i = int(_user(prompt).split("QID-")[1].split()[0])
        return ["It rambles on.", "Says 10 later.", "Good.\nScore: 5", "score 3"][i]

    rate(candidates(4), "m0", tmp_path, CurateConfig(), engine=ScriptedEngine(judge_then_number))
    r = list(read_stage(tmp_path))
    assert [x["score"] for x in r] == [4, None, 5, None]
    assert [x["score_line_prompted"] for x in r] == [True, True, False, True]
    assert r[0]["judge_output"] == "It rambles on.\nScore: 4"
    assert r[1]["judge_output"] == "Says 10 later.\nScore: 10"  # still unparsed: the parser stays strict


def test_rating_resumes_from_last_complete_shard(tmp_path):
    class Crash(Exception):
        pass

    engine = ScriptedEngine(judge)
    calls = {"n": 0}

    def crashing(prompt):
        calls["n"] += 1
        if calls["n"] > 7:
            raise Crash
        return judge(prompt)

    with pytest.raises(Crash):
        rate(
            candidates(10),
            "m0",
            tmp_path / "r",
            CurateConfig(records_per_shard=3, finish_score_line=False),
            engine=ScriptedEngine(crashing),
        )
    assert len(list((tmp_path / "r").glob("part-*.jsonl"))) == 2
    info = rate(
        candidates(10), "m0", tmp_path / "r", CurateConfig(records_per_shard=3, finish_score_line=False), engine=engine
    )
    ids = [r["id"] for r in read_stage(tmp_path / "r")]
    assert ids == [f"c{i:03d}" for i in range(10)]
    assert engine.calls == 2  # only the two unfinished shards were rated again
    shard_seconds = [
        json.loads(p.read_text())["_seconds"] for p in sorted((tmp_path / "r" / "_counters").glob("*.json"))
    ]
    assert len(shard_seconds) == 4 and info["seconds"] == pytest.approx(sum(shard_seconds), abs=0.01)
    assert "_seconds" not in stage_counters(tmp_path / "r")


@pytest.mark.slow
@pytest.mark.parametrize("mode, n", [("generate", 24), ("features", 300), ("yes", 300)])
def test_kill_9_during_curation_then_rerun(tmp_path, tiny_model, mode, n):
    """A real `humpback curate` process killed with SIGKILL mid-stage; the rerun completes it, and the
    ratings of a likelihood mode are those of one uninterrupted run."""
    cands = tmp_path / "candidates"
    write_jsonl(cands / "part-00000.jsonl", candidates(n))
    (cands / "_SUCCESS").write_text("{}")
    out = tmp_path / "iter1"
    per_shard = 2 if mode == "generate" else 1  # the likelihood reads are fast: one per shard to land mid-stage
    cmd = [
        sys.executable,
        "-m",
        "humpback.cli",
        "curate",
        "--candidates",
        str(cands),
        "--model",
        tiny_model,
        "--out",
        str(out),
        "--records-per-shard",
        str(per_shard),
        "--batch-size",
        "2",
        "--max-new-tokens",
        "24",
        "--dtype",
        "float32",
        "--mode",
        mode,
        "--select",
        "top_fraction" if mode != "generate" else "score_at_least",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "ratings").glob("part-*.jsonl"))) < 3:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / "ratings").glob("part-*.jsonl")))
    assert 3 <= done < n // per_shard, "the kill should land mid-stage"
    assert not (out / "ratings" / "_SUCCESS").exists()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    ratings = list(read_stage(out / "ratings"))
    ids = [r["id"] for r in ratings]
    assert sorted(ids) == [f"c{i:03d}" for i in range(n)]
    assert len(ids) == len(set(ids)) == n
    if mode != "generate":
        from humpback.engines.transformers import TransformersEngine

        engine = TransformersEngine(tiny_model, dtype="float32", batch_size=2)
        rate(candidates(n)[:8], tiny_model, tmp_path / "reference", CurateConfig(mode=mode), engine=engine)
        for got, want in zip(sorted(ratings, key=lambda r: r["id"]), read_stage(tmp_path / "reference")):
            assert got["signal"] == pytest.approx(want["signal"], abs=1e-4)


def _digits(probs):
    """log-probabilities of the choices ' 1'..' 5' from probabilities (the rest of the mass elsewhere)."""
    import math

    return {f" {i + 1}": (math.log(p) if p > 0 else -math.inf) for i, p in enumerate(probs)}


def _user(prompt):
    """The user message of a rating prompt (a system message may come first)."""
    return next(m["content"] for m in prompt if m["role"] == "user")


def test_logprob_prompt_ends_where_the_score_goes():
    from humpback.rubric import LOGPROB_RUBRIC

    prompt = rating_prompt({"instruction": "Q", "output": "A"}, load_template(None, "logprob"), "logprob")
    assert prompt[-1] == {"role": "assistant", "content": "Score:"}
    assert "rating only" in _user(prompt) and "explain" not in _user(prompt)
    # The same scale in both modes, and the candidate last, so the rubric is a shared prefix.
    assert LOGPROB_RUBRIC.split("\n\n")[:2] == RUBRIC.split("\n\n")[:2]
    assert RUBRIC.endswith("Answer:\n{output}") and LOGPROB_RUBRIC.endswith("Answer:\n{output}")


def test_logprob_rating_keeps_the_most_likely_score_and_the_expected_score(tmp_path):
    table = {"a": [0.05, 0.05, 0.1, 0.2, 0.4], "b": [0.6, 0.2, 0.0, 0.0, 0.0], "c": [0, 0, 0, 0, 0]}
    engine = ScriptedEngine(
        lambda p: pytest.fail("logprob mode must not generate"),
        logprobs=lambda p: _digits(table[_user(p).split("Answer:\n")[1]]),
    )
    candidates = [{"id": k, "source": "t", "instruction": "Q", "output": k} for k in "abc"]
    cfg = CurateConfig(mode="logprob", k=5)
    curated = curate(candidates, "judge", tmp_path, cfg, engine=engine)
    ratings = {r["id"]: r for r in read_stage(tmp_path / "ratings")}
    assert ratings["a"]["score"] == 5 and ratings["b"]["score"] == 1 and ratings["c"]["score"] is None
    assert ratings["a"]["expected_score"] == pytest.approx((0.05 + 0.1 + 0.3 + 0.8 + 2.0) / 0.8, abs=1e-3)
    assert ratings["a"]["score_mass"] == pytest.approx(0.8) and sum(ratings["a"]["score_probs"]) == pytest.approx(
        1, abs=1e-3
    )
    assert ratings["b"]["rating_mode"] == "logprob"
    assert [c["id"] for c in curated] == ["a"]
    counts = stage_counters(tmp_path / "ratings")
    assert counts["score_5"] == 1 and counts["score_1"] == 1 and counts["unparsed"] == 1


def test_logprob_rating_on_a_real_model_matches_one_forward_pass(tmp_path, tiny_model):
    from humpback.engines import TransformersEngine

    engine = TransformersEngine(tiny_model, dtype="float32", batch_size=2)
    candidates = [
        {"id": str(i), "source": "t", "instruction": f"Question {i}?", "output": "Answer. " * i} for i in range(1, 6)
    ]
    rate(candidates, tiny_model, tmp_path, CurateConfig(mode="logprob", min_choice_mass=0), engine=engine)
    ratings = list(read_stage(tmp_path))
    for r, c in zip(ratings, candidates):
        alone = engine.choice_logprobs(
            [rating_prompt(c, load_template(None, "logprob"), "logprob", CurateConfig().system_prompt)], SCORE_CHOICES
        )[0]
        assert r["score"] == int(max(alone, key=alone.get))
        assert 1 <= r["expected_score"] <= 5
        assert r["score_mass"] == pytest.approx(sum(math.exp(v) for v in alone.values()), abs=1e-4)
    # a random model puts almost nothing on the five scores: at the default floor, no rating counts
    rate(candidates, tiny_model, tmp_path / "floor", CurateConfig(mode="logprob"), engine=engine)
    assert all(
        r["score"] is None and r["unparsed_reason"] == "low_choice_mass" for r in read_stage(tmp_path / "floor")
    )
    assert stage_counters(tmp_path / "floor")["low_choice_mass"] == 5


def test_compare_modes_reports_agreement(tmp_path):
    from humpback.curate import compare_modes

    def answer(prompt):  # generate mode: the judge writes a score from the output's first word
        digit = _user(prompt).split("Answer:\n")[1][0]
        return "Reasoning.\nScore: " + digit

    def logprobs(prompt):  # logprob mode: agrees on 1-3, one point off on 4, far off on 5
        digit = int(_user(prompt).split("Answer:\n")[1][0])
        said = {4: 5, 5: 1}.get(digit, digit)
        return _digits([0.9 if i + 1 == said else 0.01 for i in range(5)])

    candidates = [{"id": str(i), "source": "t", "instruction": "Q", "output": f"{i % 5 + 1} words"} for i in range(20)]
    engine = ScriptedEngine(answer, logprobs)
    report = compare_modes(candidates, "judge", CurateConfig(compare_sample=10), tmp_path / "compare.json", engine)
    assert report["sampled"] == report["both_rated"] == 10
    pairs = report["pairs"]
    exact = sum(p["generate"] == p["logprob"] for p in pairs) / 10
    close = sum(abs(p["generate"] - p["logprob"]) <= 1 for p in pairs) / 10
    assert report["exact_agreement"] == exact and report["within_one"] == close and exact < close < 1
    assert json.loads((tmp_path / "compare.json").read_text())["exact_agreement"] == exact
    again = compare_modes(candidates, "judge", CurateConfig(compare_sample=10), None, engine)
    assert [p["id"] for p in again["pairs"]] == [p["id"] for p in pairs]  # the sample is seeded
    assert report["probe"] == []  # no held-out pairs given: no probe


def test_compare_probes_every_mode_side_by_side(tmp_path, tiny_model):
    from humpback.curate import compare_modes
    from humpback.engines.transformers import TransformersEngine
    from humpback.scoring import MODES

    engine = TransformersEngine(tiny_model, dtype="float32", batch_size=4)
    candidates = [
        {"id": str(i), "source": "t", "instruction": f"Question {i}?", "output": "Answer. " * (i + 1)}
        for i in range(4)
    ]
    held_out = [
        {
            "id": f"h{i}",
            "instruction": f"Explain topic {i}.",
            "output": f"Topic {i} is explained in full here, with reasons and an example.",
        }
        for i in range(4)
    ]
    cfg = CurateConfig(compare_sample=2, max_new_tokens=4, min_choice_mass=0)
    report = compare_modes(candidates, tiny_model, cfg, tmp_path / "compare.json", engine, probe_pairs=held_out)
    assert [r["mode"] for r in report["probe"]] == list(MODES)
    for r in report["probe"]:
        assert r["positives"] == 4 and set(r["by_kind"]) and "verdict" in r
    assert report["probe"][3]["unscored"] == 0 and 0 <= report["probe"][3]["auc"] <= 1  # pmi scores every pair


def test_the_judge_reads_the_rubric_under_the_system_message_m0_was_trained_with():
    from humpback.config import RunConfig
    from humpback.tags import SEED_TAG

    prompt = rating_prompt({"instruction": "Q", "output": "A"}, RUBRIC, "generate", CurateConfig().system_prompt)
    assert prompt[0] == {"role": "system", "content": SEED_TAG} and prompt[1]["role"] == "user"
    assert [m["role"] for m in rating_prompt({"instruction": "Q", "output": "A"}, RUBRIC, "generate", "")] == ["user"]
    assert RunConfig().curate.system_prompt == SEED_TAG
    assert RunConfig(forward={"tag_placement": "append"}).curate.system_prompt == ""  # M_0 saw no system message
    assert (
        RunConfig(forward={"tag_placement": "none"}, curate={"system_prompt": "Mine."}).curate.system_prompt == "Mine."
    )


def test_each_selection_rule_on_fixed_ratings():
    ratings = [
        {"id": "a", "score": 5, "expected_score": 4.2},
        {"id": "b", "score": 4, "expected_score": 4.6},
        {"id": "c", "score": None, "expected_score": 4.9},
        {"id": "d", "score": 1, "expected_score": 1.3},
        {"id": "e", "score": None, "signal": 0.8},
        {"id": "f", "score": None, "signal": None},
    ]
    assert [r["id"] for r in select(ratings, 5)] == ["a"]
    assert [r["id"] for r in select(ratings, 4)] == ["a", "b"] and select(ratings, 4)[0]["selected_by"] == "score >= 4"
    assert [r["id"] for r in select(ratings, 5, "value_at_least", 4.5)] == ["b", "c"]
    assert [r["id"] for r in select(ratings, 5, "expected_at_least")] == ["b", "c"]  # the paper's 4.5 by default
    assert select(ratings, 5, "expected_at_least", 4.7)[0]["selected_by"] == "expected score >= 4.7"
    assert [r["id"] for r in select(ratings, 5, "expected_at_least", 4.0)] == ["a", "b", "c"]  # never a signal
    assert [r["id"] for r in select(ratings, 5, "top_fraction", fraction=0.4)] == ["b", "c"]  # 2 of 5 valued, in order
    picked = select(ratings, 5, "top_fraction", fraction=0.4)
    assert all(r["selected_by"] == "top 40% by value" and "expected_score" in r for r in picked)
    with pytest.raises(ValueError, match="select_threshold"):
        select(ratings, 5, "value_at_least")


def test_a_likelihood_mode_rates_and_selects_by_value(tmp_path, tiny_model):
    from humpback.engines.transformers import TransformersEngine

    engine = TransformersEngine(tiny_model, dtype="float32", batch_size=4)
    cands = [
        {"id": str(i), "source": "t", "instruction": f"Question {i}?", "output": "Answer. " * (i + 1)}
        for i in range(6)
    ]
    cfg = CurateConfig(mode="pmi", select="top_fraction", select_fraction=0.5, records_per_shard=4)
    curated = curate(cands, tiny_model, tmp_path, cfg, engine=engine)
    ratings = list(read_stage(tmp_path / "ratings"))
    assert len(ratings) == 6 and all(r["score"] is None and isinstance(r["signal"], float) for r in ratings)
    assert len(curated) == 3 and all(r["selected_by"] == "top 50% by value" for r in curated)
    best = sorted(ratings, key=lambda r: r["signal"], reverse=True)[:3]
    assert {r["id"] for r in curated} == {r["id"] for r in best}
    assert stage_counters(tmp_path / "ratings")["signal"] == 6


def test_selection_over_500k_ratings_is_linear():
    """The paper's corpus gave 502k candidates; each rule selects from that many in one pass (a
    quadratic top_fraction took 1.3 s at 16k rows, which is about 20 minutes at 500k)."""
    import random

    rng = random.Random(0)
    ratings = [{"id": f"c{i}", "score": rng.randint(1, 5), "signal": rng.random()} for i in range(500_000)]
    top = select(ratings, k=5, rule="top_fraction", fraction=0.25)
    kept = {t["id"] for t in top}
    assert len(top) == 125_000
    assert min(r["signal"] for r in top) >= max(r["signal"] for r in ratings if r["id"] not in kept)
    assert len(select(ratings, k=5)) == sum(r["score"] >= 5 for r in ratings)
    assert len(select(ratings, k=5, rule="value_at_least", threshold=0.9)) == sum(r["signal"] >= 0.9 for r in ratings)


def test_curate_standalone_probes_the_judge_for_calibrated_features(tmp_path, tiny_model):
    """`humpback curate --probe-seed` probes the judge first and selects as a run does; a probe made
    by `humpback probe-judge` and given with --probe selects the same set."""
    from typer.testing import CliRunner

    from humpback.cli import app
    from humpback.shards import read_jsonl

    runner = CliRunner()
    cands = tmp_path / "candidates"
    write_jsonl(cands / "part-00000.jsonl", candidates(12))
    (cands / "_SUCCESS").write_text("{}")
    held = tmp_path / "held.jsonl"
    write_jsonl(
        held,
        [
            {
                "instruction": f"Describe colour number {i}.",
                "output": f"Colour {i} is a shade of blue, like a clear sky.",
            }
            for i in range(6)
        ],
    )
    # at the assumed good share 0.2, precision 0.2 is reached by keeping everything at worst: never empty
    args = ["curate", "--candidates", str(cands), "--model", tiny_model, "--dtype", "float32", "--mode", "features"]
    args += ["--select", "calibrated", "--target-precision", "0.2", "--system-prompt", ""]
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "a"), "--probe-seed", str(held)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a" / "probe" / "report.json").is_file() and (
        tmp_path / "a" / "probe" / "detectors.json"
    ).is_file()
    chosen = list(read_jsonl(tmp_path / "a" / "curated" / "part-00000.jsonl"))
    assert chosen and all("combined" in c and c["selected_by"].startswith("calibrated: precision") for c in chosen)

    r = runner.invoke(
        app,
        ["probe-judge", "--model", tiny_model, "--seed", str(held), "--modes", "pmi,features"]
        + ["--out", str(tmp_path / "p"), "--dtype", "float32", "--system-prompt", ""],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p" / "features" / "detectors.json").is_file() and (
        tmp_path / "p" / "pmi" / "report.json"
    ).is_file()
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--probe", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    assert [c["id"] for c in read_jsonl(tmp_path / "b" / "curated" / "part-00000.jsonl")] == [c["id"] for c in chosen]
