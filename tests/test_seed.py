import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import shared_data, write_jsonl

from humpback.seed import SeedError, load_seed, pair_from_record


def test_every_record_shape(tmp_path):
    rows = [
        {"instruction": "Plain?", "output": "Plain answer."},
        {"instruction": "Translate this.", "input": "Bonjour", "output": "Hello"},
        {"prompt": "A prompt", "completion": "A completion"},
        {
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "Chat question"},
                {"role": "assistant", "content": "Chat answer"},
                {"role": "user", "content": "later turn"},
            ]
        },
        {
            "instruction": "Self-instruct task",
            "instances": [{"input": "", "output": "first"}, {"input": "", "output": "second"}],
            "is_classification": False,
        },
    ]
    examples, rejects = load_seed(str(write_jsonl(tmp_path / "seed.jsonl", rows)))
    pairs = [(e["instruction"], e["output"]) for e in examples]
    assert pairs == [
        ("Plain?", "Plain answer."),
        ("Translate this.\n\nBonjour", "Hello"),
        ("A prompt", "A completion"),
        ("Chat question", "Chat answer"),
        ("Self-instruct task", "first"),
    ]
    assert rejects == []
    assert len({e["id"] for e in examples}) == 5


def test_oasst_flat_messages_take_first_turn_english_rank0(tmp_path):
    msgs = [
        {
            "message_id": "p1",
            "parent_id": None,
            "role": "prompter",
            "lang": "en",
            "text": "What is 2+2?",
            "rank": None,
        },
        {"message_id": "a1", "parent_id": "p1", "role": "assistant", "lang": "en", "text": "Four, worse.", "rank": 1},
        {"message_id": "a0", "parent_id": "p1", "role": "assistant", "lang": "en", "text": "It is 4.", "rank": 0},
        {
            "message_id": "p2",
            "parent_id": "a0",
            "role": "prompter",
            "lang": "en",
            "text": "Follow-up turn",
            "rank": None,
        },
        {
            "message_id": "a2",
            "parent_id": "p2",
            "role": "assistant",
            "lang": "en",
            "text": "Second-turn reply",
            "rank": 0,
        },
        {"message_id": "p3", "parent_id": None, "role": "prompter", "lang": "de", "text": "Wie geht's?", "rank": None},
        {"message_id": "a3", "parent_id": "p3", "role": "assistant", "lang": "de", "text": "Gut.", "rank": 0},
    ]
    examples, rejects = load_seed(str(write_jsonl(tmp_path / "oasst.jsonl", msgs)))
    assert [(e["instruction"], e["output"]) for e in examples] == [("What is 2+2?", "It is 4.")]
    assert any("not in English" in r["reason"] for r in rejects)


def test_oasst_message_trees(tmp_path):
    tree = {
        "message_tree_id": "t",
        "prompt": {
            "message_id": "p",
            "role": "prompter",
            "lang": "en",
            "text": "Name a colour.",
            "replies": [
                {"role": "assistant", "rank": 1, "text": "Blue?"},
                {"role": "assistant", "rank": 0, "text": "Red."},
            ],
        },
    }
    examples, _ = load_seed(str(write_jsonl(tmp_path / "trees.jsonl", [tree])))
    assert (examples[0]["instruction"], examples[0]["output"]) == ("Name a colour.", "Red.")


def test_json_and_parquet(tmp_path):
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(3)]
    (tmp_path / "s.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s.parquet")
    assert len(load_seed(str(tmp_path / "s.json"))[0]) == 3
    assert len(load_seed(str(tmp_path / "s.parquet"))[0]) == 3


def test_bad_lines_are_rejected_with_file_and_line(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b'{"instruction": "ok", "output": "fine"}\n{not json\n\xff\xfe bad bytes\n'
        b'{"question": "unknown shape"}\n{"instruction": "", "output": "x"}\n'
    )
    examples, rejects = load_seed(str(path))
    assert len(examples) == 1
    reasons = {r["source"]: r["reason"] for r in rejects}
    assert "malformed JSON" in reasons[f"{path}:2"]
    assert "UTF-8" in reasons[f"{path}:3"]
    assert "unrecognised fields" in reasons[f"{path}:4"]
    assert "empty" in reasons[f"{path}:5"]


def test_no_usable_example_stops_with_a_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"foo": 1}, {"bar": 2}])
    with pytest.raises(SeedError, match="no usable.*Accepted record shapes"):
        load_seed(str(path))
    with pytest.raises(SeedError, match="does not exist"):
        load_seed(str(tmp_path / "missing.jsonl"))


def test_demo_seed_is_bundled():
    examples, rejects = load_seed("demo")
    assert len(examples) >= 40 and not rejects


def test_self_instruct_seed_tasks_from_shared():
    examples, rejects = load_seed(str(shared_data("seed/self_instruct_seed_tasks.jsonl")))
    assert len(examples) + len(rejects) == 175
    assert len(examples) >= 170


def test_pair_from_record_explains_unknown_shapes():
    assert "expected one of" in pair_from_record({"text": "x"})
    assert "expected one of" in pair_from_record(["a", "list"])


def test_hub_dataset_id_goes_to_datasets(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, split, streaming):
        calls.append((name, split, streaming))
        return [{"instruction": "From the hub?", "output": "Yes."}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    examples, _ = load_seed("OpenAssistant/oasst1")
    assert calls == [("OpenAssistant/oasst1", "train", True)]
    assert examples[0]["source"] == "OpenAssistant/oasst1:row 1"
