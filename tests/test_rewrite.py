"""Answers rewritten from their web text, kept only when faithful (back-and-forth translation)."""

from __future__ import annotations

import pytest
from conftest import ScriptedEngine

from humpback.config import RewriteConfig
from humpback.rewrite import overlap, rewrite, rewrite_prompt
from humpback.shards import read_stage, stage_counters

ORIGINAL = (
    "Hi folks, welcome back to my kitchen blog! To brew green tea, heat the water to about 80 degrees, "
    "not boiling, because boiling water scalds the leaves and makes the tea bitter. Steep one teaspoon "
    "of leaves for two to three minutes, then strain. Don't forget to subscribe and share this post!"
)
FAITHFUL = (
    "Heat the water to about 80 degrees rather than boiling it: boiling water scalds the leaves and "
    "makes green tea bitter. Steep a teaspoon of leaves for two to three minutes, then strain."
)
INVENTED = (
    "Green tea originated in ancient Japan during the Heian period. Matcha ceremonies require a bamboo "
    "whisk, ceramic bowls and seasonal sweets, and monks prized caffeine for meditation."
)
PAIRS = [
    {"id": "a", "instruction": "How do I brew green tea?", "output": ORIGINAL},
    {"id": "b", "instruction": "How do I brew green tea well?", "output": ORIGINAL},
    {"id": "c", "instruction": "What should I know about green tea?", "output": ORIGINAL},
    {"id": "d", "instruction": "Explain brewing green tea.", "output": ORIGINAL},
]


def test_the_prompt_keeps_the_whole_instruction_before_any_text():
    long_text = "word " * 5000
    instruction = "Summarise this, and keep the numbers: 3, 14, 15."
    [system, user] = rewrite_prompt(instruction, long_text, RewriteConfig())
    assert system["role"] == "system" and user["content"].startswith(f"Instruction: {instruction}")
    with pytest.raises(ValueError, match="instruction"):
        rewrite_prompt(instruction, long_text, RewriteConfig(prompt="Rewrite: {original}"))


def test_the_gate_keeps_a_faithful_paraphrase_and_rejects_invented_text():
    assert overlap(FAITHFUL, ORIGINAL) >= 0.9
    assert overlap(INVENTED, ORIGINAL) < 0.4
    assert overlap("", ORIGINAL) is None and overlap("the and of", ORIGINAL) is None


def test_rows_keep_both_texts_and_the_gate_s_reason(tmp_path):
    written = iter([FAITHFUL, INVENTED, "", "Boil it."])
    engine = ScriptedEngine(lambda prompt: next(written))
    rewrite(PAIRS, "rewriter", tmp_path / "r", RewriteConfig(), engine=engine)
    rows = {r["id"]: r for r in read_stage(tmp_path / "r")}
    assert rows["a"]["rewritten"] and rows["a"]["output"] == FAITHFUL and rows["a"]["original_output"] == ORIGINAL
    assert not rows["b"]["rewritten"] and rows["b"]["output"] == ORIGINAL and rows["b"]["rewrite"] == INVENTED
    assert "says what the original does not" in rows["b"]["kept_original_because"]
    assert "wrote nothing" in rows["c"]["kept_original_because"] and rows["c"]["rewrite"] is None
    assert "under 10%" in rows["d"]["kept_original_because"]  # a one-liner drops the facts
    assert all(r["original_output"] == ORIGINAL and r["rewriter_model"] == "rewriter" for r in rows.values())
    counts = stage_counters(tmp_path / "r")
    assert (counts["rewritten"], counts["gate_rejected"], counts["not_rewritten"]) == (1, 2, 1)


def test_rewrite_resumes_after_a_kill(tmp_path):
    engine = ScriptedEngine(lambda prompt: FAITHFUL)
    cfg = RewriteConfig(records_per_shard=2)
    rewrite(PAIRS, "m", tmp_path / "r", cfg, engine=engine)
    first = list(read_stage(tmp_path / "r"))
    (tmp_path / "r" / "_SUCCESS").unlink()
    (tmp_path / "r" / "part-00001.jsonl").unlink()
    again = ScriptedEngine(lambda prompt: FAITHFUL)
    rewrite(PAIRS, "m", tmp_path / "r", cfg, engine=again)
    assert list(read_stage(tmp_path / "r")) == first and again.calls == 1


@pytest.mark.slow
def test_a_real_model_rewrites_on_every_tokenizer_family(tmp_path, family_model):
    """A tiny random model of each family as the rewriter: every pair gets a verdict and keeps both
    texts, the prompt goes through the family's template, the counts add up."""
    name, model = family_model
    cfg = RewriteConfig(max_new_tokens=12, dtype="float32", min_length_ratio=0.0)
    info = rewrite(PAIRS, model, tmp_path / "r", cfg)
    rows = list(read_stage(tmp_path / "r"))
    assert info["records"] == len(rows) == len(PAIRS), name
    assert all(r["original_output"] == ORIGINAL and (r["rewritten"] or r["kept_original_because"]) for r in rows)
    counts = stage_counters(tmp_path / "r")
    assert counts["rewritten"] + counts["gate_rejected"] + counts["not_rewritten"] == len(PAIRS)
