"""Rating by the rubric: the prompt, the judge's answer read as a 1-5 score.

The rubric has the paper's five levels and criteria (its Table 1), in our own words. Two ways to
read it (``CurateConfig.mode``):

- ``generate`` (the paper's): the judge reasons briefly, then ends with ``Score: N``.
  ``parse_score`` is strict on purpose: only a final ``Score: N`` line with N in 1..5 counts, so a
  "Score: 10" is never read as 1 and a rambling answer is never guessed at. Unparsed ratings keep
  the judge's raw text and are counted.
- ``logprob``: the judge is asked for the rating only and its answer is started for it with
  ``Score:``; the probability of each of the texts " 1" .. " 5" written next is read teacher-forced
  (the same whichever way a tokenizer splits them, see engines.base.ChoicePlan). The rating is the
  most likely score; the expected score, the five probabilities and the share of the judge's
  probability they had (``score_mass``) are kept too. Below ``min_choice_mass`` the judge wanted
  to write something else, and the rating is unparsed (``low_choice_mass``), never selected.

The likelihood modes (yes, pmi, features) are in signals.py; curate.py runs either over a stage.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from .config import CurateConfig
from .engines import Engine, SamplingParams, check_refusals

RUBRIC_SCALE = """\
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
to follow, engaging and insightful."""

ASK_REASONING = """\
First explain your judgement in a few sentences. Then write the rating on the last line, in \
exactly this form: "Score: <rating>", where <rating> is 1, 2, 3, 4 or 5."""

ASK_SCORE_ONLY = """\
Reply with the rating only, in exactly this form: "Score: <rating>", where <rating> is 1, 2, 3, 4 or 5."""

CANDIDATE = """\
Instruction:
{instruction}

Answer:
{output}"""

# The candidate comes last, so every rating prompt shares the whole rubric as a prefix: engines
# encode it once (transformers engine) or cache it (vLLM).
RUBRIC = f"{RUBRIC_SCALE}\n\n{ASK_REASONING}\n\n{CANDIDATE}"
"""The judge's prompt in generate mode (the paper's)."""
LOGPROB_RUBRIC = f"{RUBRIC_SCALE}\n\n{ASK_SCORE_ONLY}\n\n{CANDIDATE}"
"""The judge's prompt in logprob mode; its answer is started with SCORE_PREFIX."""
SCORES = ["1", "2", "3", "4", "5"]
SCORE_CHOICES = [" " + s for s in SCORES]  # what is read after "Score:" (templates may trim a trailing space)


_SCORE_LINE = re.compile(r"^\W*score\W*:", re.IGNORECASE)  # anything that looks like a score line
_FINAL_SCORE = re.compile(r"^\s*\**\s*Score\s*\**\s*:\s*\**\s*([1-5])\s*\**\s*[.,;!]?\s*$", re.IGNORECASE)
SCORE_PREFIX = "Score:"


def parse_score(text: str | None) -> int | None:
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


def load_template(path: Path | None, mode: str = "generate") -> str:
    """The rubric of ``mode`` (generate or logprob): the file at ``path``, else humpback's."""
    if path is None:
        return LOGPROB_RUBRIC if mode == "logprob" else RUBRIC
    template = Path(path).read_text(encoding="utf-8")
    for field in ("{instruction}", "{output}"):
        if field not in template:
            raise ValueError(f"rubric template {path} must contain {field}")
    return template


def rating_prompt(
    candidate: Mapping, template: str = RUBRIC, mode: str = "generate", system_prompt: str = ""
) -> list[dict]:
    # str.replace, not format(): web text is full of braces.
    text = template.replace("{instruction}", candidate["instruction"]).replace("{output}", candidate["output"])
    prompt = [{"role": "system", "content": system_prompt}] if system_prompt else []
    prompt.append({"role": "user", "content": text})
    if mode == "logprob":  # the judge's answer starts for it; the score is what it writes next
        prompt.append({"role": "assistant", "content": SCORE_PREFIX})
    return prompt


def has_score_line(text: str) -> bool:
    return any(_SCORE_LINE.match(line) for line in (text or "").splitlines())


def finish_with_score_line(prompts: list[list[dict]], answers: list[str | None], engine: Engine) -> list[str | None]:
    """Judges that reasoned but never wrote a Score line get their own answer back, followed by
    'Score:', and write the number themselves (greedy, a few tokens). Small models rarely keep
    the format on their own; the result still goes through the strict parser."""
    todo = [i for i, a in enumerate(answers) if a is not None and not has_score_line(a)]
    if not todo:
        return answers
    continued = [
        prompts[i] + [{"role": "assistant", "content": f"{(answers[i] or '').rstrip()}\n{SCORE_PREFIX}"}] for i in todo
    ]
    endings = engine.generate(continued, SamplingParams(temperature=0.0, max_new_tokens=3))
    answers = list(answers)
    for i, ending in zip(todo, endings):
        ending = ending or ""
        answers[i] = f"{(answers[i] or '').rstrip()}\n{SCORE_PREFIX}{ending.splitlines()[0] if ending.strip() else ''}"
    return answers


def score_distribution(logprobs: dict[str, float], min_mass: float = 0.0) -> dict:
    """Rating, expected score and probabilities from the log-probabilities of " 1" .. " 5".

    The probabilities are renormalised over the five scores; ``score_mass`` is how much of the
    judge's probability they had before that. Below ``min_mass`` the judge wanted to say something
    else and its rating means little: the score is None with ``unparsed_reason: low_choice_mass``."""
    probs = [math.exp(logprobs.get(c, -math.inf)) for c in SCORE_CHOICES]
    mass = sum(probs)
    if mass == 0:
        return {
            "score": None,
            "expected_score": None,
            "score_probs": None,
            "score_mass": 0.0,
            "unparsed_reason": "low_choice_mass",
        }
    probs = [p / mass for p in probs]
    best = max(range(5), key=lambda i: probs[i])
    rated = {
        "score": best + 1,
        "expected_score": round(sum((i + 1) * p for i, p in enumerate(probs)), 4),
        "score_probs": [round(p, 4) for p in probs],
        "score_mass": round(mass, 4),
    }
    if mass < min_mass:
        rated.update(score=None, unparsed_reason="low_choice_mass")
    return rated


def rate_generate(
    candidates: Sequence[Mapping], engine: Engine, cfg: CurateConfig, template: str, seed_offset: int = 0
):
    prompted: set[int] = set()

    def score_line_please(index: int, text: str) -> str | None:
        """In the same pass (engines that support it): a judge that stopped without a Score line
        is handed 'Score:' to finish, as finish_with_score_line does in a second pass."""
        if has_score_line(text):
            return None
        prompted.add(index)
        return f"\n{SCORE_PREFIX}"

    params = SamplingParams.from_config(
        cfg, seed_offset=seed_offset, follow_up=score_line_please if cfg.finish_score_line else None
    )
    prompts = [rating_prompt(c, template, "generate", cfg.system_prompt) for c in candidates]
    written = engine.complete(prompts, params)
    check_refusals(engine, written, cfg, "rating")
    reasons = {i: c.refusal for i, c in enumerate(written) if c.refusal}
    judged = [
        _end_at_score_line(c.text) if i in prompted and c.text is not None else c.text for i, c in enumerate(written)
    ]
    finished = finish_with_score_line(prompts, judged, engine) if cfg.finish_score_line else judged
    fields = []
    for i, (first, judge_output) in enumerate(zip(judged, finished)):
        rated = {
            "score": parse_score(judge_output),
            "judge_output": judge_output,
            "score_line_prompted": i in prompted or judge_output != first,
            "refused": judge_output is None,
        }
        if judge_output is None:
            rated["refusal_reason"] = reasons.get(i, "the engine refused the prompt")
        fields.append(rated)
    return fields


def _end_at_score_line(text: str) -> str:
    """A prompted judgement ends with the line its Score is on (it may have written on)."""
    start = text.rfind(SCORE_PREFIX)
    end = text.find("\n", start)
    return text if start < 0 or end < 0 else text[:end]


def rate_logprob(candidates: Sequence[Mapping], engine: Engine, template: str, cfg: CurateConfig | None = None):
    cfg = cfg or CurateConfig()
    prompts = [rating_prompt(c, template, "logprob", cfg.system_prompt) for c in candidates]
    read = engine.choice_logprobs(prompts, SCORE_CHOICES)
    check_refusals(engine, read, cfg, "rating")
    reasons = engine.refusal_reasons
    fields = []
    for i, logprobs in enumerate(read):
        if logprobs is None:  # refused: not an unparsed rating, a prompt the engine did not run
            fields.append(
                {
                    "score": None,
                    "expected_score": None,
                    "score_probs": None,
                    "score_mass": 0.0,
                    "refused": True,
                    "refusal_reason": reasons.get(i, "the engine refused the prompt"),
                }
            )
        else:
            fields.append(score_distribution(logprobs, cfg.min_choice_mass))
    return fields
