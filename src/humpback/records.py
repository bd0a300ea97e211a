"""The records of a run, one type per kind, each field with what it holds.

A run's files are JSON lines of these (``TypedDict``s: plain dicts on disk and in memory, named
here so a reader can follow one record through the stages without reading them):

    seed file  -> SeedPair                     (seed.py)
    corpus     -> Segment          segments/   (segment.py)
    Segment    -> Candidate        candidates/   (augment.py)
    Candidate  -> Rating           iterN/ratings/, A_k in iterN/curated/   (curate.py)
    held-out SeedPair -> ProbePair -> ProbeReport   probe/iterN/   (probe.py)
    SeedPair + Rating -> ForwardExample -> TrainingExample -> DatasetRow   (train.py)
    anything refused on the way -> Reject   in each stage's _rejects/
"""

from __future__ import annotations

from typing import TypedDict

from typing_extensions import NotRequired  # typing has it from Python 3.11

Chat = list[dict]
"""A conversation: [{"role": "system" | "user" | "assistant", "content": str}, ...]."""


class SeedPair(TypedDict):
    """One human-written (instruction, output) example of the seed set."""

    id: str
    """``seed-`` + a hash of the pair: the same pair has the same id in every file it comes from."""
    source: str
    """Where it was read: ``FILE:LINE`` (or ``:item N``, ``:row N``, a hub dataset's row)."""
    instruction: str
    output: str


class Segment(TypedDict):
    """A self-contained piece of a web document: the output a backward model writes an instruction for."""

    id: str
    """A hash of the document's corpus-relative name and the segment's position in it."""
    source: str
    """``FILE#POSITION`` (``FILE:LINE#POSITION`` for JSONL corpora, the WARC record's URI for WARC)."""
    header: str
    """The heading the segment was found under ('' where none)."""
    text: str
    """The segment's text, boilerplate lines removed."""
    language: NotRequired[str]
    """The language py3langid finds in the text (ISO 639-1)."""
    language_confidence: NotRequired[float]
    """Its probability."""


class Candidate(TypedDict):
    """A segment with the instruction the backward model wrote for it: a pair to be rated."""

    id: str
    """The segment's id."""
    source: str
    """The segment's source."""
    instruction: str
    """What the backward model wrote (the prompt of the pair)."""
    output: str
    """The segment's text (the answer of the pair)."""
    backward_model: str
    """The model that wrote the instruction (path or served name)."""
    instruction_cut_off: NotRequired[bool]
    """True when the instruction reached augment.max_new_tokens: it may be cut mid-sentence."""
    fit: NotRequired[float | None]
    """With augment.num_instructions > 1: how well the instruction fits the segment (pmi of the
    segment's start after it, under augment.fit_model); the highest of the segment's samples."""
    sample: NotRequired[int]
    """With augment.num_instructions > 1: which of the segment's samples (0..n-1, in the order drawn)."""
    alternatives: NotRequired[list[dict]]
    """The segment's other sampled instructions, each ``{instruction, fit, sample}`` (duplicates and
    unusable samples left out)."""


class Rating(Candidate):
    """A candidate with the judge's rating (the Candidate's fields, then these)."""

    score: int | None
    """1..5, or None when the rating could not be read (never selected)."""
    rating_mode: str
    """``generate`` (the judge wrote a reasoned answer ending "Score: N") or ``logprob``."""
    judge_model: str
    iteration: int
    """Which iteration's judge (M_{iteration-1}) rated it."""
    judge_output: NotRequired[str | None]
    """generate mode: the judge's whole answer."""
    score_line_prompted: NotRequired[bool]
    """generate mode: the judge wrote no Score line of its own and was handed "Score:" to finish."""
    expected_score: NotRequired[float | None]
    """logprob mode: the mean score under the judge's probabilities of 1..5."""
    score_probs: NotRequired[list[float] | None]
    """logprob mode: the probabilities of 1..5, renormalised over the five."""
    score_mass: NotRequired[float]
    """logprob mode: the share of the judge's probability that went to the five scores."""
    signal: NotRequired[float | None]
    """yes / pmi modes: the likelihood signal (higher = better, see signals.py)."""
    selected_by: NotRequired[str]
    """In curated/: the rule that picked it (``score >= 5``, ``top 25% by value``, ...)."""
    unparsed_reason: NotRequired[str]
    """logprob mode: ``low_choice_mass`` when the five scores got less than min_choice_mass."""
    signal_mass: NotRequired[float]
    """yes mode: the share of the judge's probability that " yes" and " no" had together."""
    answer_logprob: NotRequired[float]
    """pmi mode: the answer's mean per-token log-probability after its instruction."""
    features: NotRequired[dict[str, float]]
    """features mode: every likelihood feature (signals.FEATURES), combined by the probe's detectors."""
    combined: NotRequired[float]
    """In curated/ (features mode with a probe): the value the detectors gave (scoring.Detectors)."""


class ProbePair(TypedDict):
    """A pair of the judge probe (probe.probe_pairs): a held-out seed pair, or a bad pair made from it."""

    id: str
    """The seed pair's id; a negative's is ``ID:KIND``."""
    kind: str
    """``positive`` or one of probe.NEGATIVE_KINDS."""
    label: int
    """1 for the positive, 0 for a negative."""
    instruction: str
    output: str


class ProbeReport(TypedDict):
    """What a judge probe found (``probe/iterN/report.json``; its detectors in ``detectors.json``)."""

    judge_model: str
    mode: str
    """The rating mode the judge was probed in (CurateConfig.mode)."""
    pairs: int
    positives: int
    unscored: int
    auc: float | None
    """P(a positive's value > a negative's), 0.5 = chance (out of sample for features)."""
    auc_interval: tuple[float | None, float | None]
    by_kind: dict[str, dict]
    """Per kind of negative: its count, AUC and interval."""
    histogram: dict[str, dict]
    seconds_per_pair: float
    values: dict[str, list[float]]
    """``positive`` and ``negative``: the values the calibrated rule sets its threshold on."""
    verdict: NotRequired[str]


class ForwardExample(TypedDict):
    """A pair ready for forward training, with its origin's tag in the prompt."""

    id: str
    origin: str
    """``seed`` (tagged S_a) or ``augmented`` (tagged S_w)."""
    prompt: Chat
    completion: Chat


class TrainingExample(TypedDict):
    """What TRL's SFTTrainer gets (prompt-completion format: the loss is on the completion only)."""

    prompt: Chat
    completion: Chat
    """One assistant message."""


class PreferenceExample(TypedDict):
    """What TRL's DPOTrainer gets (conversational preference format)."""

    prompt: Chat
    chosen: Chat
    """One assistant message: the answer the judge valued highest."""
    rejected: Chat
    """One assistant message: the answer it valued lowest."""


class PreferencePair(PreferenceExample):
    """A prompt's best and worst sampled answers, as the judge valued them (preferences.py)."""

    id: str
    instruction: str
    chosen_value: float
    rejected_value: float
    answers: list[dict]
    """Every answer sampled for the prompt: its text and value (None: not valued), each judge read's value."""
    policy_model: str
    judge_model: str
    judge_mode: str


class DatasetRow(TypedDict):
    """A row of a run's training sets (``iterN/train.jsonl``, ``final/train.jsonl``): chat form."""

    id: str
    origin: str
    messages: Chat


class Reject(TypedDict):
    """Something a stage could not use, kept with its reason (every stage's ``_rejects/``)."""

    stage: str
    source: str
    """Where it came from: a file and line, a record's source, a model."""
    reason: str
    record: NotRequired[str]
    """The record itself, as JSON text, cut at 2,000 characters."""
