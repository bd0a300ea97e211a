"""Trust, second pass (issue 23): no command touches a user's file, no secret is published, every
corpus path is safe. One test per case the adversarial pass found, then two suite-level checks
over every command that takes --out/--to (discovered from the CLI, so a new command cannot skip them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import write_jsonl
from typer.testing import CliRunner

from humpback import SegmentConfig, segment
from humpback.cli import app
from humpback.shards import read_stage, stage_counters, stage_rejects

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
PAGE = "<html><head><title>{t}</title></head><body><h1>{t}</h1><p>{body}</p></body></html>"
CANARY_USER = "canaryuser"
CANARY_PASS = "canarypass9"
CANARY_KEY = "sk-live-canary0123456789abcdef"
SECRET_URL = f"https://{CANARY_USER}:{CANARY_PASS}@127.0.0.1:9/v1?api_key={CANARY_KEY}"
SECRETS = (CANARY_PASS, CANARY_KEY, f"{CANARY_USER}:")


def page(title: str, seed: int = 0, words: int = 160) -> str:
    import random

    rng = random.Random(seed)
    vocab = (
        "river stone garden lamp window harbour bread music winter silver paper forest candle bridge "
        "market letter ocean mountain kettle orchard"
    ).split()
    return PAGE.format(t=title, body=" ".join(rng.choice(vocab) for _ in range(words)) + ".")


def corpus(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"page{i}.html").write_text(page(f"Page number {i}", seed=i))
    return folder


def finished_run(tmp_path: Path, config: dict | None = None) -> Path:
    """A finished run's files, as `humpback run` leaves them (one iteration), marked as a run."""
    run = tmp_path / "run"
    row = {
        "id": "s1",
        "origin": "seed",
        "messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}],
    }
    write_jsonl(run / "final" / "train.jsonl", [row])
    (run / ".humpback").write_text(json.dumps({"kind": "run", "wrote": []}))
    (run / "config.yaml").write_text(yaml.safe_dump(config or {"seed": "demo", "corpus": "demo", "iterations": 1}))
    (run / "stats.json").write_text(json.dumps({"final_dataset_count": 1, "final_model": "m1", "iterations": {}}))
    return run


# --- data loss --------------------------------------------------------------------------------


def test_1_recompute_removes_only_what_humpback_wrote(tmp_path):
    web, out = corpus(tmp_path / "web"), tmp_path / "segA"
    assert runner.invoke(app, ["segment", "--corpus", str(web), "--out", str(out)]).exit_code == 0
    (out / "NOTES.md").write_text("my notes")
    (out / "my_analysis").mkdir()
    (out / "my_analysis" / "plot.py").write_text("print(1)")
    result = runner.invoke(
        app, ["segment", "--corpus", str(web), "--out", str(out), "--min-chars", "700", "--recompute"]
    )
    assert result.exit_code == 0, result.output
    assert (out / "NOTES.md").read_text() == "my notes" and (out / "my_analysis" / "plot.py").exists()
    assert (out / "_SUCCESS").exists() and json.loads((out / "_fingerprint.json").read_text())["fields"]["config"][
        "min_chars"
    ] == 700


def test_2_report_never_writes_into_a_folder_humpback_did_not_make(tmp_path):
    run = finished_run(tmp_path)
    (run / ".humpback").unlink()
    (run / "report.html").write_text("mine")
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 2 and "not a humpback run directory" in result.output
    assert (run / "report.html").read_text() == "mine" and not (run / "report.md").exists()


def test_3_generate_never_replaces_a_file_created_while_it_ran(tmp_path):
    from humpback.files import new_file

    target = tmp_path / "answers.jsonl"
    with pytest.raises(FileExistsError, match="replaced by another file"):
        with new_file(target) as tmp:
            tmp.write_text("humpback's answers\n")
            with pytest.raises(FileExistsError):  # a second writer is refused while the first holds the name
                with new_file(target):
                    pass
            target.unlink()
            target.write_text("the user's file\n")  # made by someone else meanwhile
    assert target.read_text() == "the user's file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.jsonl"]  # no temporary file left
    # and a generate that fails leaves no empty file behind
    with pytest.raises(RuntimeError):
        with new_file(tmp_path / "other.jsonl"):
            raise RuntimeError("engine died")
    assert not (tmp_path / "other.jsonl").exists()


def test_4_republishing_keeps_a_hand_edited_card(tmp_path):
    run, to = finished_run(tmp_path), tmp_path / "pub"
    assert runner.invoke(app, ["publish", str(run), "--to", str(to)]).exit_code == 0
    first = (to / "README.md").read_text()
    assert runner.invoke(app, ["publish", str(run), "--to", str(to)]).exit_code == 0  # unedited: replaced quietly
    assert (to / "README.md").read_text() == first and not (to / "README.humpback.md").exists()
    (to / "README.md").write_text(first + "\nMy own notes on this dataset.\n")
    result = runner.invoke(app, ["publish", str(run), "--to", str(to)])
    assert result.exit_code == 0 and "was edited" in result.output
    assert (to / "README.md").read_text().endswith("My own notes on this dataset.\n")
    assert (to / "README.humpback.md").read_text() == first


# --- secrets ----------------------------------------------------------------------------------


def _assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in {where}"


def test_5_a_key_pasted_as_the_variable_name_is_refused_unechoed(tmp_path):
    for flag in ("--augment-api-key-env", "--curate-api-key-env"):
        result = runner.invoke(app, ["run", flag, CANARY_KEY, "--out", str(tmp_path / "r")])
        assert result.exit_code == 2 and "name of an environment variable" in result.output
        _assert_no_secret(result.output, "the error")
        assert not (tmp_path / "r").exists()
    # a config file that puts a key where a number goes: the error does not echo it either
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"curate": {"k": CANARY_KEY}, "augment": {"base_url": 7}}))
    result = runner.invoke(app, ["run", "--config", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "curate.k" in result.output
    _assert_no_secret(result.output, "the error")


def test_5_secrets_in_urls_reach_no_file_card_or_log(tmp_path, caplog):
    from humpback.config import RunConfig, dump_yaml
    from humpback.engines.openai import OpenAIEngine
    from humpback.publish import publish
    from humpback.redaction import RedactingFilter

    cfg = RunConfig.model_validate(
        {
            "augment": {"engine": "openai", "base_url": SECRET_URL},
            "curate": {"engine": "openai", "base_url": SECRET_URL, "tokenizer": SECRET_URL},
        }
    )
    run = finished_run(tmp_path)
    dump_yaml(cfg, run / "config.yaml")
    saved = (run / "config.yaml").read_text()
    _assert_no_secret(saved, "config.yaml")
    assert "https://***@127.0.0.1:9/v1?api_key=***" in saved  # the URL itself is still there to read
    publish(run, tmp_path / "pub")
    _assert_no_secret((tmp_path / "pub" / "README.md").read_text(), "the card")
    # a run made before redaction, whose config.yaml holds the URL whole: the card is still clean
    (run / "config.yaml").write_text(yaml.safe_dump({"iterations": 1, "augment": {"base_url": SECRET_URL}}))
    publish(run, tmp_path / "pub2")
    _assert_no_secret((tmp_path / "pub2" / "README.md").read_text(), "the card of an old run")
    # engine errors name the server without its credentials
    engine = OpenAIEngine("m", SECRET_URL, timeout=1, max_retries=0, tokenizer=None)
    _assert_no_secret(engine.base_url, "the engine's name")
    from humpback.engines import EngineError, SamplingParams

    with pytest.raises(EngineError) as error:  # nothing listens on port 9: the real connection error
        engine.generate([[{"role": "user", "content": "hi"}]], SamplingParams(max_new_tokens=2))
    _assert_no_secret(str(error.value), "an engine error")
    # every log line passes the redacting filter
    record = __import__("logging").LogRecord("humpback", 30, __file__, 1, "calling %s", (SECRET_URL,), None)
    RedactingFilter().filter(record)
    _assert_no_secret(record.getMessage(), "a log line")


def test_6_card_markdown_cannot_be_escaped_by_a_value(tmp_path):
    from markdown_it import MarkdownIt

    hostile = "a\n```\n# injected heading\n```"
    run = finished_run(tmp_path / "x`y", {"seed": hostile, "corpus": "c | d", "iterations": 1})
    run = run.rename(run.parent / "run [x](javascript:e) ```")
    assert runner.invoke(app, ["publish", str(run), "--to", str(tmp_path / "pub")]).exit_code == 0
    card = (tmp_path / "pub" / "README.md").read_text().split("---\n", 2)[2]
    tokens = MarkdownIt("commonmark").parse(card)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert "injected heading" not in " ".join(headings)
    assert not any(t.type == "link_open" for tok in tokens for t in (tok.children or []))
    fences = [t for t in tokens if t.type == "fence"]
    assert len(fences) == 1 and "# injected heading" in fences[0].content


def test_7_a_newline_in_a_file_name_cannot_forge_a_log_line(tmp_path):
    web = corpus(tmp_path / "web", 1)
    (web / "bad\nERROR forged line.html").write_bytes(b"\x1f\x8b\x08broken")
    (web / "bad\nERROR forged line.html.gz").write_bytes(b"\x1f\x8b\x08broken")
    done = subprocess.run(
        [sys.executable, "-m", "humpback.cli", "segment", "--corpus", str(web), "--out", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stderr.splitlines() if line.startswith("ERROR forged")]
    assert "bad\\nERROR forged line.html.gz" in done.stderr


# --- crash, hang, resources -------------------------------------------------------------------


def test_8_a_file_name_that_is_not_utf8_is_read_and_named(tmp_path):
    web = corpus(tmp_path / "web", 1)
    (web / os.fsdecode(b"caf\xe9.html")).write_text(page("A page named in latin-1", seed=5))
    (web / os.fsdecode(b"bro\xffken.html.gz")).write_bytes(b"not gzip")
    info = segment(str(web), tmp_path / "s", SegmentConfig())
    assert info["records"] == 2
    sources = [s["source"] for s in read_stage(tmp_path / "s")]
    assert any("caf\\xe9.html" in s for s in sources)
    rejects = [r["source"] for r in stage_rejects(tmp_path / "s")]
    assert any("bro\\xffken.html.gz" in r for r in rejects)
    # and the stage resumes: the fingerprint of such a name is stable
    assert segment(str(web), tmp_path / "s", SegmentConfig())["records"] == 2


def test_9_a_recursive_glob_follows_each_real_folder_once(tmp_path):
    web = corpus(tmp_path / "web" / "a", 2).parent
    (web / "a" / "loop").symlink_to(web, target_is_directory=True)  # web/a/loop -> web: a cycle
    (web / "again").symlink_to(web / "a", target_is_directory=True)  # a second way into a/
    start = time.time()
    info = segment(str(web / "**" / "*.html"), tmp_path / "s", SegmentConfig())
    assert time.time() - start < 60
    assert stage_counters(tmp_path / "s")["documents"] == 2 and info["records"] == 2


def test_10_a_shard_is_capped_in_bytes(tmp_path):
    from humpback.shards import _batches

    sizes = [40, 40, 40, 100, 5, 5]
    batches = [b for _, b in _batches(sizes, per_shard=10, max_bytes=90, size_of=lambda x: x)]
    assert batches == [[40, 40], [40], [100], [5, 5]]  # an item over the cap goes alone, never split
    web = tmp_path / "web"
    web.mkdir()
    write_jsonl(web / "big.jsonl", [{"text": f"Paragraph {i} " + "word " * 400} for i in range(6)])
    segment(str(web), tmp_path / "s", SegmentConfig(shard_max_bytes=5_000))
    assert len(list((tmp_path / "s").glob("part-*.jsonl"))) == 3


def test_11_multipart_chat_content_and_curated_rows_without_id(tmp_path, tiny_model):
    data = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "Paris."}]},
                ]
            },
            {"messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]},
        ],
    )
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"instruction": "What is the capital of France?"}])
    result = runner.invoke(app, ["decontaminate", str(data), "--against", str(prompts), "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "d" / "summary.json").read_text())["removed"] == 1

    curated = tmp_path / "curated.jsonl"
    curated.write_text(
        json.dumps({"instruction": "Name a fruit.", "output": "An apple is a fruit."})
        + "\n"
        + json.dumps({"instruction": "no output"})
        + "\n{broken\n"
    )
    result = runner.invoke(
        app,
        [
            "train",
            "--seed",
            "demo",
            "--curated",
            str(curated),
            "--model",
            tiny_model,
            "--max-steps",
            "1",
            "--out",
            str(tmp_path / "m"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 curated rows rejected" in result.output
    rows = [json.loads(line) for line in (tmp_path / "m" / "train.jsonl").read_text().splitlines()]
    assert sum(r["origin"] == "augmented" for r in rows) == 1


# --- wrong result or message ------------------------------------------------------------------


@pytest.mark.parametrize("content, name", [("", "empty.jsonl"), ('{"a": 1}', "dict.json"), ("[]", "none.json")])
def test_12_decontaminating_against_no_prompts_is_an_error(tmp_path, content, name):
    data = write_jsonl(tmp_path / "train.jsonl", [{"instruction": "Hi?", "output": "Hello."}])
    (tmp_path / name).write_text(content)
    result = runner.invoke(
        app, ["decontaminate", str(data), "--against", str(tmp_path / name), "--out", str(tmp_path / "d")]
    )
    assert result.exit_code == 2 and "yields no prompts" in result.output
    assert not (tmp_path / "d").exists()  # a failed command leaves nothing it created


def test_12_a_list_of_strings_is_a_list_of_prompts(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", [{"instruction": "Tell me a joke about cats.", "output": "Meow."}])
    (tmp_path / "p.json").write_text(json.dumps(["Tell me a joke about cats.", "Another prompt."]))
    result = runner.invoke(
        app, ["decontaminate", str(data), "--against", str(tmp_path / "p.json"), "--out", str(tmp_path / "d")]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["benchmark_prompts"] == 2 and summary["removed"] == 1


def test_14_missing_candidates_and_an_empty_corpus_stop_with_a_message(tmp_path, tiny_model):
    result = runner.invoke(
        app,
        ["curate", "--candidates", str(tmp_path / "nonexistent"), "--model", tiny_model, "--out", str(tmp_path / "c")],
    )
    assert result.exit_code == 2 and "is not a folder of stage shards" in result.output
    web = tmp_path / "web"
    web.mkdir()
    (web / "tiny.txt").write_text("Too short to be a segment.")
    result = runner.invoke(app, ["run", "--corpus", str(web), "--model", tiny_model, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "gave no segments" in result.output
    assert not (tmp_path / "r" / "models" / "backward").exists()


def test_15_an_out_inside_the_corpus_resumes(tmp_path):
    web = corpus(tmp_path / "web", 2)
    (web / "notes.jsonl").write_text("")  # a JSONL file in the corpus: the output's own JSONL would look the same
    out = web / "segments"
    assert segment(str(web), out, SegmentConfig())["records"] == 2
    assert segment(str(web), out, SegmentConfig())["records"] == 2  # same fingerprint: resumed, not refused


def test_16_changed_corpus_names_the_file_and_list_fields_have_flags(tmp_path):
    web, out = corpus(tmp_path / "web", 2), tmp_path / "s"
    assert runner.invoke(app, ["segment", "--corpus", str(web), "--out", str(out)]).exit_code == 0
    (web / "page9.html").write_text(page("A new page", seed=9))
    result = runner.invoke(app, ["segment", "--corpus", str(web), "--out", str(out)])
    assert result.exit_code == 2 and "corpus: added page9.html" in result.output
    result = runner.invoke(
        app, ["segment", "--corpus", str(web), "--out", str(tmp_path / "s2"), "--languages", "en", "--languages", "de"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s2" / "_fingerprint.json").read_text())["fields"]["config"]["languages"] == [
        "en",
        "de",
    ]
    result = runner.invoke(app, ["segment", "--corpus", str(web), "--out", str(tmp_path / "s3"), "--languages", ""])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s3" / "_fingerprint.json").read_text())["fields"]["config"]["languages"] == []


def test_16_a_cut_warc_header_is_named_not_a_python_error(tmp_path):
    import io

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    from humpback.corpus import Unreadable, read_corpus

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=False)
    headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.0")
    writer.write_record(
        writer.create_warc_record(
            "http://x/", "response", payload=io.BytesIO(page("x").encode()), http_headers=headers
        )
    )
    (tmp_path / "cut.warc").write_bytes(buf.getvalue()[:50])
    reasons = [d.reason for d in read_corpus(str(tmp_path / "cut.warc")) if isinstance(d, Unreadable)]
    assert reasons and "incomplete or malformed" in reasons[0] and "Error" not in reasons[0]


# --- every command that writes: user files safe, one writer at a time --------------------------


def _writing_commands() -> set[str]:
    """Every CLI command with an --out or --to option (curate --compare counted as its own)."""
    import typer.main

    click_app = typer.main.get_command(app)
    found = {
        name
        for name, command in click_app.commands.items()
        if any(opt in ("--out", "--to") for p in command.params for opt in getattr(p, "opts", []))
    }
    return found | {"curate --compare"} if "curate" in found else found


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model):
    """Real, small inputs every writing command can start from."""
    root = tmp_path_factory.mktemp("inputs")
    segments = root / "segments"
    segment("demo", segments, SegmentConfig())
    candidates = write_jsonl(
        root / "candidates" / "part-00000.jsonl",
        [{"id": "c1", "instruction": "Say hi.", "output": "Hi there, friend.", "source": "x"}],
    ).parent
    prompts = write_jsonl(root / "prompts.jsonl", [{"instruction": "Say hi.", "output": "Hello."}])
    return {
        "segments": segments,
        "candidates": candidates,
        "prompts": prompts,
        "run": finished_run(root),
        "model": tiny_model,
        "data": write_jsonl(root / "data.jsonl", [{"instruction": "a", "output": "b"}]),
        "labels": write_jsonl(root / "labels.jsonl", [{"id": "c1", "label": "good"}]),
    }


def _command_args(command: str, i: dict) -> list[str]:
    m = ["--model", i["model"]]
    return {
        "run": ["run", "--model", i["model"]],
        "segment": ["segment", "--corpus", "demo"],
        "augment": ["augment", "--segments", str(i["segments"]), *m, "--fit-model", i["model"]],
        "curate": ["curate", "--candidates", str(i["candidates"]), *m],
        "curate --compare": ["curate", "--compare", "--candidates", str(i["candidates"]), *m],
        "probe-judge": ["probe-judge", "--seed", "demo", *m],
        "train": ["train", "--seed", "demo", *m, "--max-steps", "1"],
        "generate": ["generate", "--prompts", str(i["prompts"]), *m],
        "eval": ["eval", "--prompts", str(i["prompts"]), *m],
        "eval-backward": ["eval-backward", "--seed", "demo", *m],
        "decontaminate": ["decontaminate", str(i["data"]), "--against", str(i["prompts"])],
        "publish": ["publish", str(i["run"])],
        "label": ["label", "--candidates", str(i["candidates"]), "--from", str(i["labels"])],
        "plan": ["plan", *m, "--sample", "5"],
        "preferences": ["preferences", "--prompts", str(i["prompts"]), *m, "--num-answers", "2"],
        "rewrite": ["rewrite", "--pairs", str(i["candidates"]), *m, "--max-new-tokens", "4"],
    }[command]


def _out_flag(command: str) -> str:
    return "--to" if command == "publish" else "--out"


def test_the_command_table_covers_every_writing_command(inputs):
    for command in _writing_commands():
        _command_args(command, inputs)  # a KeyError here: a new command needs its row in the table


@pytest.mark.parametrize("command", sorted(_writing_commands()))
def test_every_command_leaves_a_users_folder_intact(tmp_path, inputs, command):
    users = tmp_path / "mine"
    users.mkdir()
    (users / "thesis.tex").write_text("years of work")
    target = users / "thesis.tex" if command == "generate" else users  # generate's --out is a file
    result = runner.invoke(app, [*_command_args(command, inputs), _out_flag(command), str(target)])
    assert result.exit_code == 2, result.output
    assert "did not write" in result.output or "already exists" in result.output, result.output
    assert sorted(p.name for p in users.iterdir()) == ["thesis.tex"]
    assert (users / "thesis.tex").read_text() == "years of work"


_HOLD = """
import sys, time
from humpback.outputs import claim_output, output_lock
claim_output(sys.argv[1], sys.argv[2])
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""

KIND = {
    "run": "run",
    "segment": "segments",
    "augment": "candidates",
    "curate": "curate",
    "curate --compare": "curate-compare",
    "probe-judge": "probe",
    "train": "model",
    "eval": "eval",
    "eval-backward": "eval-backward",
    "decontaminate": "decontaminate",
    "publish": "publish",
    "label": "labels",
    "plan": "plan",
    "preferences": "preferences",
    "rewrite": "rewritten",
}


@pytest.mark.parametrize("command", sorted(_writing_commands()))
def test_every_command_takes_the_lock(tmp_path, inputs, command):
    out = tmp_path / "out"
    if command == "generate":  # a file, not a folder: a second writer finds the name taken
        holder = None
        out.write_text("")
    else:
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD, str(out), KIND[command]], stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert holder.stdout.readline().strip() == "held"
    try:
        result = runner.invoke(app, [*_command_args(command, inputs), _out_flag(command), str(out)])
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    assert result.exit_code == 2, result.output
    assert "in use by another humpback process" in result.output or "already exists" in result.output, result.output
