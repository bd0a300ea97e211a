"""Likelihood signals a small judge can give, without being asked for a judgement.

The rubric (curate.py) asks the judge to grade a pair; a 135M model cannot (its rubric ratings
were at chance on human-written pairs). What even a small model has is a likelihood:

- ``yes``: the probability of " yes" against " no" to a one-line question about the pair
  (read teacher-forced, like every choice read: engines.base.ChoicePlan).
- ``pmi``: how much the instruction helps predict the answer: the answer's mean per-token
  log-probability after the instruction, minus after an empty instruction (the inverse of the
  instruction-following difficulty of Li et al. 2023, "From Quantity to Quality"), over its first
  PMI_TOKENS tokens. An answer to another question, or one that starts mid-way, gains little from
  the instruction. Only the answer's start is read without the instruction: that is where the
  instruction's help shows, and a second read of a whole web segment would double the cost of rating.
- ``features``: the two reads of ``pmi`` give more than their means: how likely the answer's
  first tokens are (an answer that starts mid-way starts improbably), how likely the reply is to
  end where it ends (one cut off early is not), and, from the text alone, how much of the answer
  repeats the instruction, whether it ends as a sentence or a closed bracket does, whether it
  ends open (on a comma or a word like "the": English only) and whether it starts open (a
  lower-case word). The end of turn is read after the closed assistant turn (answer_span), so
  end_logprob is the template's end-of-turn token, not the answer's last one. Detectors
  combining the features are fitted on the judge probe (probe.py).

Each signal is a number per candidate, higher = better, None where the engine refused the prompt.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from .engines import Engine
from .engines.base import chat_text
from .models import end_of_turn_ids

YES_QUESTION = """\
Instruction:
{instruction}

Answer:
{output}

Is this answer a complete, on-topic and helpful reply to the instruction, as an AI assistant would write it? \
Reply yes or no."""
YES_CHOICES = {"yes": " yes", "no": " no"}
FEATURES = (
    "pmi",
    "answer_logprob",
    "start_logprob",
    "end_logprob",
    "copies_instruction",
    "ends_with_punctuation",
    "ends_open",
    "starts_open",
)
# Words a finished English text does not end on (an answer ending "... including the" was cut off).
OPEN_ENDINGS = frozenset(
    """a an the of to in on at for with by from and or but as that which who whose whom this these
those is are was were be been being has have had do does did will would can could should may might must not nor so
than then if because while when where how what why into onto over under about after before between through during
including such like its their his her our your my very""".split()
)
_CLOSING = re.compile(r"""[.!?…)\]}"'”’`>*]$""")  # what a finished sentence, list or block ends with
START_TOKENS = 8  # the answer's first tokens, for start_logprob
PMI_TOKENS = 64  # the answer's first tokens, read with and without the instruction, for pmi


def yes_prompt(candidate: dict, system_prompt: str = "") -> list[dict]:
    text = YES_QUESTION.replace("{instruction}", candidate["instruction"]).replace("{output}", candidate["output"])
    prompt = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return prompt + [{"role": "user", "content": text}, {"role": "assistant", "content": "Reply:"}]


def yes_signal(candidates: list[dict], engine: Engine, system_prompt: str = "") -> list[dict | None]:
    """P(yes) / (P(yes) + P(no)) and the share of probability the two had (``signal_mass``)."""
    read = engine.choice_logprobs([yes_prompt(c, system_prompt) for c in candidates], list(YES_CHOICES.values()))
    out: list[dict | None] = []
    for logprobs in read:
        if logprobs is None:
            out.append(None)
            continue
        p_yes, p_no = (math.exp(logprobs[YES_CHOICES[c]]) for c in ("yes", "no"))
        mass = p_yes + p_no
        out.append({"signal": round(p_yes / mass, 6) if mass > 0 else None, "signal_mass": round(mass, 6)})
    return out


def pmi_signal(candidates: list[dict], engine: Engine, system_prompt: str = "") -> list[dict | None]:
    """Mean per-token log-probability of the answer after its instruction minus after an empty one."""
    return [
        None if f is None else {"signal": f["pmi"], "answer_logprob": f["answer_logprob"]}
        for f in likelihood_features(candidates, engine, system_prompt)
    ]


def features_signal(candidates: list[dict], engine: Engine, system_prompt: str = "") -> list[dict | None]:
    """Every likelihood feature (FEATURES); the signal is pmi until a fitted combination ranks them."""
    return [
        None if f is None else {"signal": f["pmi"], "features": f}
        for f in likelihood_features(candidates, engine, system_prompt)
    ]


def likelihood_features(candidates: list[dict], engine: Engine, system_prompt: str = "") -> list[dict | None]:
    """FEATURES per candidate, from two teacher-forced reads of its answer (the whole answer after
    the instruction, its first PMI_TOKENS tokens after an empty one) and the texts."""
    tokenizer = engine.tokenizer
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    stops = set(end_of_turn_ids(tokenizer))
    spans = [
        answer_span(tokenizer, system + [{"role": "user", "content": instruction}], c["output"], stops)
        for c in candidates
        for instruction in (c["instruction"], "")
    ]
    reads = [
        (full, start) if i % 2 == 0 else (full[: start + PMI_TOKENS], start)
        for i, (full, start, _) in enumerate(spans)
    ]
    values = engine.token_logprobs(reads)
    out: list[dict | None] = []
    for i, c in enumerate(candidates):
        with_it, without = values[2 * i], values[2 * i + 1]
        if not with_it or not without:
            out.append(None)
            continue
        full, start, end = spans[2 * i]
        answer = with_it[: end - start] or with_it
        shared = min(len(with_it), len(without))  # the answer's tokens both reads have
        words = set(c["output"].lower().split())
        out.append(
            {
                "pmi": round(sum(with_it[:shared]) / shared - sum(without[:shared]) / shared, 6),
                "answer_logprob": round(sum(answer) / len(answer), 6),
                "start_logprob": round(sum(answer[:START_TOKENS]) / len(answer[:START_TOKENS]), 6),
                "end_logprob": round(with_it[end - start] if end - start < len(with_it) else with_it[-1], 6),
                "copies_instruction": round(
                    len(words & set(c["instruction"].lower().split())) / max(1, len(words)), 6
                ),
                "ends_with_punctuation": float(bool(_CLOSING.search(c["output"].rstrip()))),
                "ends_open": float(_ends_open(c["output"])),
                "starts_open": float(_starts_open(c["output"])),
            }
        )
    return out


def answer_span(
    tokenizer, prompt: list[dict], output: str, stops: set[int] | None = None
) -> tuple[list[int], int, int]:
    """The chat text of ``prompt`` answered by ``output``, as token ids, with where the answer's
    tokens start (the first token the prompt alone does not have) and where its end of turn is
    (the template's, read as end_logprob; the last token when no end of turn follows). ``stops``:
    the end-of-turn ids, found once by a caller that reads many answers."""
    head = tokenizer(chat_text(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    # The turn is closed (not continued, as chat_text would): the end of turn after the answer is read.
    whole = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": output}], tokenize=False)
    full = tokenizer(whole, add_special_tokens=False)["input_ids"]
    start = 0
    while start < min(len(head), len(full)) and head[start] == full[start]:
        start += 1
    start = max(start, 1)  # the first token has nothing before it to be predicted from
    stops = set(end_of_turn_ids(tokenizer)) if stops is None else stops
    end = next((j for j in range(start, len(full)) if full[j] in stops), len(full) - 1)
    return full, start, end


def _ends_open(text: str) -> bool:
    text = text.rstrip()
    last = text.split()[-1].lower() if text.split() else ""
    return last in OPEN_ENDINGS or text.endswith((",", ":", ";", "-"))


def _starts_open(text: str) -> bool:
    """Starts as the middle of a sentence does: a lower-case word or a closing mark."""
    text = text.lstrip()
    return bool(text) and (text[0].islower() or text[0] in ",;:.)]}")


def selection_value(rating: Mapping) -> float | None:
    """What the value rules rank by: the probe-fitted combination of the likelihood features, else a
    likelihood signal, else the expected score, else the score."""
    for field in ("combined", "signal", "expected_score", "score"):
        if rating.get(field) is not None:
            return float(rating[field])
    return None
