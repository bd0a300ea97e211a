"""Evaluation, the paper's way (METHOD.md, "Evaluation"): answer a prompt set with a model, and
have a judge compare each answer with a reference answer to the same prompt; the win rate is
how often the model's answer is preferred.

- Answers are written in AlpacaEval's format (``instruction``, ``output``, ``generator``,
  ``dataset``), so ``alpaca_eval --model_outputs model_outputs.json`` runs on them unchanged.
- The judge is any engine (transformers, vllm, openai). Each prompt is judged in both orders
  (or one seeded random order) to cancel the judge's position bias; a tie counts half.
- ``logprob`` judging reads the judge's probability of " A" against " B" written after
  ``Verdict:`` (teacher-forced, whatever the tokenizer makes of them; no generation; the
  preference is that probability, as in AlpacaEval 2's weighted annotator); when the two got
  less than ``min_choice_mass`` of the judge's probability the pair is unjudged; ``generate``
  judging lets the judge reason and parses its ``Verdict:`` line.

The judge prompt and the verdict parser live here and nowhere else.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import statistics
from pathlib import Path

from .config import BackwardEvalConfig, EvalConfig, JudgeConfig
from .engines import Engine, SamplingParams, engine_for
from .files import write_text
from .generate import complete, read_prompts
from .models import resolve_model
from .outputs import writes_into
from .records import Reject, SeedPair
from .shards import reject, write_json, write_jsonl

log = logging.getLogger(__name__)

# -- the judge ------------------------------------------------------------------------------

JUDGE_SYSTEM = JudgeConfig().system_prompt  # the default; JudgeConfig.system_prompt sets another

JUDGE_QUESTION = """Instruction:
{instruction}

Answer A:
{answer_a}

Answer B:
{answer_b}

Which answer serves the instruction better? Judge whether it does what was asked, whether it is correct \
and complete, and whether it is clear. A longer answer is not better for being longer, and the order in \
which the answers are shown says nothing about their quality."""

ASK_REASONING = (
    "Explain your judgement in a few sentences, then end with one line: 'Verdict: A', 'Verdict: B' or 'Verdict: tie'."
)
ASK_VERDICT_ONLY = "Reply with the verdict only: A, B, or tie."
VERDICT_PREFIX = "Verdict:"  # logprob judging: the judge's answer starts here; " A" or " B" is read after it
VERDICT_CHOICES = {"A": " A", "B": " B"}

_VERDICT = re.compile(r"verdict\s*[:\-]?\s*\**\s*(A|B|tie)\b", re.IGNORECASE)


def judge_prompt(
    instruction: str, answer_a: str, answer_b: str, mode: str, system_prompt: str = JUDGE_SYSTEM
) -> list[dict]:
    ask = ASK_VERDICT_ONLY if mode == "logprob" else ASK_REASONING
    user = JUDGE_QUESTION.format(instruction=instruction, answer_a=answer_a, answer_b=answer_b) + "\n\n" + ask
    prompt = [{"role": "system", "content": system_prompt}] if system_prompt else []
    prompt.append({"role": "user", "content": user})
    if mode == "logprob":
        prompt.append({"role": "assistant", "content": VERDICT_PREFIX})
    return prompt


def parse_verdict(text: str | None) -> str | None:
    """'A', 'B' or 'tie' from the judge's last ``Verdict:`` line; None when there is none."""
    found = _VERDICT.findall(text or "")
    if not found:
        return None
    verdict = found[-1]
    return "tie" if verdict.lower() == "tie" else verdict.upper()


# -- prompt sets ----------------------------------------------------------------------------


def load_prompt_set(path: Path | None, limit: int | None = None, seed: int = 0) -> tuple[list[dict], list[Reject]]:
    """Prompts from AlpacaEval's JSON list or any JSONL/JSON/text of instructions; with ``limit``,
    a seeded sample of that many (kept in file order, so the same limit and seed give the same set)."""
    if path is None:
        raise ValueError("no prompt set: give --prompts FILE (eval.prompts)")
    prompts, rejects = read_prompts(Path(path))
    if limit is not None and limit < len(prompts):
        keep = sorted(random.Random(seed).sample(range(len(prompts)), limit))
        prompts = [prompts[i] for i in keep]
    return prompts, rejects


def alpaca_records(
    prompts: list[dict], outputs: list[str | None], generator: str, cut_off: set[int] | frozenset[int] = frozenset()
) -> list[dict]:
    """AlpacaEval's model_outputs records (refused prompts are left out; the caller counts them);
    an answer that reached max_new_tokens carries ``cut_off: true``."""
    return [
        {"instruction": p["instruction"], "output": o, "generator": generator, "dataset": p.get("dataset", "custom")}
        | ({"cut_off": True} if i in cut_off else {})
        for i, (p, o) in enumerate(zip(prompts, outputs))
        if o is not None
    ]


def answer(prompts: list[dict], model: str, cfg: EvalConfig, generator: str) -> tuple[list[dict], list[Reject]]:
    model = resolve_model(model)
    written = complete([p["instruction"] for p in prompts], model, cfg)
    rejects = [
        reject("eval", generator, c.refusal or "the engine refused the prompt", p)
        for p, c in zip(prompts, written)
        if c.text is None
    ]
    cut_off = {i for i, c in enumerate(written) if c.cut_off}
    return alpaca_records(prompts, [c.text for c in written], generator, cut_off), rejects


def write_model_outputs(out_dir: Path, outputs: list[dict]) -> Path:
    """model_outputs.json: a JSON list, as alpaca_eval reads it."""
    path = Path(out_dir) / "model_outputs.json"
    write_text(path, json.dumps(outputs, indent=2, ensure_ascii=False) + "\n")
    return path


def reference_outputs(path: Path) -> dict[str, dict]:
    """An AlpacaEval-format outputs file (JSON list or JSONL), by instruction."""
    rows, _ = read_prompts(Path(path))
    return {r["instruction"]: r for r in rows if isinstance(r.get("output"), str)}


# -- judging --------------------------------------------------------------------------------


def judge_pairs(pairs: list[dict], engine: Engine, cfg: JudgeConfig) -> list[dict]:
    """Judge each {instruction, output, reference} pair; returns one record per judgement with
    ``preference`` = how much the judge prefers ``output`` over ``reference`` (1 win, 0.5 tie,
    0 loss; in logprob mode the probability), None when the judge gave no verdict."""
    rng = random.Random(cfg.random_seed)
    jobs = []  # (pair index, model answer shown as "A"?)
    for i in range(len(pairs)):
        if cfg.order == "both":
            jobs += [(i, True), (i, False)]
        else:
            jobs.append((i, rng.random() < 0.5))
    prompts = []
    for i, model_first in jobs:
        p = pairs[i]
        a, b = (p["output"], p["reference"]) if model_first else (p["reference"], p["output"])
        prompts.append(judge_prompt(p["instruction"], a, b, cfg.mode, cfg.system_prompt))
    if cfg.mode == "logprob":
        texts: list[str | None] = [None] * len(prompts)
        probs = engine.choice_logprobs(prompts, list(VERDICT_CHOICES.values()))
    else:
        params = SamplingParams.from_config(cfg)
        texts, probs = engine.generate(prompts, params), [None] * len(prompts)
    judgements = []
    for (i, model_first), text, logprobs in zip(jobs, texts, probs):
        record = {
            "instruction": pairs[i]["instruction"],
            "output": pairs[i]["output"],
            "reference": pairs[i]["reference"],
            "model_shown_as": "A" if model_first else "B",
            "mode": cfg.mode,
        }
        if cfg.mode == "logprob":
            logprobs = logprobs or {}  # None: the engine refused the prompt
            p_a, p_b = (math.exp(logprobs.get(VERDICT_CHOICES[c], -math.inf)) for c in ("A", "B"))
            mass = p_a + p_b
            record.update(p_a=round(p_a, 6), p_b=round(p_b, 6), choice_mass=round(mass, 6))
            low = mass == 0 or mass < cfg.min_choice_mass  # the judge wanted to write something else
            if low and logprobs:
                record["unjudged_reason"] = "low_choice_mass"
            shown = None if low else p_a / mass  # preference for the answer shown as A
            record["preference"] = None if shown is None else round(shown if model_first else 1 - shown, 6)
        else:
            verdict = parse_verdict(text)
            record.update(judge_output=text, verdict=verdict)
            if verdict is None:
                record["preference"] = None
            else:
                won = {"A": 1.0, "B": 0.0, "tie": 0.5}[verdict]
                record["preference"] = won if model_first else 1.0 - won
        judgements.append(record)
    return judgements


def length_controlled_win_rate(preferences: list[float], length_diffs: list[float]) -> float | None:
    """AlpacaEval 2's length control, without its per-instruction term: fit
    preference ~ sigmoid(theta + phi * tanh(length difference / its std)) by maximum likelihood and
    report sigmoid(theta), the win rate at equal lengths. None with too few prompts to fit."""
    if len(preferences) < 10:
        return None
    import numpy as np
    from scipy.optimize import minimize

    y = np.clip(np.asarray(preferences, dtype=float), 1e-6, 1 - 1e-6)
    d = np.asarray(length_diffs, dtype=float)
    x = np.tanh(d / (d.std() or 1.0))

    def loss(w):
        p = np.clip(1 / (1 + np.exp(-(w[0] + w[1] * x))), 1e-9, 1 - 1e-9)
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))

    theta = minimize(loss, np.zeros(2), method="L-BFGS-B").x[0]
    return round(100 / (1 + math.exp(-theta)), 2)


def win_rate(judgements: list[dict], name: str, reference_name: str) -> dict:
    """Win rate of ``name`` over ``reference_name`` (percent) with its standard error over prompts,
    the length-controlled variant and both sides' mean lengths."""
    per_prompt: dict[str, list[float]] = {}
    lengths: dict[str, tuple[int, int]] = {}
    unjudged = 0
    for j in judgements:
        if j["preference"] is None:
            unjudged += 1
            continue
        per_prompt.setdefault(j["instruction"], []).append(j["preference"])
        lengths[j["instruction"]] = (len(j["output"]), len(j["reference"]))
    scores = [statistics.fmean(v) for v in per_prompt.values()]
    n = len(scores)
    result = {
        "model": name,
        "reference": reference_name,
        "n_prompts": n,
        "n_judgements": len(judgements),
        "unjudged": unjudged,
        "win_rate": None,
        "standard_error": None,
        "length_controlled_win_rate": None,
        "n_wins": sum(s > 0.5 for s in scores),
        "n_losses": sum(s < 0.5 for s in scores),
        "n_draws": sum(s == 0.5 for s in scores),
    }
    if n:
        result["win_rate"] = round(100 * statistics.fmean(scores), 2)
        result["standard_error"] = round(100 * statistics.stdev(scores) / math.sqrt(n), 2) if n > 1 else None
        own = [lengths[i][0] for i in per_prompt]
        ref = [lengths[i][1] for i in per_prompt]
        result["avg_length"] = round(statistics.fmean(own), 1)
        result["reference_avg_length"] = round(statistics.fmean(ref), 1)
        result["length_controlled_win_rate"] = length_controlled_win_rate(scores, [a - b for a, b in zip(own, ref)])
    return result


def judge(
    model_outputs: list[dict],
    references: dict[str, dict],
    cfg: JudgeConfig,
    out_dir: Path,
    name: str,
    reference_name: str,
    engine: Engine | None = None,
) -> dict:
    """Judge model_outputs against references (matched by instruction); writes judgements.jsonl
    (every judgement, with the judge's raw text) and leaderboard.json; returns the win rate."""
    pairs = [
        {"instruction": m["instruction"], "output": m["output"], "reference": references[m["instruction"]]["output"]}
        for m in model_outputs
        if m["instruction"] in references
    ]
    missing = len(model_outputs) - len(pairs)
    if missing:
        log.warning("%d answers have no reference answer to the same instruction and are not judged", missing)
    with engine_for(resolve_model(cfg.model), cfg, engine) as engine:
        judgements = judge_pairs(pairs, engine, cfg)
    for j in judgements:
        j["judge_model"] = str(cfg.model)
    out_dir = Path(out_dir)
    write_jsonl(out_dir / "judgements.jsonl", judgements)
    result = win_rate(judgements, name, reference_name) | {
        "judge_model": str(cfg.model),
        "judge_mode": cfg.mode,
        "order": cfg.order,
        "no_reference": missing,
    }
    write_json(out_dir / "leaderboard.json", result)
    return result


def _references(cfg: EvalConfig, prompts: list[dict], reference: Path | None) -> tuple[dict[str, dict], str]:
    """The answers to judge against, by instruction, and their generator's name: ``reference`` (an
    AlpacaEval-format outputs file), else the prompt file's own ``output`` answers."""
    if reference is not None:
        references = reference_outputs(reference)
        name = next((r.get("generator") for r in references.values() if r.get("generator")), Path(reference).stem)
    else:
        references = {p["instruction"]: p for p in prompts if isinstance(p.get("output"), str)}
        name = next((p.get("generator") for p in prompts if p.get("generator")), "reference")
    if not references:
        raise ValueError(f"nothing to judge against: {cfg.prompts} has no 'output' answers; pass --reference")
    return references, str(name)


@writes_into("eval")
def judge_outputs(
    cfg: EvalConfig,
    outputs: Path,
    out_dir: Path,
    reference: Path | None = None,
    name: str | None = None,
    published_win_rate: float | None = None,
) -> dict:
    """Judge answers that already exist (an AlpacaEval ``model_outputs.json``: a published model's,
    or one `humpback eval` wrote) against the references, generating nothing: a judge is checked
    on systems whose GPT-4 win rate is published, given as ``published_win_rate`` to be reported
    beside its own. The prompt set (cfg.prompts, with cfg.limit) chooses which answers are judged and
    gives the references unless ``reference`` does. An entry without an instruction and an answer
    is a reject naming the file and item."""
    rows, rejects = read_prompts(Path(outputs))
    answered = []
    for row in rows:
        if isinstance(row.get("output"), str) and row["output"].strip():
            answered.append(row)
        else:
            rejects.append(reject("eval", f"{outputs}: item {row['instruction'][:60]!r}", "no 'output' to judge", row))
    if not answered:
        raise ValueError(f"{outputs} holds no answers to judge (AlpacaEval model_outputs: instruction and output)")
    prompts, prompt_rejects = load_prompt_set(cfg.prompts, cfg.limit, cfg.sample_seed) if cfg.prompts else ([], [])
    if prompts:  # the prompt set (and its limit) decides which answers are judged
        asked = {p["instruction"] for p in prompts}
        answered = [a for a in answered if a["instruction"] in asked]
    references, reference_name = _references(cfg, prompts, reference)
    name = name or next((a.get("generator") for a in answered if a.get("generator")), Path(outputs).stem)
    write_jsonl(Path(out_dir) / "rejects.jsonl", [*rejects, *prompt_rejects])
    result = judge(answered, references, cfg.judge, out_dir, str(name), reference_name)
    result |= {"model_outputs": str(outputs), "answers": len(answered), "rejects": len(rejects) + len(prompt_rejects)}
    if published_win_rate is not None:
        result["published_win_rate"] = published_win_rate
        write_json(Path(out_dir) / "leaderboard.json", result)
    return result


@writes_into("eval")
def evaluate(
    cfg: EvalConfig, model: str, out_dir: Path, reference: Path | None = None, name: str | None = None
) -> dict:
    """Answer cfg.prompts with ``model`` (model_outputs.json), then judge against ``reference``
    (an AlpacaEval-format outputs file; by default the prompt file's own ``output`` answers,
    which AlpacaEval's set carries: text-davinci-003's)."""
    name = name or Path(str(model)).name
    prompts, rejects = load_prompt_set(cfg.prompts, cfg.limit, cfg.sample_seed)
    outputs, refused = answer(prompts, model, cfg, name)
    rejects += refused
    outputs_path = write_model_outputs(out_dir, outputs)
    write_jsonl(out_dir / "rejects.jsonl", rejects)
    summary = {
        "model": name,
        "prompts": len(prompts),
        "answers": len(outputs),
        "rejects": len(rejects),
        "cut_off": sum(o.get("cut_off", False) for o in outputs),
        "model_outputs": str(outputs_path),
    }
    if not cfg.judge.enabled:
        return summary
    references, reference_name = _references(cfg, prompts, reference)
    return summary | judge(outputs, references, cfg.judge, out_dir, name, reference_name)


@writes_into("eval")
def reference_loss(cfg: EvalConfig, model: str, out_dir: Path, name: str | None = None) -> dict:
    """``--metric nll``: the model's mean per-token loss on the prompt set's reference answers."""
    from .probe import answer_loss

    prompts, rejects = load_prompt_set(cfg.prompts, cfg.limit, cfg.sample_seed)
    pairs = [p for p in prompts if isinstance(p.get("output"), str) and p["output"].strip()]
    if not pairs:
        raise ValueError(f"{cfg.prompts} has no reference 'output' answers to measure the loss on")
    loss = answer_loss(pairs, resolve_model(model), cfg.tag, cfg.tag_placement, cfg.chat_template)
    result = {
        "model": name or Path(str(model)).name,
        "metric": "nll",
        "answer_loss": loss,
        "pairs": len(pairs),
        "rejects": len(rejects),
    }
    write_json(out_dir / "nll.json", result)
    return result


@writes_into("eval")
def compare(
    cfg: EvalConfig,
    model: str,
    baseline: str,
    out_dir: Path,
    name: str | None = None,
    baseline_name: str | None = None,
) -> dict:
    """Judge two models against each other on the same prompts: ``model``'s win rate over ``baseline``."""
    auto_model, auto_baseline = distinct_names(str(model), str(baseline))
    name, baseline_name = name or auto_model, baseline_name or auto_baseline
    if name == baseline_name:
        raise ValueError(f"both sides of the comparison are named {name!r}: give them different names")
    prompts, rejects = load_prompt_set(cfg.prompts, cfg.limit, cfg.sample_seed)
    sides = {}
    for side, side_model in ((name, model), (baseline_name, baseline)):
        outputs, refused = answer(prompts, side_model, cfg, side)
        rejects += refused
        write_model_outputs(out_dir / side, outputs)
        sides[side] = outputs
    write_jsonl(out_dir / "rejects.jsonl", rejects)
    references = {o["instruction"]: o for o in sides[baseline_name]}
    return {"prompts": len(prompts), "rejects": len(rejects)} | judge(
        sides[name], references, cfg.judge, out_dir, name, baseline_name
    )


def as_the_run_trained(cfg: EvalConfig, run: Path) -> EvalConfig:
    """The eval settings for a run's models: its tag placement (models trained with tags appended
    to the instruction, or with none, are asked that way), unless the caller set one."""
    from .config import load_yaml

    saved = Path(run) / "config.yaml"
    if "tag_placement" in cfg.model_fields_set or not saved.is_file():
        return cfg
    placement = (load_yaml(saved).get("forward") or {}).get("tag_placement")
    return cfg.model_copy(update={"tag_placement": placement}) if placement else cfg


def distinct_names(a: str, b: str) -> tuple[str, str]:
    """Short names for two model paths that tell them apart: the folder names, or as many of the
    last path parts as it takes (runA/models/m2 and runB/models/m2 -> runA-models-m2, runB-models-m2)."""
    pa, pb = Path(a).parts, Path(b).parts
    for n in range(1, max(len(pa), len(pb)) + 1):
        na, nb = "-".join(pa[-n:]), "-".join(pb[-n:])
        if na != nb:
            return na, nb
    return Path(a).name, f"{Path(b).name}-baseline"  # one model against itself (a check of the judge's bias)


@writes_into("alpaca-eval-config")
def alpaca_eval_config(out_dir: Path, judge_model: str, base_url: str | None = None) -> Path:
    """Write an annotators config for the ``alpaca_eval`` package that asks ``judge_model`` (served
    at ``base_url``, an OpenAI-compatible endpoint) with AlpacaEval 2's weighted logprob prompt.
    Use: ``alpaca_eval --model_outputs model_outputs.json --annotators_config DIR``. The API key
    is read by the OpenAI client from OPENAI_API_KEY; it is not written."""
    name = "humpback_judge"
    config = {
        name: {
            "prompt_template": "alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt",
            "fn_completions": "openai_completions",
            "completions_kwargs": {
                "model_name": judge_model,
                "max_tokens": 1,
                "temperature": 1,
                "logprobs": True,
                "top_logprobs": 5,
            },
            "fn_completion_parser": "logprob_parser",
            "completion_parser_kwargs": {
                "numerator_token": "m",
                "denominator_tokens": ["m", "M"],
                "is_binarize": False,
            },
            "completion_key": "completions_all",
            "batch_size": 1,
        }
    }
    import yaml

    write_text(out_dir / "configs.yaml", yaml.safe_dump(config, sort_keys=False))
    if base_url:  # alpaca_eval's client config: model-specific client arguments
        from .redaction import redact_url

        if redact_url(base_url) != base_url:
            log.warning(
                "the judge's base_url carries credentials; they are not written to %s (give the key through "
                "OPENAI_API_KEY)",
                out_dir,
            )
        clients = {"default": [{"base_url": redact_url(base_url)}]}  # export OPENAI_CLIENT_CONFIG_PATH=<this file>
        write_text(out_dir / "openai_configs.yaml", yaml.safe_dump(clients, sort_keys=False))
    return out_dir


# -- backward-model fidelity ----------------------------------------------------------------


def split_seed(seed: list[SeedPair], holdout: float, split_seed: int) -> tuple[list[SeedPair], list[SeedPair]]:
    """(train, held out): a seeded split, held-out share ``holdout`` (at least one example)."""
    order = list(range(len(seed)))
    random.Random(split_seed).shuffle(order)
    n_held = min(len(seed) - 1, max(1, round(len(seed) * holdout)))
    held = set(order[:n_held])
    return [r for i, r in enumerate(seed) if i not in held], [r for i, r in enumerate(seed) if i in held]


def _embedding_similarity(
    model_name: str | None, predicted: list[str], truth: list[str]
) -> tuple[list[float] | None, str]:
    """Cosine similarity of sentence embeddings, or (None, why not)."""
    if not model_name:
        return None, "no embedding model configured"
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None, "sentence-transformers is not installed (pip install 'humpback[embeddings]')"
    try:
        encoder = SentenceTransformer(model_name)
    except Exception as e:  # offline, unknown model: ROUGE-L still answers the question
        return None, f"could not load {model_name}: {type(e).__name__}"
    a = encoder.encode(predicted, normalize_embeddings=True, convert_to_numpy=True)
    b = encoder.encode(truth, normalize_embeddings=True, convert_to_numpy=True)
    return [round(float(x), 4) for x in (a * b).sum(-1)], f"cosine similarity of {model_name} embeddings"


@writes_into("eval-backward")
def backward_fidelity(
    seed: list[SeedPair],
    base_model: str,
    out_dir: Path,
    cfg: BackwardEvalConfig,
    backward_model: str | None = None,
    held_out: list[SeedPair] | None = None,
) -> dict:
    """Hold out part of the seed, train the backward model on the rest (unless ``backward_model``
    is given), write an instruction for every held-out output with the trained and with the
    untrained base model (greedy), and score both against the true instructions: ROUGE-L F1, and
    embedding similarity where a sentence-embedding model is available. ``held_out``: score on
    these pairs instead, and train on the whole seed (pairs from elsewhere: another source)."""
    from rouge_score import rouge_scorer

    from .backward import backward_prompt, train_backward

    train_cfg = cfg.train
    train, held = (seed, held_out) if held_out is not None else split_seed(seed, cfg.holdout, cfg.split_seed)
    if not held:
        raise ValueError("no held-out pairs to score the backward model on")
    if backward_model is None:
        backward_model = str(out_dir / "backward")
        train_backward(train, base_model, Path(backward_model), train_cfg)
    else:
        log.warning(
            "scoring the given backward model %s: if it was trained on this whole seed, the held-out "
            "examples were in its training set and the score is optimistic",
            backward_model,
        )
    prompts = [backward_prompt(r["output"], train_cfg.system_prompt) for r in held]
    truth = [r["instruction"] for r in held]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    result: dict = {
        "held_out": len(held),
        "trained_on": len(train),
        "models": {},
        "split_seed": cfg.split_seed if held_out is None else None,
    }
    predictions = [dict(r) for r in held]
    for name, model in (("trained", backward_model), ("base", base_model)):
        with engine_for(model, cfg) as engine:  # greedy: the backward model's most likely instruction
            generated = engine.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=cfg.max_new_tokens))
        written = [g or "" for g in generated]
        rouge = [round(scorer.score(t, g)["rougeL"].fmeasure, 4) for t, g in zip(truth, written)]
        similarity, note = _embedding_similarity(cfg.embedding_model, written, truth)
        result["models"][name] = {
            "model": str(model),
            "rouge_l": round(statistics.fmean(rouge), 4),
            "embedding_similarity": None if similarity is None else round(statistics.fmean(similarity), 4),
        }
        result["embedding_note"] = note
        no_similarity: list[float | None] = [None] * len(rouge)
        for row, g, r, s in zip(predictions, written, rouge, similarity or no_similarity):
            row[f"{name}_instruction"], row[f"{name}_rouge_l"], row[f"{name}_embedding_similarity"] = g, r, s
    result["rouge_l_gain"] = round(result["models"]["trained"]["rouge_l"] - result["models"]["base"]["rouge_l"], 4)
    write_jsonl(out_dir / "predictions.jsonl", predictions)
    write_json(out_dir / "fidelity.json", result)
    return result
