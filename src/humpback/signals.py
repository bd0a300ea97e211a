"""Likelihood signals a small judge can give, without being asked for a judgement.

The rubric (curate.py) asks the judge to grade a pair; a 135M model cannot (its rubric ratings
were at chance on human-written pairs). What even a small model has is a likelihood:

- ``yes``: the probability of " yes" against " no" to a one-line question about the pair
  (read teacher-forced, like every choice read: engines.base.ChoicePlan).
- ``pmi``: how much the instruction helps predict the answer: the answer's mean per-token
  log-probability after the instruction, minus after an empty instruction (the inverse of the
  instruction-following difficulty of Li et al. 2023, "From Quantity to Quality"). An answer to
  another question, or one that starts mid-way, gains little from the instruction.

Each signal is a number per candidate, higher = better, None where the engine refused the prompt.
"""

from __future__ import annotations

import math

from .engines import Engine
from .engines.base import chat_text

YES_QUESTION = """\
Instruction:
{instruction}

Answer:
{output}

Is this answer a complete, on-topic and helpful reply to the instruction, as an AI assistant would write it? \
Reply yes or no."""
YES_CHOICES = {"yes": " yes", "no": " no"}
SIGNALS = ("yes", "pmi")


def yes_prompt(candidate: dict, system_prompt: str = "") -> list[dict]:
    text = YES_QUESTION.replace("{instruction}", candidate["instruction"]).replace("{output}", candidate["output"])
    prompt = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return prompt + [{"role": "user", "content": text}, {"role": "assistant", "content": "Reply:"}]


def yes_signal(candidates: list[dict], engine: Engine, system_prompt: str = "") -> list[dict | None]:
    """P(yes) / (P(yes) + P(no)) and the share of probability the two had (``signal_mass``)."""
    read = engine.choice_logprobs([yes_prompt(c, system_prompt) for c in candidates], list(YES_CHOICES.values()))
    out = []
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
    tokenizer = engine.tokenizer
    reads, lengths = [], []
    for c in candidates:
        for instruction in (c["instruction"], ""):
            system = [{"role": "system", "content": system_prompt}] if system_prompt else []
            prompt = system + [{"role": "user", "content": instruction}]
            head = tokenizer(chat_text(tokenizer, prompt), add_special_tokens=False)["input_ids"]
            full = tokenizer(chat_text(tokenizer, prompt + [{"role": "assistant", "content": c["output"]}]),
                             add_special_tokens=False)["input_ids"]
            start = 0
            while start < min(len(head), len(full)) and head[start] == full[start]:
                start += 1
            reads.append((full, start))
            lengths.append(max(1, len(full) - start))
    values = engine.sequence_logprobs(reads)
    out = []
    for i in range(0, len(values), 2):
        with_it, without = values[i], values[i + 1]
        if with_it is None or without is None:
            out.append(None)
            continue
        gain = with_it / lengths[i] - without / lengths[i + 1]
        out.append({"signal": round(gain, 6), "answer_logprob": round(with_it / lengths[i], 6)})
    return out


def signal_values(mode: str, candidates: list[dict], engine: Engine, system_prompt: str = "") -> list[dict | None]:
    if mode == "yes":
        return yes_signal(candidates, engine, system_prompt)
    if mode == "pmi":
        return pmi_signal(candidates, engine, system_prompt)
    raise ValueError(f"unknown signal {mode!r}: {', '.join(SIGNALS)}")
