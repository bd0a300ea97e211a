"""The judge probe: can this judge tell a good pair from a bad one, before it curates?

Positives are human-written (instruction, answer) pairs that no training saw; negatives are made
from them in the ways the rubric's score 1 describes: another pair's answer (``off_topic``), the
answer starting mid-way (``starts_mid_way``), the answer cut off early (``cut_off_early``), web
boilerplate lines mixed into the answer (``boilerplate``), the instruction repeated as its own
answer (``instruction_as_answer``), and the answer under a near instruction (``near_instruction``: the
instruction of another pair that shares the most words with its own, the loose fit a backward
model's instruction often has to a web page). The judge scores every pair one way (a rating mode of
curate.py, or a likelihood signal of signals.py); the AUC says how often a positive outscores a
negative (0.5: chance), overall and per kind, with a bootstrap interval.
"""

from __future__ import annotations

import functools
import json
import random
import re
import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import CurateConfig, fields_with
from .engines import Engine, engine_for
from .files import write_json
from .outputs import digest, input_fingerprint, stage_output
from .records import ProbePair, ProbeReport, SeedPair
from .scoring import Detectors, rating_mode
from .signals import selection_value

NEGATIVE_KINDS = (
    "off_topic",
    "starts_mid_way",
    "cut_off_early",
    "boilerplate",
    "instruction_as_answer",
    "near_instruction",
)
REPORT_FILE = "report.json"
DETECTORS_FILE = "detectors.json"
# The fields that decide a rating decide the probe's values too (config.py declares each field's effect)
RATING_FIELDS = fields_with(CurateConfig, "output")
BOILERPLATE = [
    "Share this article on Facebook and Twitter.",
    "Subscribe to our newsletter for weekly updates!",
    "© 2023 All rights reserved. Privacy Policy | Terms of Use",
    "Click here to read more stories like this.",
    "We use cookies to improve your experience. Accept all cookies?",
    "Related posts: 10 tips you need to know",
]
MIN_WORDS_TO_CUT = 8  # an answer shorter than this cannot be cut into something clearly partial
# Words that say nothing of a topic, left out when instructions are matched by the words they share.
FUNCTION_WORDS = frozenset(
    """a an the of to in on at for with by from and or but as is are was were be been do does
did how what why when where which who whom whose can could should would will i you me my your it its this that these
those give write explain describe list tell make about some any please""".split()
)


@functools.lru_cache(maxsize=8192)  # every pair's search reads the whole pool: each instruction is split once
def topic_words(text: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in FUNCTION_WORDS and len(w) > 2)


def near_instruction(instruction: str, pool: list[str]) -> str | None:
    """The instruction of ``pool`` (other than ``instruction`` itself) that shares the most topic
    words with it, by Jaccard overlap; the first such on ties; None when none shares a topic word
    (another pair's instruction on another topic is what off_topic already tests, from the answer's side)."""
    mine = topic_words(instruction)
    best, best_overlap = None, 0.0
    for other in pool:
        if other.strip() == instruction.strip():
            continue
        theirs = topic_words(other)
        overlap = len(mine & theirs) / max(1, len(mine | theirs))
        if overlap > best_overlap:
            best, best_overlap = other, overlap
    return best


def probe_pairs(pairs: Sequence[Mapping], seed: int = 0, instruction_pool: list[str] | None = None) -> list[ProbePair]:
    """The probe: every pair as a positive (``label`` 1, ``kind`` "positive"), and from each the
    negatives it allows (``label`` 0, ``kind`` one of NEGATIVE_KINDS), seeded. ``instruction_pool``:
    the instructions near_instruction draws from (a run passes its whole seed); default the pairs'."""
    rng = random.Random(seed)
    pool = list(instruction_pool or [p["instruction"] for p in pairs])
    rng.shuffle(pool)  # which of several equally near instructions is taken: seeded
    order = list(range(len(pairs)))
    rng.shuffle(order)
    other = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}  # another pair, never itself
    probe: list[ProbePair] = []
    for i, pair in enumerate(pairs):
        instruction, output = pair["instruction"], pair["output"]
        probe.append(
            ProbePair(id=f"{pair.get('id', i)}", kind="positive", label=1, instruction=instruction, output=output)
        )
        words = list(re.finditer(r"\S+", output))
        negatives = {
            "instruction_as_answer": instruction
        }  # kind -> the answer; asked_instead: kind -> the instruction
        asked_instead = {}
        if len(pairs) > 1 and pairs[other[i]]["output"].strip() != output.strip():
            negatives["off_topic"] = pairs[other[i]]["output"]
        if len(words) >= MIN_WORDS_TO_CUT:  # cut at word boundaries; the text keeps its own line breaks
            cut = max(3, len(words) * 2 // 5)
            negatives["starts_mid_way"] = output[words[cut].start() :]
            negatives["cut_off_early"] = output[: words[len(words) - cut - 1].end()]
        lines = output.splitlines() or [output]
        junk = rng.sample(BOILERPLATE, 3)
        mixed = [junk[0]] + lines[:1] + [junk[1]] + lines[1:] + [junk[2]]
        negatives["boilerplate"] = "\n".join(mixed)
        if (near := near_instruction(instruction, pool)) is not None:
            negatives["near_instruction"], asked_instead["near_instruction"] = output, near
        for kind in NEGATIVE_KINDS:
            if kind in negatives:
                probe.append(
                    ProbePair(
                        id=f"{pair.get('id', i)}:{kind}",
                        kind=kind,
                        label=0,
                        instruction=asked_instead.get(kind, instruction),
                        output=negatives[kind],
                    )
                )
    return probe


def auc(positives: list[float], negatives: list[float]) -> float | None:
    """P(a positive scores above a negative), ties counting half (Mann-Whitney); None when a side is empty."""
    if not positives or not negatives:
        return None
    ranked = sorted([(v, 1) for v in positives] + [(v, 0) for v in negatives])
    rank_sum, i = 0.0, 0
    while i < len(ranked):  # average ranks over ties
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += sum(label for _, label in ranked[i:j]) * (i + j + 1) / 2
        i = j
    n_pos, n_neg = len(positives), len(negatives)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_auc(
    positives: list[float], negatives: list[float], rounds: int = 1000, seed: int = 0
) -> tuple[float | None, float | None]:
    """A 95% percentile interval of the AUC, resampling positives and negatives (seeded)."""
    if not positives or not negatives:
        return None, None
    rng = random.Random(seed)
    values = sorted(
        auc(rng.choices(positives, k=len(positives)), rng.choices(negatives, k=len(negatives))) or 0.0
        for _ in range(rounds)
    )
    return round(values[int(0.025 * rounds)], 4), round(values[int(0.975 * rounds) - 1], 4)


def calibrate(
    values: Sequence[float | None], labels: Sequence[int], target: float, prior: float | None = None
) -> dict:
    """The lowest value threshold whose selection on the probe reaches ``target`` precision, with
    that precision and its recall (None when no threshold reaches it).

    ``prior``: the share of good pairs assumed among the candidates to curate. The probe has up to
    five negatives per positive, a mix that says nothing about a corpus; with a prior the precision
    is the one the probe's true- and false-positive rates give at that mix. None: the probe's own mix."""
    scored = sorted(((v, y) for v, y in zip(values, labels) if v is not None), key=lambda t: -t[0])
    positives = sum(y for _, y in scored)
    negatives = len(scored) - positives
    best, hits = None, 0
    for n, (value, label) in enumerate(scored, 1):
        hits += label
        last_of_tie = n == len(scored) or scored[n][0] != value
        if prior is None or not positives or not negatives:
            precision = hits / n
        else:
            tpr, fpr = hits / positives, (n - hits) / negatives
            precision = prior * tpr / (prior * tpr + (1 - prior) * fpr)
        if last_of_tie and precision >= target:
            best = {"threshold": value, "precision": round(precision, 4), "recall": round(hits / max(1, positives), 4)}
    return best or {"threshold": None, "precision": None, "recall": 0.0}


def probe_report(probe: Sequence[ProbePair], values: Sequence[float | None], seed: int = 0) -> dict:
    """AUC overall and per negative kind with bootstrap intervals, and the value histograms."""
    scored = [(p, v) for p, v in zip(probe, values) if v is not None]
    positives = [v for p, v in scored if p["label"] == 1]
    report: dict = {
        "pairs": len(probe),
        "positives": sum(p["label"] for p in probe),
        "unscored": len(probe) - len(scored),
    }
    everything = [v for p, v in scored if p["label"] == 0]
    value = auc(positives, everything)
    report["auc"] = None if value is None else round(value, 4)
    report["auc_interval"] = bootstrap_auc(positives, everything, seed=seed)
    report["by_kind"] = {}
    for kind in NEGATIVE_KINDS:
        negatives = [v for p, v in scored if p["kind"] == kind]
        value = auc(positives, negatives)
        report["by_kind"][kind] = {
            "negatives": len(negatives),
            "auc": None if value is None else round(value, 4),
            "auc_interval": bootstrap_auc(positives, negatives, seed=seed),
        }
    report["histogram"] = {"positive": _histogram(positives), "negative": _histogram(everything)}
    return report


def _histogram(values: list[float]) -> dict:
    if not values:
        return {}
    if all(float(v).is_integer() for v in values):
        return {str(int(k)): n for k, n in sorted(Counter(values).items())}
    return {
        "mean": round(statistics.fmean(values), 4),
        "quartiles": [round(q, 4) for q in statistics.quantiles(values, n=4)],
    }


@dataclass(frozen=True)
class JudgeProbe:
    """A judge's probe: its report (AUC overall and per kind, the values of good and bad pairs)
    and, for a mode that learns, the Detectors fitted on it. Saved as a stage folder
    (``report.json``, ``detectors.json``: probe_stage) and loaded by curation (``load``)."""

    report: ProbeReport
    detectors: Detectors | None = None

    def save(self, out_dir: Path) -> None:
        write_json(Path(out_dir) / REPORT_FILE, self.report)
        if self.detectors is not None:
            self.detectors.save(Path(out_dir) / DETECTORS_FILE)

    @classmethod
    def load(cls, path: Path | str, mode: str | None = None) -> JudgeProbe:
        """From a probe folder (a run's ``probe/iterN``, or ``humpback probe-judge``'s output, which
        holds one folder per mode: ``mode`` picks it). Raises ProbeError when there is none."""
        path = Path(path)
        if not (path / REPORT_FILE).is_file() and mode and (path / mode / REPORT_FILE).is_file():
            path = path / mode
        if not (path / REPORT_FILE).is_file():
            raise ProbeError(f"{path} holds no judge probe ({REPORT_FILE}): give a folder humpback probe-judge wrote")
        report = json.loads((path / REPORT_FILE).read_text(encoding="utf-8"))
        if mode and report.get("mode") != mode:
            raise ProbeError(f"{path} probed the judge in mode {report.get('mode')}, not {mode}: probe it in {mode}")
        detectors = Detectors.load(path / DETECTORS_FILE) if (path / DETECTORS_FILE).is_file() else None
        return cls(report, detectors)

    def value(self, rating: Mapping) -> float | None:
        """What selection ranks a rating by: its features under the detectors when there are
        some, else its own value (signals.selection_value)."""
        if self.detectors is not None and rating.get("features"):
            return self.detectors.value(rating["features"])
        return selection_value(dict(rating))


class ProbeError(ValueError):
    """No usable judge probe where one was named."""


def probe_judge(
    pairs: Sequence[Mapping],
    judge_model: str,
    cfg: CurateConfig,
    mode: str | None = None,
    engine: Engine | None = None,
    seed: int = 0,
    instruction_pool: list[str] | None = None,
) -> JudgeProbe:
    """Score the probe made of ``pairs`` with the judge, one mode (default: cfg.mode).
    ``instruction_pool``: where near instructions come from (probe_pairs)."""
    mode = mode or cfg.mode
    probe = probe_pairs(pairs, seed, instruction_pool)
    start = time.time()
    with engine_for(judge_model, cfg, engine) as engine:
        values, detectors = rating_mode(mode).probe_values(probe, engine, cfg)
    seconds = time.time() - start
    report = {
        "judge_model": str(judge_model),
        "mode": mode,
        **probe_report(probe, values, seed),
        "seconds_per_pair": round(seconds / max(1, len(probe)), 4),
        # the values the calibrated rule sets its threshold on (curate.calibrated_threshold)
        "values": {
            "positive": [round(v, 6) for v, p in zip(values, probe) if v is not None and p["label"] == 1],
            "negative": [round(v, 6) for v, p in zip(values, probe) if v is not None and p["label"] == 0],
        },
    }
    report["verdict"] = verdict(report["auc"], cfg.min_probe_auc)
    return JudgeProbe(json.loads(json.dumps(report)), detectors)  # as it reads back from report.json


def probe_stage(
    pairs: Sequence[Mapping],
    judge_model: str,
    cfg: CurateConfig,
    out_dir: Path,
    instruction_pool: list[str] | None = None,
    engine: Engine | None = None,
    recompute: bool = False,
) -> JudgeProbe | None:
    """The judge probe as a stage: ``out_dir`` holds its report and detectors, resumed while the
    judge, the pairs and every field that changes a rating are the same (RATING_FIELDS; the
    selection fields use the probe's values later). None without pairs.
    ``instruction_pool``: where near instructions come from (a run passes its seed's)."""
    if not pairs:
        return None
    fields = {
        "judge_model": input_fingerprint(judge_model),
        "pairs": digest(pairs),
        "instruction_pool": digest(instruction_pool),
        "negative_kinds": list(NEGATIVE_KINDS),
        "template": rating_mode(cfg.mode).template(cfg),
        "config": cfg.model_dump(mode="json", include=RATING_FIELDS),
    }
    with stage_output(out_dir, "probe", fields, recompute) as out_dir:
        if (out_dir / REPORT_FILE).is_file():
            found = JudgeProbe.load(out_dir, cfg.mode)
            now = verdict(found.report["auc"], cfg.min_probe_auc)  # min_probe_auc may change on a resume
            if found.report.get("verdict") != now:
                found = JudgeProbe({**found.report, "verdict": now}, found.detectors)
                found.save(out_dir)
            return found
        found = probe_judge(pairs, judge_model, cfg, engine=engine, instruction_pool=instruction_pool)
        found.save(out_dir)
        return found


def verdict(value: float | None, floor: float) -> str:
    if value is None:
        return "no verdict: the probe had no scored pairs on one side"
    if value < floor:
        return (
            f"near chance (AUC {value:.2f} < {floor}): curation with this judge and mode selects pairs about as "
            f"well as a coin; try another mode (humpback curate --compare), a larger judge, or a served one"
        )
    return f"the judge separates good pairs from bad (AUC {value:.2f})"


def split_probe(
    seed: list[SeedPair], share: float, min_pairs: int, max_pairs: int, random_seed: int = 0, min_train: int = 8
) -> tuple[list[SeedPair], list[SeedPair]]:
    """(training seed, probe pairs): a seeded share of the seed held out of every training set of
    the run, at least ``min_pairs`` and at most ``max_pairs``, never leaving fewer than ``min_train``
    pairs to train on (then the probe is smaller, or empty)."""
    if share <= 0:
        return seed, []
    n = min(max(round(share * len(seed)), min_pairs), max_pairs, max(0, len(seed) - min_train))
    held = set(random.Random(random_seed).sample(range(len(seed)), n)) if n > 0 else set()
    return [p for i, p in enumerate(seed) if i not in held], [p for i, p in enumerate(seed) if i in held]


def answer_loss(
    pairs: Sequence[Mapping],
    model: str,
    tag: str = "both",
    placement: str = "system",
    chat_template: Path | str | None = None,
    engine: Engine | None = None,
) -> float | None:
    """Mean per-token negative log-likelihood of the pairs' answers given their instructions (asked
    with the inference tag, as the model is used): lower is better, no judge needed."""
    if not pairs:
        return None
    losses = answer_losses(pairs, model, tag, placement, chat_template, engine)
    return round(sum(nll for nll, _ in losses) / max(1, sum(n for _, n in losses)), 4)


def answer_losses(
    pairs: Sequence[Mapping],
    model: str,
    tag: str = "both",
    placement: str = "system",
    chat_template: Path | str | None = None,
    engine: Engine | None = None,
) -> list[tuple[float, int]]:
    """Per pair: (the answer's summed negative log-likelihood, its token count), the answer's tokens
    and its end of turn (what training puts the loss on), read teacher-forced after the instruction
    asked with the inference tag. A refused read counts (0.0, 0)."""
    from .config import EngineConfig
    from .models import end_of_turn_ids
    from .signals import answer_span
    from .tags import INFERENCE_TAGS, tagged_prompt

    cfg = EngineConfig(engine="transformers", dtype="float32", batch_size=8, chat_template=chat_template)
    with engine_for(model, cfg, engine) as engine:
        stops = set(end_of_turn_ids(engine.tokenizer))
        spans = [
            answer_span(
                engine.tokenizer,
                tagged_prompt(pair["instruction"], INFERENCE_TAGS[tag], placement),
                pair["output"],
                stops,
            )
            for pair in pairs
        ]
        reads = engine.token_logprobs([(full, start) for full, start, _ in spans])
    out = []
    for (_, start, end), read in zip(spans, reads):
        values = (read or [])[: end - start + 1]
        out.append((-sum(values), len(values)))
    return out
