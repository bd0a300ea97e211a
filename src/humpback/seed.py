"""Load seed (instruction, output) pairs from the shapes people actually have.

Recognised by their fields, record by record:
- ``{instruction, output}`` and Alpaca ``{instruction, input, output}``;
- ``{prompt, completion}``;
- chat ``{messages: [...]}``: the first user turn and the assistant reply after it;
- Self-Instruct seed tasks ``{instruction, instances: [{input, output}, ...]}`` (first instance);
- OpenAssistant oasst1, as message trees (``{prompt: {..., replies: [...]}}``) or as flat messages
  (``message_id``, ``parent_id``, ``role``, ``lang``, ``rank``): like the paper, the first turn
  of each English conversation and its rank-0 reply.
Files: JSONL, JSON (a list, or ``{"data": [...]}``), Parquet; or a dataset id on a hub.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from .files import BadLine, jsonl_lines
from .records import Reject, SeedPair
from .shards import reject, stable_id

SHAPES = (
    "{instruction, output}, {instruction, input, output}, {prompt, completion}, {messages: [...]}, "
    "{instruction, instances: [{input, output}]}, or OpenAssistant messages/trees"
)


class SeedError(ValueError):
    """The seed yields no usable example; the message says what to fix."""


def demo_seed_path() -> Path:
    return Path(str(resources.files("humpback") / "demo" / "seed.jsonl"))


def _iter_raw(path: str) -> Iterator[tuple[str, object]]:
    """(where, record) pairs; where names the file and line. Unparseable lines come as errors."""
    p = Path(path)
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(p).to_pylist()
        except Exception as e:  # noqa: BLE001 - not Parquet, truncated, ...
            raise SeedError(f"{p}: not a readable Parquet file ({type(e).__name__}: {e})") from None
        for i, row in enumerate(rows, 1):
            yield f"{p}:row {i}", row
    elif p.suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8-sig"))  # a byte-order mark is not JSON
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SeedError(f"{p}: not a readable JSON file ({e}); use a JSON list of records or JSONL") from e
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), [data])
        for i, row in enumerate(data, 1):
            yield f"{p}:item {i}", row
    else:
        for where, value in jsonl_lines(p):
            yield where, ValueError(value.reason) if isinstance(value, BadLine) else value


def _iter_hub(dataset_id: str) -> Iterator[tuple[str, object]]:
    import datasets

    for i, row in enumerate(datasets.load_dataset(dataset_id, split="train", streaming=True), 1):
        yield f"{dataset_id}:row {i}", row


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def pair_from_record(record: dict) -> tuple[str, str] | str:
    """(instruction, output) from one record, or the reason it has none."""
    if not isinstance(record, dict):
        return f"not a JSON object; expected one of {SHAPES}"
    if isinstance(record.get("messages"), list):
        msgs = record["messages"]
        for i, m in enumerate(msgs):
            if isinstance(m, dict) and m.get("role") == "user":
                reply = next((n for n in msgs[i + 1 :] if isinstance(n, dict) and n.get("role") == "assistant"), None)
                if reply is None:
                    return "chat record has no assistant reply after the first user turn"
                return _text(m.get("content")), _text(reply.get("content"))
        return "chat record has no user turn"
    if isinstance(record.get("prompt"), dict):  # an oasst1 message tree
        return _oasst_tree_pair(record["prompt"])
    if "instances" in record and "instruction" in record:
        instances = record.get("instances") or []
        if not instances or not isinstance(instances[0], dict):
            return "Self-Instruct task has no instances"
        first = instances[0]
        return _join(_text(record["instruction"]), _text(first.get("input"))), _text(first.get("output"))
    if "instruction" in record and "output" in record:
        return _join(_text(record["instruction"]), _text(record.get("input"))), _text(record["output"])
    if "prompt" in record and "completion" in record:
        return _text(record["prompt"]), _text(record["completion"])
    return f"unrecognised fields {sorted(record)[:8]}; expected one of {SHAPES}"


def _join(instruction: str, input_text: str) -> str:
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def _is_oasst_message(record: object) -> bool:
    return isinstance(record, dict) and {"message_id", "role", "text"} <= set(record)


def _oasst_tree_pair(prompt: dict) -> tuple[str, str] | str:
    if prompt.get("lang", "en") != "en":
        return f"oasst tree not in English (lang={prompt.get('lang')})"
    replies = [r for r in prompt.get("replies") or [] if r.get("role") == "assistant" and r.get("rank") is not None]
    if not replies:
        return "oasst tree has no ranked assistant reply"
    best = min(replies, key=lambda r: r["rank"])
    if best["rank"] != 0:
        return "oasst tree has no rank-0 reply"
    return _text(prompt.get("text")), _text(best.get("text"))


def _oasst_flat_pairs(messages: list[tuple[str, dict]]) -> Iterator[tuple[str, tuple[str, str] | str]]:
    """First-turn English prompts and their rank-0 assistant reply, from flat oasst1 messages."""
    best_reply: dict[str, dict] = {}
    ids = {m["message_id"] for _, m in messages}
    for where, m in messages:
        if m.get("parent_id") and m["parent_id"] not in ids:
            yield where, "oasst reply whose parent message is not in the seed (orphan)"
        if m.get("role") == "assistant" and m.get("rank") == 0 and m.get("parent_id"):
            best_reply[m["parent_id"]] = m
    for where, m in messages:
        if m.get("parent_id") or m.get("role") != "prompter":
            continue  # only conversation roots are first turns
        if m.get("lang", "en") != "en":
            yield where, f"oasst prompt not in English (lang={m.get('lang')})"
        elif m["message_id"] not in best_reply:
            yield where, "oasst prompt has no rank-0 reply"
        else:
            yield where, (_text(m["text"]), _text(best_reply[m["message_id"]]["text"]))


def load_seed(source: str, limit: int | None = None) -> tuple[list[SeedPair], list[Reject]]:
    """Seed examples ``{id, source, instruction, output}`` and rejects, from a file or hub id.

    Raises SeedError when nothing usable comes out, saying what shapes are accepted.
    """
    if source == "demo":
        source = str(demo_seed_path())
    path = Path(source).expanduser()
    if path.exists():
        raw = _iter_raw(str(path))
    elif re.fullmatch(r"[\w.-]+/[\w.-]+", source) and not path.suffix:
        raw = _iter_hub(source)
    else:
        raise SeedError(f"seed file {source} does not exist; pass a JSONL, JSON or Parquet file or a hub dataset id")

    examples: list[SeedPair] = []
    rejects: list[Reject] = []
    oasst_messages: list[tuple[str, dict]] = []
    seen: set[tuple[str, str]] = set()

    def add(where: str, result: tuple[str, str] | str | Exception, record: object = None) -> None:
        if isinstance(result, Exception):
            rejects.append(reject("seed", where, str(result)))
            return
        if isinstance(result, str):
            rejects.append(reject("seed", where, result, record))
            return
        instruction, output = result
        if not instruction or not output:
            rejects.append(reject("seed", where, "empty instruction or output", record))
        elif (instruction, output) in seen:
            rejects.append(reject("seed", where, "duplicate of an earlier seed example", record))
        else:
            seen.add((instruction, output))
            examples.append(
                SeedPair(
                    id="seed-" + stable_id(instruction, output), source=where, instruction=instruction, output=output
                )
            )

    for where, record in raw:
        if isinstance(record, dict) and _is_oasst_message(record):
            oasst_messages.append((where, record))
        elif isinstance(record, Exception):
            add(where, record)
        else:
            try:
                pair = (
                    pair_from_record(record) if isinstance(record, dict) else f"not an object: {type(record).__name__}"
                )
            except Exception as e:  # noqa: BLE001 - a record of a shape no rule expected
                pair = f"unreadable record ({type(e).__name__}: {e})"
            add(where, pair, record)
    for where, result in _oasst_flat_pairs(oasst_messages):
        add(where, result)

    if limit is not None:
        examples = examples[:limit]
    if not examples:
        reasons = sorted({r["reason"] for r in rejects})[:3]
        raise SeedError(
            f"seed {source} yielded no usable (instruction, output) example"
            + (f" (first problems: {'; '.join(reasons)})" if reasons else " (it is empty)")
            + f". Accepted record shapes: {SHAPES}."
        )
    return examples, rejects
