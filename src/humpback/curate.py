"""Self-curation: the model rates every candidate on a 5-point rubric; A_k keeps scores >= k.

The rubric has the paper's five levels and criteria (its Table 1), in our own words. The judge
reasons briefly, then ends with ``Score: N``. ``parse_score`` is strict on purpose: only a
final ``Score: N`` line with N in 1..5 counts, so a "Score: 10" is never read as 1 and a
rambling answer is never guessed at. Unparsed ratings keep the judge's raw text and are counted.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Iterable

from .config import CurateConfig
from .engine import Engine, SamplingParams, make_engine
from .shards import read_stage, run_sharded, stage_info, write_jsonl

RUBRIC = """\
Below is an instruction from a user and a candidate answer. Judge whether the answer is a good \
example of how an AI assistant should reply to the instruction, using this 5-point scale:

1: The answer is incomplete, vague, off-topic, controversial, or not what the user asked for. \
For example, content seems to be missing, a numbered list starts in the middle, or the answer \
opens by repeating the question. Also score 1 if it is written from another person's point of \
view with their personal experiences (such as a blog post), reads like a forum reply, or \
contains promotions, navigation text or other irrelevant material.
2: The answer covers most of what the user asked, but does not answer the question directly. \
For example, it describes a general approach instead of giving the exact solution.
3: The answer is helpful and complete: it covers every basic request and stands on its own. It \
is not written as an AI assistant would write it, though; it reads like an excerpt from a blog, \
a web page or search results, for example with personal experience or opinion, or mentions of \
a comments section or sharing on social media.
4: The answer is written from an AI assistant's point of view and is clearly focused on the \
instruction. It is complete, clear and thorough, with nothing missing or irrelevant, well \
organised, self-contained and helpful in tone. It could still be a little more concise or focused.
5: The answer is a perfect reply from an AI assistant: written for this very instruction, with \
no irrelevant sentence, expert and high-quality content, clear and logical writing that is easy \
to follow, engaging and insightful.

First explain your judgement in a few sentences. Then write the rating on the last line, in \
exactly this form: "Score: <rating>", where <rating> is 1, 2, 3, 4 or 5.

Instruction:
{instruction}

Answer:
{output}"""

_SCORE_LINE = re.compile(r"^\W*score\W*:", re.IGNORECASE)  # anything that looks like a score line
_FINAL_SCORE = re.compile(r"^\s*\**\s*Score\s*\**\s*:\s*\**\s*([1-5])\s*\**\s*[.,;!]?\s*$", re.IGNORECASE)
SCORE_PREFIX = "Score:"


def parse_score(text: str) -> int | None:
    """The rating in a judge's answer, or None.

    Counts only when the last non-empty line is ``Score: N`` with N in 1..5 (letter case,
    markdown bold and one closing punctuation mark aside) and no other line claims a score.
    "Score: 10", "score 4", "Score: 4.5", two score lines, or a score buried mid-text are all
    None: unparsed, never coerced.
    """
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    if not lines:
        return None
    match = _FINAL_SCORE.match(lines[-1])
    if not match:
        return None
    if sum(1 for line in lines if _SCORE_LINE.match(line)) != 1:
        return None
    return int(match.group(1))


def load_template(path: Path | None) -> str:
    if path is None:
        return RUBRIC
    template = Path(path).read_text(encoding="utf-8")
    for field in ("{instruction}", "{output}"):
        if field not in template:
            raise ValueError(f"rubric template {path} must contain {field}")
    return template


def rating_prompt(candidate: dict, template: str = RUBRIC) -> list[dict]:
    # str.replace, not format(): web text is full of braces.
    text = template.replace("{instruction}", candidate["instruction"]).replace("{output}", candidate["output"])
    return [{"role": "user", "content": text}]


def has_score_line(text: str) -> bool:
    return any(_SCORE_LINE.match(line) for line in (text or "").splitlines())


def finish_with_score_line(prompts: list[list[dict]], answers: list[str], engine: Engine) -> list[str]:
    """Judges that reasoned but never wrote a Score line get their own answer back, followed by
    'Score:', and write the number themselves (greedy, a few tokens). Small models rarely keep
    the format on their own; the result still goes through the strict parser."""
    todo = [i for i, a in enumerate(answers) if not has_score_line(a)]
    if not todo:
        return answers
    continued = [prompts[i] + [{"role": "assistant", "content": f"{answers[i].rstrip()}\n{SCORE_PREFIX}"}] for i in todo]
    endings = engine.generate(continued, SamplingParams(temperature=0.0, max_new_tokens=3))
    answers = list(answers)
    for i, ending in zip(todo, endings):
        answers[i] = f"{answers[i].rstrip()}\n{SCORE_PREFIX}{ending.splitlines()[0] if ending.strip() else ''}"
    return answers


def rate_shard(candidates: list[dict], engine: Engine, cfg: CurateConfig, template: str,
               judge_model: str, iteration: int, shard_index: int):
    params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                            seed=cfg.random_seed + shard_index)
    prompts = [rating_prompt(c, template) for c in candidates]
    judged = engine.generate(prompts, params)
    finished = finish_with_score_line(prompts, judged, engine) if cfg.finish_score_line else judged
    ratings, counts = [], Counter()
    for candidate, first, judge_output in zip(candidates, judged, finished):
        score = parse_score(judge_output)
        counts[f"score_{score}" if score else "unparsed"] += 1
        prompted = judge_output != first
        counts["score_line_prompted"] += prompted
        ratings.append({**candidate, "score": score, "judge_output": judge_output, "score_line_prompted": prompted,
                        "judge_model": judge_model, "iteration": iteration})
    return ratings, [], counts


def rate(candidates: Iterable[dict] | Path, judge_model: str, out_dir: Path, cfg: CurateConfig | None = None,
         iteration: int = 1, engine: Engine | None = None) -> dict:
    """Rate every candidate into ``out_dir/part-*.jsonl`` (resumable, shard by shard)."""
    cfg = cfg or CurateConfig()
    out_dir = Path(out_dir)
    if (out_dir / "_SUCCESS").exists():
        return stage_info(out_dir)
    template = load_template(cfg.template)
    if isinstance(candidates, (str, Path)):
        candidates = read_stage(Path(candidates))
    state: dict = {}

    def process(batch: list[dict], index: int):
        if "engine" not in state:
            state["engine"] = engine or make_engine(cfg.engine, judge_model, dtype=cfg.dtype, batch_size=cfg.batch_size)
        return rate_shard(batch, state["engine"], cfg, template, str(judge_model), iteration, index)

    return run_sharded(candidates, out_dir, cfg.records_per_shard, process, desc=f"curate (iteration {iteration})")


def select(ratings: Iterable[dict], k: int) -> list[dict]:
    """A_k: the candidates rated at least k. Unparsed ratings are never selected."""
    return [r for r in ratings if r.get("score") is not None and r["score"] >= k]


def curate(candidates: Iterable[dict] | Path, judge_model: str, out_dir: Path, cfg: CurateConfig | None = None,
           iteration: int = 1, engine: Engine | None = None) -> list[dict]:
    """Rate into ``out_dir/ratings`` and write A_k to ``out_dir/curated/part-00000.jsonl``."""
    cfg = cfg or CurateConfig()
    out_dir = Path(out_dir)
    rate(candidates, judge_model, out_dir / "ratings", cfg, iteration, engine)
    curated = select(read_stage(out_dir / "ratings"), cfg.k)
    write_jsonl(out_dir / "curated" / "part-00000.jsonl", curated)
    return curated
