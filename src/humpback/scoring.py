"""How the judge values a candidate: one class per rating mode, listed once (MODES).

A mode does three things, the same way in curation and in the judge probe:

- ``rate``: the fields a Rating gets, per candidate (a refused prompt: ``refused`` and its reason);
- ``probe_values``: one number per probe pair, higher = better, as curation will rank by it
  (out of sample for a mode that learns), and the Detectors it fitted on the whole probe;
- ``rules``: the selection rules that can select from its ratings. A mode and a rule that
  together select nothing (a likelihood signal has no 1..5 score) are refused before any work
  (check_selection).

The learning mode, ``features``, combines the likelihood features (signals.py) by Detectors: one
logistic regression per kind of bad pair, fitted on the probe, a pair's value the lowest of their
logits. They are saved next to the probe report (``detectors.json``) and loaded by curation.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from .config import CurateConfig
from .engines import Engine, check_refusals
from .files import write_json
from .rubric import load_template, rate_generate, rate_logprob
from .signals import FEATURES, features_signal, pmi_signal, yes_signal

SELECTION_RULES = ("score_at_least", "expected_at_least", "value_at_least", "top_fraction", "calibrated")
VALUE_RULES = ("value_at_least", "top_fraction", "calibrated")  # rank by selection_value, any scale


@dataclass(frozen=True)
class Combination:
    """A logistic regression of "good pair" on the standardised FEATURES: weights that rank a
    pair's features into one value (the logit), higher = better."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    bias: float
    weights: tuple[float, ...]

    @classmethod
    def fit(cls, features: Sequence[Mapping[str, float]], labels: Sequence[int], l2: float = 0.01) -> Combination:
        import numpy as np
        from scipy.optimize import minimize

        x = np.array([[f[name] for name in FEATURES] for f in features], dtype=float)
        mean, std = x.mean(0), x.std(0)
        std = np.where(std > 1e-6, std, 1.0)  # a feature constant on the probe gets no weight
        z, y = (x - mean) / std, np.asarray(labels, dtype=float)

        def loss(w):
            logits = z @ w[1:] + w[0]
            return float(np.mean(np.logaddexp(0, logits) - y * logits) + l2 * np.sum(w[1:] ** 2))

        w = minimize(loss, np.zeros(len(FEATURES) + 1), method="L-BFGS-B").x
        return cls(
            features=FEATURES,
            mean=tuple(round(float(v), 6) for v in mean),
            std=tuple(round(float(v), 6) for v in std),
            bias=round(float(w[0]), 6),
            weights=tuple(round(float(v), 6) for v in w[1:]),
        )

    def value(self, features: Mapping[str, float]) -> float:
        terms = zip(self.features, self.weights, self.mean, self.std)
        return round(self.bias + sum(w * (features[name] - m) / s for name, w, m, s in terms), 6)


@dataclass(frozen=True)
class Detectors:
    """One Combination per kind of bad pair (its positives against that kind's negatives): a
    detector of each way a pair goes bad. A pair's value is its worst detector's: a good pair has
    to pass every one, and a defect rare among the negatives (an answer cut off early) is not
    outweighed by the common ones, as one joint fit lets it be."""

    by_kind: dict[str, Combination]

    @classmethod
    def fit(cls, features: Sequence[Mapping[str, float] | None], kinds: Sequence[str]) -> Detectors:
        """``kinds``: per row, "positive" or the kind of bad pair it is (probe.NEGATIVE_KINDS)."""
        by_kind = {}
        for kind in dict.fromkeys(k for k in kinds if k != "positive"):  # in order of appearance
            rows = [
                (f, int(k == "positive")) for f, k in zip(features, kinds) if f is not None and k in ("positive", kind)
            ]
            if len({label for _, label in rows}) == 2:
                by_kind[kind] = Combination.fit([f for f, _ in rows], [label for _, label in rows])
        return cls(by_kind)

    def value(self, features: Mapping[str, float]) -> float:
        return min(c.value(features) for c in self.by_kind.values())

    @classmethod
    def cross_validated(
        cls,
        features: Sequence[Mapping[str, float] | None],
        kinds: Sequence[str],
        groups: Sequence[str],
        folds: int = 5,
        seed: int = 0,
    ) -> list[float | None]:
        """Each row's value under detectors fitted on the other folds; rows of one group (a pair
        and the negatives made from it) stay in one fold, so the values are out of sample."""
        order = sorted(set(groups))
        random.Random(seed).shuffle(order)
        fold_of = {g: i % folds for i, g in enumerate(order)}
        values: list[float | None] = [None] * len(features)
        for fold in range(folds):
            train = [i for i, g in enumerate(groups) if fold_of[g] != fold]
            detectors = cls.fit([features[i] for i in train], [kinds[i] for i in train])
            if not detectors.by_kind:
                continue
            for i, (f, g) in enumerate(zip(features, groups)):
                if f is not None and fold_of[g] == fold:
                    values[i] = detectors.value(f)
        return values

    def to_json(self) -> dict:
        return {"by_kind": {kind: vars(c) for kind, c in self.by_kind.items()}}

    @classmethod
    def from_json(cls, data: Mapping) -> Detectors:
        return cls(
            {
                kind: Combination(
                    features=tuple(c["features"]),
                    mean=tuple(c["mean"]),
                    std=tuple(c["std"]),
                    bias=float(c["bias"]),
                    weights=tuple(c["weights"]),
                )
                for kind, c in data["by_kind"].items()
            }
        )

    def save(self, path: Path) -> None:
        write_json(Path(path), self.to_json())

    @classmethod
    def load(cls, path: Path) -> Detectors:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


class RatingMode:
    """A way to value candidates (CurateConfig.mode)."""

    name: ClassVar[str]
    rules: ClassVar[tuple[str, ...]]
    """The selection rules that can select from this mode's ratings."""

    def template(self, cfg: CurateConfig) -> str:
        """The rubric this mode asks with ('' for a mode that asks none); a bad file fails here."""
        return load_template(cfg.template, self.name)

    def rate(
        self, candidates: Sequence[Mapping], engine: Engine, cfg: CurateConfig, template: str, shard_index: int = 0
    ) -> list[dict]:
        raise NotImplementedError

    def probe_values(
        self, probe: Sequence[Mapping], engine: Engine, cfg: CurateConfig
    ) -> tuple[list[float | None], Detectors | None]:
        raise NotImplementedError


class Generate(RatingMode):
    """The rubric, answered in words: reasoning, then "Score: N" (the paper's)."""

    name = "generate"
    rules = ("score_at_least", *VALUE_RULES)  # a score is a value too

    def rate(self, candidates, engine, cfg, template, shard_index=0):
        return rate_generate(candidates, engine, cfg, template, shard_index)

    def probe_values(self, probe, engine, cfg):
        rated = rate_generate(probe, engine, cfg, self.template(cfg))
        return [r["score"] for r in rated], None


class Logprob(RatingMode):
    """The rubric, read as the probability of each score 1..5 after "Score:"."""

    name = "logprob"
    rules = SELECTION_RULES

    def rate(self, candidates, engine, cfg, template, shard_index=0):
        return rate_logprob(candidates, engine, template, cfg)

    def probe_values(self, probe, engine, cfg):
        rated = rate_logprob(probe, engine, self.template(cfg), cfg)
        return [r.get("expected_score") for r in rated], None  # below the mass floor too: the probe measures the read


class Signal(RatingMode):
    """A likelihood signal (signals.py): a value, no 1..5 score."""

    rules = VALUE_RULES

    def read(self, candidates: list, engine: Engine, system_prompt: str) -> list[dict | None]:
        """The signal's fields per candidate (None: refused), from signals.py."""
        raise NotImplementedError

    def template(self, cfg):
        return ""  # a likelihood asks no rubric

    def rate(self, candidates, engine, cfg, template, shard_index=0):
        values = self.read(list(candidates), engine, cfg.system_prompt)
        check_refusals(engine, values, cfg, "rating")
        reasons = engine.refusal_reasons
        return [
            {"score": None, **v}
            if v is not None
            else {"score": None, "refused": True, "refusal_reason": reasons.get(i, "the engine refused the prompt")}
            for i, v in enumerate(values)
        ]

    def probe_values(self, probe, engine, cfg):
        values = self.read(list(probe), engine, cfg.system_prompt)
        return [None if v is None else v["signal"] for v in values], None


class Yes(Signal):
    name = "yes"

    def read(self, candidates, engine, system_prompt):
        return yes_signal(candidates, engine, system_prompt)


class Pmi(Signal):
    name = "pmi"

    def read(self, candidates, engine, system_prompt):
        return pmi_signal(candidates, engine, system_prompt)


class Features(Signal):
    """Every likelihood feature, ranked by the Detectors fitted on the probe."""

    name = "features"

    def read(self, candidates, engine, system_prompt):
        return features_signal(candidates, engine, system_prompt)

    def probe_values(self, probe, engine, cfg):
        features = [None if v is None else v["features"] for v in self.read(list(probe), engine, cfg.system_prompt)]
        kinds = [p["kind"] for p in probe]
        groups = [p["id"].split(":")[0] for p in probe]  # a pair and the negatives made from it
        return Detectors.cross_validated(features, kinds, groups), Detectors.fit(features, kinds)


MODES: dict[str, RatingMode] = {m.name: m() for m in (Generate, Logprob, Yes, Pmi, Features)}


def rating_mode(name: str) -> RatingMode:
    if name not in MODES:
        raise ValueError(f"unknown rating mode {name!r}: {', '.join(MODES)}")
    return MODES[name]


class SelectionError(ValueError):
    """A rating mode and a selection rule that together cannot select anything."""


def check_selection(cfg: CurateConfig, has_probe: bool) -> None:
    """Refuse, before any work, a mode and rule that would select nothing: a rule the mode's
    ratings cannot feed, ``value_at_least`` without a threshold, ``calibrated`` with neither a
    judge probe nor labels to calibrate on."""
    mode = rating_mode(cfg.mode)
    if cfg.select not in mode.rules:
        fix = "value_at_least, top_fraction or calibrated" if "score_at_least" not in mode.rules else mode.rules[0]
        raise SelectionError(
            f"curate.mode {cfg.mode} with curate.select {cfg.select} selects nothing: {cfg.mode} gives "
            f"{'no 1..5 score' if 'score_at_least' not in mode.rules else 'no expected score'}; "
            f"use curate.select {fix}"
        )
    if cfg.select == "value_at_least" and cfg.select_threshold is None:
        raise SelectionError(
            "curate.select value_at_least needs curate.select_threshold (a value on the mode's scale)"
        )
    if cfg.select == "calibrated" and not has_probe and cfg.labels is None:
        raise SelectionError(
            "curate.select calibrated needs a judge probe or labels: give --probe-seed FILE (held-out "
            "human-written pairs) or --probe DIR (a probe-judge output), or curate.labels; in `humpback run`, "
            "probe_share > 0 with enough seed pairs to hold some out"
        )
