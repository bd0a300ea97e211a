"""Every model family read right: six real tokenizers (../shared/data/tokenizers), a tiny
random-weight model on each.

Per family: the choices read after a rating or verdict prompt are the tokens the tokenizer makes
of prompt + choice; the template's end of turn is in the stop set, ends every training
completion (so the loss is on it), stops decoding, and is saved in every trained model's
generation config; and the whole loop (backward training, augmentation, both rating modes,
forward training, generation, the eval judge) runs without error."""

from __future__ import annotations

import json

import pytest
from conftest import family_tokenizer

from humpback.engines.base import ChoicePlan, chat_text
from humpback.evaluate import VERDICT_CHOICES, judge_prompt
from humpback.models import DEFAULT_CHAT_TEMPLATE, check_chat_template, end_of_turn_ids, load_tokenizer
from humpback.rubric import LOGPROB_RUBRIC, SCORE_CHOICES, rating_prompt

# What closes an assistant turn in each family's template (ours for the four without one: eos).
END_OF_TURN = {
    "llama-spm": "</s>",
    "llama-bpe": "<|end_of_text|>",
    "qwen2": "<|im_end|>",
    "gpt-2": "<|endoftext|>",
    "phi-3": "<|end|>",
    "falcon": "<|endoftext|>",
}
WITHOUT_TEMPLATE = {"llama-spm", "llama-bpe", "gpt-2", "falcon"}
# Phi-3's template drops system messages: a run puts the tags in the user turn instead.
PLACEMENT = {"phi-3": "append"}


@pytest.fixture(scope="module", params=sorted(END_OF_TURN))
def family(request) -> tuple[str, object]:
    return request.param, load_tokenizer(family_tokenizer(request.param))


def _reads(tokenizer):
    candidate = {"instruction": "How do I boil an egg?", "output": "Put it in boiling water for 8 minutes."}
    yield rating_prompt(candidate, LOGPROB_RUBRIC, "logprob", "Answer in the style of an AI Assistant."), SCORE_CHOICES
    yield judge_prompt("How do I boil an egg?", "Boil it.", "Fry it.", "logprob"), list(VERDICT_CHOICES.values())


def test_a_base_tokenizer_gets_the_default_template_and_a_chat_one_keeps_its_own(family):
    name, tokenizer = family
    assert (tokenizer.chat_template == DEFAULT_CHAT_TEMPLATE) == (name in WITHOUT_TEMPLATE)


def test_the_choices_read_are_the_tokens_of_prompt_plus_choice(family):
    """The rendered prompt ends where the choice goes ("Score:", "Verdict:"), and the prompt's
    text + the choice's text tokenizes to the prompt's tokens followed by the tokens scored."""
    name, tokenizer = family
    for prompt, choices in _reads(tokenizer):
        text = chat_text(tokenizer, prompt)
        assert text.endswith(prompt[-1]["content"]), name
        plan = ChoicePlan.make(tokenizer, prompt, choices)
        for choice in choices:
            scored = plan.scored_tokens(choice)
            assert tokenizer(text + choice, add_special_tokens=False)["input_ids"] == plan.prompt_ids + scored
            assert tokenizer.decode(scored).strip() == choice.strip()


def test_end_of_turn_is_a_stop_token_and_ends_every_training_completion(family):
    """The template's end of turn is found from the template itself, and the completion TRL
    trains on (prompt + completion rendered, minus the prompt rendered for generation) ends
    with it: the model learns to stop there."""
    name, tokenizer = family
    eot = tokenizer.convert_tokens_to_ids(END_OF_TURN[name])
    assert end_of_turn_ids(tokenizer)[0] == eot
    system = (
        [{"role": "system", "content": "Answer in the style of an AI Assistant."}] if name not in PLACEMENT else []
    )
    prompt = system + [{"role": "user", "content": "Name a colour."}]
    completion = [{"role": "assistant", "content": "Blue."}]
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
    full_ids = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=False)
    assert full_ids[: len(prompt_ids)] == prompt_ids
    assert eot in full_ids[len(prompt_ids) :]
    assert check_chat_template(family_tokenizer(name), system_tags=name not in PLACEMENT)[0] == END_OF_TURN[name]


def test_decoding_stops_at_the_end_of_turn(family_model):
    """The transformers engine stops a row when it writes the template's end of turn (here forced
    at the third step), and keeps nothing after it; without it the row runs to its limit."""
    from humpback.engines import SamplingParams
    from humpback.engines.transformers import TransformersEngine

    name, model = family_model
    engine = TransformersEngine(model, dtype="float32")
    eot = engine.tokenizer.convert_tokens_to_ids(END_OF_TURN[name])
    assert eot in engine.stop_ids
    prompt = [[{"role": "user", "content": "Name a colour."}]]
    params = SamplingParams(temperature=0.0, max_new_tokens=8)
    free = engine.generate_ids(
        [engine.tokenizer(chat_text(engine.tokenizer, prompt[0]), add_special_tokens=False)["input_ids"]], params
    )[0]
    assert len(free) == 8 and engine.cut_off == {0}
    steps = {"n": 0}

    def force_end_of_turn(_module, _args, kwargs, output):
        if kwargs["input_ids"].shape[1] == 1:  # a decoding step (prefill reads the prompt's tokens)
            steps["n"] += 1
            if steps["n"] == 3:
                output.logits[..., eot] = output.logits.max() + 100.0
        return output

    hook = engine.model.register_forward_hook(force_end_of_turn, with_kwargs=True)
    try:
        ids = engine.generate_ids(
            [engine.tokenizer(chat_text(engine.tokenizer, prompt[0]), add_special_tokens=False)["input_ids"]], params
        )[0]
    finally:
        hook.remove()
    assert ids == free[:2] and engine.cut_off == set()


@pytest.mark.slow
def test_the_whole_loop_runs_on_every_family(tmp_path, family_model):
    """Backward training, augmentation, generate-mode rating, forward training (run), then
    logprob rating, generation and the eval judge on the run's models: no error, and every trained
    model's generation config stops at the end of turn."""
    from transformers import GenerationConfig

    from humpback import CurateConfig, GenerateConfig, RunConfig, generate, rate, run
    from humpback.config import JudgeConfig
    from humpback.engines import make_engine
    from humpback.evaluate import judge_pairs
    from humpback.shards import read_stage

    name, model = family_model
    cfg = RunConfig(seed="demo", corpus="demo", model=model, out=tmp_path / "run", max_seed_examples=8, iterations=1)
    cfg.forward.tag_placement = PLACEMENT.get(name, "system")
    cfg.augment.max_segments, cfg.augment.max_new_tokens, cfg.augment.records_per_shard = 6, 10, 3
    cfg.curate.max_new_tokens, cfg.curate.records_per_shard = 10, 3
    for train in (cfg.backward, cfg.forward):
        train.max_steps, train.micro_batch_size = 1, 4
    stats = run(cfg, quiet=True)
    models = cfg.out / "models"
    eot = load_tokenizer(model).convert_tokens_to_ids(END_OF_TURN[name])
    for trained in ("backward", "m0", "m1"):
        stops = GenerationConfig.from_pretrained(models / trained).eos_token_id
        assert eot in (stops if isinstance(stops, list) else [stops]), (name, trained, stops)
        assert load_tokenizer(str(models / trained)).chat_template  # saved with the template it trained under
    candidates = list(read_stage(cfg.out / "candidates"))
    assert candidates and all(c["instruction"] for c in candidates)
    assert sum(1 for _ in read_stage(cfg.out / "iter1" / "ratings")) == len(candidates)

    ratings = tmp_path / "logprob"
    rate(cfg.out / "candidates", str(models / "m0"), ratings, CurateConfig(mode="logprob", dtype="float32"))
    rated = list(read_stage(ratings))
    assert len(rated) == len(candidates) and all(0 <= r["score_mass"] <= 1 for r in rated)

    answers = generate(
        ["Name a colour.", "Say hello."],
        str(models / "m1"),
        GenerateConfig(max_new_tokens=6, dtype="float32", tag_placement=cfg.forward.tag_placement),
    )
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    judge = JudgeConfig(model=str(models / "m1"), dtype="float32", min_choice_mass=0)
    pairs = [{"instruction": "Name a colour.", "output": answers[0], "reference": "Blue."}]
    engine = make_engine(str(models / "m1"), judge)
    try:
        judgements = judge_pairs(pairs, engine, judge)
    finally:
        engine.close()
    assert len(judgements) == 2 and all(0 <= j["preference"] <= 1 for j in judgements)
    assert json.loads((cfg.out / "stats.json").read_text())["final_dataset_count"] == stats["final_dataset_count"]


def test_a_template_that_cannot_render_fails_before_any_work(tmp_path, family_model):
    """A model whose template cannot render a system/user/assistant conversation, or drops the
    system message where the tags go, stops the run in seconds with what to pass, before the
    run folder is made or a page segmented."""
    from humpback import ModelError, RunConfig, run

    name, model = family_model
    broken = tmp_path / "broken.jinja"
    broken.write_text(
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not "
        "supported') }}{% endif %}{{ m['content'] }}{% endfor %}"
    )
    with pytest.raises(ModelError, match="--chat-template FILE"):
        run(RunConfig(model=model, out=tmp_path / "run", chat_template=broken), quiet=True)
    assert not (tmp_path / "run").exists()
    if name == "phi-3":  # its own template drops system messages
        with pytest.raises(ModelError, match="tag-placement append"):
            run(RunConfig(model=model, out=tmp_path / "run"), quiet=True)
        assert not (tmp_path / "run").exists()


def test_the_likelihood_features_read_the_answer_and_its_end_of_turn(family_model):
    """The features rating (curate's default on the demo) reads the answer's own tokens and the
    template's end of turn after it, checked against a plain forward pass of the model."""
    import torch
    from transformers import AutoModelForCausalLM

    from humpback.engines.transformers import TransformersEngine
    from humpback.signals import answer_span, likelihood_features

    name, model = family_model
    engine = TransformersEngine(model, dtype="float32")
    candidate = {
        "instruction": "How do I boil an egg?",
        "output": "Put it in boiling water for 8 minutes, then cool it.",
    }
    try:
        (features,) = likelihood_features([candidate], engine)
    finally:
        engine.close()
    tokenizer = load_tokenizer(model)
    full, start, end = answer_span(
        tokenizer, [{"role": "user", "content": candidate["instruction"]}], candidate["output"]
    )
    assert tokenizer.decode(full[start:end]).strip() == candidate["output"], name
    assert full[end] == tokenizer.convert_tokens_to_ids(END_OF_TURN[name]), name

    reference = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    with torch.no_grad():
        logprobs = torch.log_softmax(reference(torch.tensor([full])).logits[0].float(), -1)
    token_logprobs = [logprobs[j - 1, full[j]].item() for j in range(len(full))]
    answer = token_logprobs[start:end]
    assert features["answer_logprob"] == pytest.approx(sum(answer) / len(answer), abs=1e-4), name
    assert features["end_logprob"] == pytest.approx(token_logprobs[end], abs=1e-4), name
    assert features["start_logprob"] == pytest.approx(sum(answer[:8]) / 8, abs=1e-4), name
    # pmi: the answer's start after the instruction against after an empty one, a long answer's
    # first PMI_TOKENS tokens only
    from humpback.signals import PMI_TOKENS

    long_candidate = {"instruction": candidate["instruction"], "output": " ".join([candidate["output"]] * 12)}
    engine = TransformersEngine(model, dtype="float32")
    try:
        pmis = [f["pmi"] for f in likelihood_features([candidate, long_candidate], engine)]
    finally:
        engine.close()
    for case, pmi in zip((candidate, long_candidate), pmis):
        reads = []
        for instruction in (case["instruction"], ""):
            ids, first, _ = answer_span(tokenizer, [{"role": "user", "content": instruction}], case["output"])
            with torch.no_grad():
                read = torch.log_softmax(reference(torch.tensor([ids])).logits[0].float(), -1)
            reads.append([read[j - 1, ids[j]].item() for j in range(first, len(ids))])
        shared = min(len(reads[0]), len(reads[1]), PMI_TOKENS)
        assert (shared == PMI_TOKENS) == (case is long_candidate), (
            name
        )  # the long answer is cut, the short one read whole
        expected = sum(reads[0][:shared]) / shared - sum(reads[1][:shared]) / shared
        assert pmi == pytest.approx(expected, abs=1e-4), name
    # the held-out answer loss: the answer and its end of turn, the tokens training puts the loss on
    from humpback.probe import answer_loss

    expected = -sum(token_logprobs[start : end + 1]) / (end + 1 - start)
    assert answer_loss([candidate], model, placement="none") == pytest.approx(expected, abs=1e-4), name
