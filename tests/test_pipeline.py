import json
import shutil

import pytest
from conftest import write_jsonl

from humpback import RunConfig, run
from humpback.models import ModelError
from humpback.seed import SeedError
from humpback.shards import read_jsonl, read_stage


def tiny_config(tmp_path, tiny_model, **kw) -> RunConfig:
    kw = {"probe_share": 0.0} | kw  # the probe is tested where it is asked for
    cfg = RunConfig(seed="demo", corpus="demo", model=tiny_model, out=tmp_path / "run", max_seed_examples=10, **kw)
    cfg.augment.max_segments = 9
    cfg.augment.max_new_tokens = 12
    cfg.augment.records_per_shard = 4
    cfg.curate.max_new_tokens = 12
    cfg.curate.records_per_shard = 4
    for train in (cfg.backward, cfg.forward):
        train.max_steps = 1
        train.micro_batch_size = 4
    return cfg


@pytest.mark.slow
def test_run_end_to_end_layout_and_resume(tmp_path, tiny_model):
    cfg = tiny_config(tmp_path, tiny_model, probe_share=0.2, probe_min_pairs=2, price_per_million_tokens=2.0)
    stats = run(cfg, quiet=True)
    out = cfg.out
    for rel in (
        "config.yaml",
        "stats.json",
        "rejects.jsonl",
        "segments/_SUCCESS",
        "candidates/_SUCCESS",
        "iter1/ratings/_SUCCESS",
        "iter1/curated/part-00000.jsonl",
        "iter2/ratings/_SUCCESS",
        "final/train.jsonl",
        "models/backward/model.safetensors",
        "models/m0/config.json",
        "models/m1/config.json",
        "models/m2/model.safetensors",
    ):
        assert (out / rel).exists(), rel
    assert stats["candidates"] == 9
    assert set(stats["iterations"]) == {"1", "2"}
    assert stats["iterations"]["1"]["ratings"] == 9
    assert stats["segment_funnel"]["segments_kept"] > 20
    assert stats["table2"]["seed"]["count"] == 8  # 2 of the 10 held out for the judge probe
    held_out = list(read_jsonl(out / "probe" / "pairs.jsonl"))
    trained_on = {(r["instruction"], r["output"]) for r in read_jsonl(out / "seed" / "part-00000.jsonl")}
    assert len(held_out) == 2 and not trained_on & {(r["instruction"], r["output"]) for r in held_out}
    for i in ("1", "2"):
        probe = stats["probe"][i]
        assert (
            probe["positives"] == 2 and probe["mode"] == "generate" and probe["judge_model"].endswith(f"m{int(i) - 1}")
        )
    assert set(stats["answer_loss"]) == {"m0", "m1", "m2"} and all(v > 0 for v in stats["answer_loss"].values())
    assert stats["rejects"] >= 2  # the demo's header-less and empty pages
    assert all(v is not None for v in stats["seconds"].values())
    # accounting: what each stage asked of its model, and each training's tokens, priced
    accounting = stats["accounting"]
    n = cfg.augment.num_instructions
    assert accounting["augment"]["prompts"] >= 9 * n and 0 < accounting["augment"]["generated_tokens"] <= 9 * n * 12
    assert accounting["augment"]["engine"] == "transformers" and accounting["augment"]["prompt_tokens"] > 0
    for i in ("1", "2"):
        row = accounting[f"curate iter{i}"]
        assert (
            row["prompts"] >= 9
            and row["tokens"] == row["prompt_tokens"] + row["generated_tokens"] + row["read_tokens"]
        )
        assert row["cost"] == pytest.approx(round(row["tokens"] / 1e6 * 2.0, 4))
    assert all(accounting[f"train m{i}"]["steps"] == 1 and accounting[f"train m{i}"]["tokens"] > 0 for i in range(3))

    # ids are stable from segment to rating
    segment_ids = {s["id"] for s in read_stage(out / "segments")}
    candidate_ids = [c["id"] for c in read_stage(out / "candidates")]
    rating_ids = [r["id"] for r in read_stage(out / "iter2" / "ratings")]
    assert set(candidate_ids) <= segment_ids and candidate_ids == rating_ids
    assert len(set(rating_ids)) == len(rating_ids)

    final = list(read_jsonl(out / "final" / "train.jsonl"))
    assert len(final) == 8 + stats["iterations"]["2"]["A_5"]
    assert all([m["role"] for m in r["messages"]] == ["system", "user", "assistant"] for r in final)

    # datasets reads the stage shards
    import datasets

    ds = datasets.load_dataset("json", data_files=str(out / "candidates" / "part-*.jsonl"), split="train")
    assert ds.num_rows == 9 and set(ds.column_names) >= {"id", "instruction", "output", "backward_model"}

    # rerunning resumes: nothing is trained or rated again
    stamps = {
        p: p.stat().st_mtime
        for p in out.rglob("*")
        if p.is_file() and ("_SUCCESS" in p.name or p.match("probe/iter*/report.json"))
    }
    again = run(cfg, quiet=True)
    assert {p: p.stat().st_mtime for p in stamps} == stamps  # the judge probes too are kept, not redone
    assert again["candidates"] == stats["candidates"]

    # a run killed during iteration 2's rating resumes with the same records
    ratings = out / "iter2" / "ratings"
    (ratings / "_SUCCESS").unlink()
    sorted(ratings.glob("part-*.jsonl"))[-1].unlink()
    shutil.rmtree(out / "models" / "m2")
    resumed = run(cfg, quiet=True)
    assert [r["id"] for r in read_stage(ratings)] == rating_ids
    assert resumed["iterations"]["2"]["ratings"] == 9
    # the resumed stage counts the shards its first attempt rated too
    assert resumed["accounting"]["curate iter2"]["prompts"] == stats["accounting"]["curate iter2"]["prompts"]


def test_missing_model_stops_at_once(tmp_path):
    cfg = RunConfig(model=str(tmp_path / "no-such-model"), out=tmp_path / "run")
    with pytest.raises(ModelError, match="does not exist"):
        run(cfg, quiet=True)
    assert not (tmp_path / "run").exists()


def test_unusable_seed_stops_at_once(tmp_path, tiny_model):
    seed = write_jsonl(tmp_path / "seed.jsonl", [{"nothing": "useful"}])
    with pytest.raises(SeedError, match="no usable"):
        run(RunConfig(seed=str(seed), model=tiny_model, out=tmp_path / "run"), quiet=True)


@pytest.mark.slow
def test_run_trains_every_model_under_accelerate(tmp_path, tiny_model):
    """launcher: accelerate in the backward and forward configs: every training of the loop runs as
    2 gloo processes, and the loop goes on from their models as from single-process ones."""
    cfg = tiny_config(tmp_path, tiny_model, iterations=1)
    for train in (cfg.backward, cfg.forward):
        train.launcher, train.num_processes, train.micro_batch_size = "accelerate", 2, 2
    stats = run(cfg, quiet=True)
    for name in ("backward", "m0", "m1"):
        info = json.loads((cfg.out / "models" / name / "_SUCCESS").read_text())
        assert info["processes"] == 2 and info["distributed_type"] == "MULTI_CPU", name
    assert stats["iterations"]["1"]["ratings"] == 9


def test_an_instruction_cut_off_by_the_token_limit_is_flagged_and_counted(tmp_path):
    from conftest import ScriptedEngine

    from humpback import AugmentConfig, augment
    from humpback.shards import read_stage, stage_counters

    class Cutting(ScriptedEngine):
        def generate(self, prompts, params):
            self.cut_off = {1}  # the engine says: the second prompt reached max_new_tokens
            return super().generate(prompts, params)

    segments = [{"id": f"s{i}", "source": f"x#{i}", "text": f"text {i}"} for i in range(3)]
    augment(segments, "m", tmp_path / "cand", AugmentConfig(num_instructions=1), engine=Cutting(lambda p: "How do I"))
    candidates = list(read_stage(tmp_path / "cand"))
    assert [c.get("instruction_cut_off", False) for c in candidates] == [False, True, False]
    assert stage_counters(tmp_path / "cand")["instruction_cut_off"] == 1


def test_an_instruction_that_quotes_its_answer_is_removed_before_rating(tmp_path):
    from conftest import ScriptedEngine

    from humpback import AugmentConfig, augment
    from humpback.filters import quoted_answer
    from humpback.shards import read_stage, stage_counters, stage_rejects

    text = "Preheat the oven to 180C. Cream the butter and sugar until pale and fluffy, then beat in the eggs."
    assert (
        quoted_answer("Rewrite: cream the butter and sugar until pale and fluffy.", text, 8)
        == "cream the butter and sugar until pale and"
    )
    assert quoted_answer("How do I cream the butter and sugar until pale?", text, 8) is None  # 7 words: below n
    segments = [{"id": f"s{i}", "source": f"x#{i}", "text": text} for i in range(3)]
    instructions = {
        0: "How do I bake a simple cake?",
        1: "Summarise: Cream the butter and sugar until pale and fluffy, then beat in the eggs.",
        2: "Explain the first step of this recipe.",
    }
    written = iter(instructions.values())
    augment(
        segments,
        "m",
        tmp_path / "cand",
        AugmentConfig(num_instructions=1),
        engine=ScriptedEngine(lambda p: next(written)),
    )
    assert [c["id"] for c in read_stage(tmp_path / "cand")] == ["s0", "s2"]
    assert stage_counters(tmp_path / "cand")["quotes_answer"] == 1
    [rejected] = list(stage_rejects(tmp_path / "cand"))
    assert rejected["source"] == "x#1" and "quotes its answer" in rejected["reason"]
    augment(
        segments,
        "m",
        tmp_path / "kept",
        AugmentConfig(max_quoted_words=0, num_instructions=1),
        engine=ScriptedEngine(lambda p: instructions[1]),
    )
    assert len(list(read_stage(tmp_path / "kept"))) == 3  # 0 keeps them all


@pytest.mark.slow
def test_a_run_with_rewrite_trains_on_the_answers_the_gate_kept(tmp_path, tiny_model):
    cfg = tiny_config(tmp_path, tiny_model, iterations=1)
    # a random judge writes no scores: select by a likelihood, so there is something to rewrite
    cfg.curate.mode, cfg.curate.select, cfg.curate.select_fraction = "pmi", "top_fraction", 0.5
    cfg.rewrite.enabled = True
    cfg.rewrite.max_new_tokens = 16
    cfg.rewrite.min_length_ratio = 0.0
    stats = run(cfg, quiet=True)
    rows = list(read_stage(cfg.out / "iter1" / "rewritten"))
    counts = stats["iterations"]["1"]["rewrite"]
    assert len(rows) == len(list(read_jsonl(cfg.out / "iter1" / "curated" / "part-00000.jsonl"))) > 0
    assert counts["rewritten"] + counts["gate_rejected"] + counts["not_rewritten"] == len(rows)
    assert counts["answers"] == "rewritten" and "rewrite iter1" in stats["accounting"]
    assert all(r["original_output"] and ("rewrite" in r) for r in rows)
    trained = {r["messages"][-1]["content"] for r in read_jsonl(cfg.out / "iter1" / "train.jsonl")}
    assert {r["output"] for r in rows} <= trained  # the answer each row settled on is what was trained


@pytest.mark.slow
def test_self_rewarding_iterations_follow_the_sft_ones(tmp_path, tiny_model):
    """dpo_iterations: M_1 (SFT) samples and judges its own answers, M_2 = M_1 + DPO; the final model
    is M_2, each model's held-out loss is measured, and the summary's stats count the pairs."""
    cfg = tiny_config(tmp_path, tiny_model, iterations=1, dpo_iterations=1, probe_share=0.2, probe_min_pairs=2)
    cfg.preferences.num_answers, cfg.preferences.max_new_tokens, cfg.preferences.max_prompts = 3, 8, 4
    cfg.dpo.max_steps, cfg.dpo.batch_size = 1, 2
    stats = run(cfg, quiet=True)
    out = cfg.out
    assert stats["final_model"].endswith("m2") and (out / "models" / "m2" / "model.safetensors").exists()
    assert json.loads((out / "models" / "m2" / "_SUCCESS").read_text())["kind"] == "dpo"
    [(t, d)] = stats["dpo"].items()
    assert t == "1" and d["policy"] == "m1" and d["prompts"] == 4 and d["pairs"] + d["tied"] + d["too_few_valued"] == 4
    assert d["steps"] == 1 and d["judge_probe_auc"] is not None and (out / "probe" / "dpo1" / "report.json").exists()
    assert set(stats["answer_loss"]) == {"m0", "m1", "m2"}
    assert stats["accounting"]["preferences dpo1"]["prompts"] >= 12 and stats["accounting"]["train m2"]["steps"] == 1
    pairs = list(read_stage(out / "dpo1" / "preferences"))
    assert all(p["policy_model"].endswith("m1") and p["chosen_value"] > p["rejected_value"] for p in pairs)
