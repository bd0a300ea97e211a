"""Best-of-n backtranslation: n instructions per segment, the one that fits it best kept."""

from __future__ import annotations

import pytest
from conftest import ScriptedEngine

from humpback import AugmentConfig, augment
from humpback.augment import fit_values
from humpback.shards import read_stage, stage_counters, stage_rejects

TEXT = "Preheat the oven to 180C. Cream the butter and sugar until pale, then beat in the eggs one by one."


class MarkedFit:
    """A fit engine that reads a fixed per-token log-probability from a marker word in the
    instruction of each read (GOOD -1, OKAY -1.5, BAD -3, no instruction -2): pmi = value + 2."""

    name = "marked-fit"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.reads = 0

    def token_logprobs(self, reads):
        self.reads += len(reads)
        out = []
        for ids, start in reads:
            head = self.tokenizer.decode(ids[:start])
            value = -1.0 if "GOOD" in head else -1.5 if "OKAY" in head else -3.0 if "BAD" in head else -2.0
            out.append([value] * (len(ids) - start))
        return out

    def close(self):
        pass


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from humpback.models import load_tokenizer

    return load_tokenizer(tiny_model)


def samples(*per_segment):
    """A scripted backward model: the prompts come n per segment, in order; each gets the next text."""
    flat = iter([s for seg in per_segment for s in seg])
    return ScriptedEngine(lambda prompt: next(flat))


def test_best_of_n_keeps_the_best_fitting_instruction_and_records_the_rest(tmp_path, tokenizer):
    segments = [{"id": f"s{i}", "source": f"x#{i}", "text": TEXT} for i in range(3)]
    engine = samples(
        ["BAD poem request?", "GOOD how do I bake it?", "OKAY what is this?"],
        ["OKAY explain.", "OKAY explain.", "BAD write code."],  # a duplicate collapses
        ["", "Rewrite: cream the butter and sugar until pale, then beat in the eggs.", "BAD limerick?"],
    )
    fit = MarkedFit(tokenizer)
    augment(segments, "m", tmp_path / "c", AugmentConfig(num_instructions=3), engine=engine, fit_engine=fit)
    first, second, third = list(read_stage(tmp_path / "c"))
    assert first["instruction"] == "GOOD how do I bake it?" and first["fit"] == pytest.approx(1.0)
    assert first["sample"] == 1
    assert [(a["instruction"], a["fit"], a["sample"]) for a in first["alternatives"]] == [
        ("BAD poem request?", -1.0, 0),
        ("OKAY what is this?", 0.5, 2),
    ]
    assert second["instruction"] == "OKAY explain." and [a["instruction"] for a in second["alternatives"]] == [
        "BAD write code."
    ]
    # the empty and the quoting samples are dropped; the one usable sample is the candidate
    assert third["instruction"] == "BAD limerick?" and third["alternatives"] == []
    counts = stage_counters(tmp_path / "c")
    assert counts["candidates"] == 3 and counts["instructions_dropped"] == 2
    # reads: per segment one without an instruction plus one per distinct usable instruction
    assert fit.reads == (1 + 3) + (1 + 2) + (1 + 1)


def test_a_segment_whose_every_sample_fails_is_one_reject(tmp_path, tokenizer):
    segments = [{"id": "s0", "source": "x#0", "text": TEXT}]
    engine = samples(["", ""])
    augment(
        segments,
        "m",
        tmp_path / "c",
        AugmentConfig(num_instructions=2),
        engine=engine,
        fit_engine=MarkedFit(tokenizer),
    )
    assert list(read_stage(tmp_path / "c")) == []
    [rejected] = list(stage_rejects(tmp_path / "c"))
    assert "empty instruction" in rejected["reason"] and stage_counters(tmp_path / "c")["empty_instruction"] == 1


def test_best_of_n_needs_a_fit_model(tmp_path):
    with pytest.raises(ValueError, match="fit_model"):
        augment(
            [{"id": "a", "source": "s", "text": TEXT}],
            "m",
            tmp_path / "c",
            AugmentConfig(num_instructions=2),
            engine=ScriptedEngine(str),
        )
    assert not (tmp_path / "c").exists()


def test_fit_is_the_pmi_of_the_segment_start_read_by_a_real_model(lively_model):
    """fit_values against a plain forward pass: mean log-probability of the segment's first tokens
    after the instruction, minus after an empty instruction."""
    import torch

    from humpback.engines.transformers import TransformersEngine
    from humpback.models import end_of_turn_ids
    from humpback.signals import PMI_TOKENS, answer_span

    engine = TransformersEngine(lively_model, dtype="float32")
    [[a, b]] = fit_values([(TEXT, ["How do I bake a cake?", "Write a poem about the sea."])], engine)

    def mean_logprob(instruction):
        full, start, _ = answer_span(
            engine.tokenizer, [{"role": "user", "content": instruction}], TEXT, set(end_of_turn_ids(engine.tokenizer))
        )
        ids = torch.tensor([full[: start + PMI_TOKENS]])
        with torch.no_grad():
            logits = engine.model(input_ids=ids).logits.float().log_softmax(-1)
        picked = logits[0, start - 1 : -1].gather(-1, ids[0, start:, None])[:, 0]
        return picked.mean().item()

    base = mean_logprob("")
    assert a == pytest.approx(mean_logprob("How do I bake a cake?") - base, abs=1e-4)
    assert b == pytest.approx(mean_logprob("Write a poem about the sea.") - base, abs=1e-4)
    assert a != b


def test_the_backward_engine_decodes_a_batch_of_segments_with_all_their_samples(tiny_model, tokenizer):
    """batch_size counts segments: with n samples each, the worker's own engine batches n x as many rows."""
    from humpback.augment import AugmentWorker

    for n, rows in ((1, 3), (4, 12)):
        cfg = AugmentConfig(num_instructions=n, batch_size=3, dtype="float32")
        worker = AugmentWorker(tiny_model, cfg, fit_engine=MarkedFit(tokenizer), system_prompt="", backward_model="m")
        try:
            assert worker.engine.batch_size == rows
            assert worker.cfg.batch_size == 3  # the stage's settings (and its fingerprint) unchanged
        finally:
            worker.close()


def test_the_stage_counts_its_tokens_and_the_counts_add_up(tmp_path, tiny_model, tokenizer):
    """Accounting: the prompt tokens the engine ran are the prompts rebuilt from the outputs, the
    generated tokens those of the instructions written, the read tokens the fit engine's reads."""
    from humpback.augment import backward_prompt
    from humpback.engines import encode_chat
    from humpback.shards import stage_usage

    class CountingFit(MarkedFit):
        read_tokens = 0

        def token_logprobs(self, reads):
            self.read_tokens += sum(len(ids) for ids, _ in reads)
            return super().token_logprobs(reads)

    texts = [TEXT, TEXT.replace("eggs", "yolks"), TEXT.upper()]
    segments = [{"id": f"s{i}", "source": f"x#{i}", "text": t} for i, t in enumerate(texts)]
    fit = CountingFit(tokenizer)
    cfg = AugmentConfig(num_instructions=2, max_new_tokens=12, dtype="float32", records_per_shard=2)
    augment(segments, tiny_model, tmp_path / "c", cfg, system_prompt="Write the instruction.", fit_engine=fit)
    usage = stage_usage(tmp_path / "c")
    prompt_tokens = sum(len(encode_chat(tokenizer, backward_prompt(t, "Write the instruction."))) for t in texts)
    assert usage["prompt_tokens"] == 2 * prompt_tokens  # every segment's prompt, once per sample
    assert usage["prompts"] == 2 * len(texts) + fit.reads and usage["read_tokens"] == fit.read_tokens > 0
    assert usage["engine"] == "transformers" and usage["device"] == "cpu" and usage["seconds"] > 0
    # a random-weight model writes to max_new_tokens: every sample, as the outputs record, is cut off
    candidates = list(read_stage(tmp_path / "c"))
    samples_written = len(candidates) + sum(len(c["alternatives"]) for c in candidates)
    samples_written += stage_counters(tmp_path / "c")["instructions_dropped"]
    assert samples_written == 2 * len(texts)
    assert stage_counters(tmp_path / "c")["instruction_cut_off"] == len(candidates)
    assert usage["generated_tokens"] == 12 * samples_written
