"""Decontamination: a planted overlap with a prompt set is found and removed, a near miss below n is kept."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from humpback.cli import app
from humpback.decontaminate import BenchmarkIndex, decontaminate

BENCHMARK = [
    {
        "benchmark": "eval.json",
        "id": "b1",
        "instruction": "Write a short poem about the sea at night, "
        "with the moon shining on the waves and a lighthouse far away.",
    },
    {"benchmark": "eval.json", "id": "b2", "instruction": "What is the capital of France?"},
]
QUOTED = "sea at night with the moon shining on the waves and a lighthouse"  # 13 words of b1


def test_a_planted_overlap_is_found_and_a_near_miss_is_kept():
    index = BenchmarkIndex(BENCHMARK, n=13)
    pairs = [
        {"id": "planted-in-output", "instruction": "Describe a scene.", "output": f"Picture {QUOTED}. Calm."},
        {"id": "planted-in-instruction", "instruction": f"Please write about {QUOTED.upper()}!", "output": "Ok."},
        {"id": "same-instruction", "instruction": "what is the capital of france", "output": "Paris."},
        {
            "id": "near-miss",
            "instruction": "Describe a scene.",
            "output": "Picture " + " ".join(QUOTED.split()[:12]) + " far away.",
        },  # 12 words: below n
        {"id": "unrelated", "instruction": "How do I boil an egg?", "output": "Put it in boiling water."},
    ]
    kept, rejects, counts = decontaminate(pairs, index)
    assert [p["id"] for p in kept] == ["near-miss", "unrelated"]
    assert (
        counts["removed"] == 3
        and counts["contaminated_exact_instruction"] == 1
        and counts["contaminated_13_gram"] == 2
    )
    assert "item 'b1'" in rejects[0]["reason"] and QUOTED in rejects[0]["reason"]
    assert "item 'b2'" in rejects[2]["reason"] and "exact_instruction" in rejects[2]["reason"]
    kept, _, _ = decontaminate(pairs, BenchmarkIndex(BENCHMARK, n=12))
    assert [p["id"] for p in kept] == ["unrelated"]  # at n = 12 the near miss matches


def test_the_command_cleans_a_chat_file_and_says_what_it_removed(tmp_path):
    rows = [
        {
            "id": "a",
            "messages": [
                {"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "Paris."},
            ],
        },
        {"id": "b", "instruction": "Tell me about lighthouses.", "output": "They guide ships at night."},
    ]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    bench = tmp_path / "eval.json"
    bench.write_text(json.dumps([{"instruction": b["instruction"], "dataset": "x"} for b in BENCHMARK]))
    result = CliRunner().invoke(
        app, ["decontaminate", str(data), "--against", str(bench), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    clean = [json.loads(line) for line in (tmp_path / "o" / "clean.jsonl").read_text().splitlines()]
    assert [r["id"] for r in clean] == ["b"]
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["removed"] == 1 and summary["unreadable"] == 1 and summary["kept"] == 1
    rejects = (tmp_path / "o" / "rejects.jsonl").read_text()
    assert "train.jsonl:3" in rejects and "capital of france" in rejects.lower()
    missing = CliRunner().invoke(
        app, ["decontaminate", str(tmp_path / "nope.jsonl"), "--against", str(bench), "--out", str(tmp_path / "o2")]
    )
    assert missing.exit_code != 0 and "error:" in missing.output and "Traceback" not in missing.output


def test_eval_on_a_run_says_how_much_of_its_training_set_overlaps_the_prompts(tmp_path):
    from humpback.decontaminate import check_run

    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    rows = [
        {
            "id": "a",
            "origin": "seed",
            "messages": [
                {"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "Paris."},
            ],
        },
        {
            "id": "b",
            "origin": "web",
            "messages": [
                {"role": "user", "content": "Tell me about boats."},
                {"role": "assistant", "content": "Boats float."},
            ],
        },
    ]
    (run / "final" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is the capital of France?\nName three rivers.\n")
    found = check_run(run, prompts)
    assert (
        found["training_rows"] == 2
        and found["overlapping"] == 1
        and "capital of france" in found["examples"][0].lower()
    )
    assert "item 'prompt 1'" in found["examples"][0]
