"""The documentation fits the code: the reference page is what the generator makes from the CLI
and the config classes, names every command and every config field, and the site builds strictly."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def generator():
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "docs" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_page_is_up_to_date():
    assert (ROOT / "docs" / "reference.md").read_text(encoding="utf-8") == generator().reference(), (
        "docs/reference.md differs from the code: run python docs/gen_reference.py"
    )


def test_the_reference_names_every_command_and_every_config_field():
    import typer.main

    from humpback.cli import app

    page = generator().reference()
    for name in typer.main.get_command(app).commands:
        assert f"### `humpback {name}`" in page, name
    classes = generator().config_classes()
    assert {c.__name__ for c in classes} >= {"SegmentConfig", "AugmentConfig", "CurateConfig", "RunConfig"}
    for cls in classes:
        section = page.split(f"### {cls.__name__}\n", 1)[1].split("\n### ", 1)[0]
        for field in cls.model_fields:
            assert f"| `{field}` |" in section, f"{cls.__name__}.{field}"


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 220


@pytest.mark.skipif(
    shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None,
    reason="mkdocs is not installed (pip install 'humpback[docs]')",
)
def test_the_site_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "index.html").exists()


def test_every_config_field_declares_what_it_changes():
    """config.py says for each field whether it changes a stage's output; the stages' fingerprints
    and the fields a resumed run may change are derived from that, so a new field must say."""
    from humpback.config import EFFECTS, field_effect

    undeclared = [
        f"{cls.__name__}.{name}"
        for cls in generator().config_classes()
        for name in cls.model_fields
        if field_effect(cls, name) not in EFFECTS
    ]
    assert not undeclared, f"declare Output/Selection/Input/Runtime for: {undeclared}"


def test_fingerprints_and_resume_follow_the_declarations():
    from humpback.augment import OUTPUT_FIELDS
    from humpback.curate import RATING_FIELDS
    from humpback.pipeline import _free

    # the openai engine's tokenizer renders the prompts: it changes what a stage writes
    assert "tokenizer" in OUTPUT_FIELDS and "tokenizer" in RATING_FIELDS
    assert "batch_size" not in OUTPUT_FIELDS and "fit_batch_size" not in OUTPUT_FIELDS
    assert "k" not in RATING_FIELDS and "template" not in RATING_FIELDS  # selection; the template by content
    assert _free("augment.batch_size") and _free("iterations") and _free("forward.gradient_checkpointing")
    assert not _free("curate.k") and not _free("augment.tokenizer") and not _free("forward.batch_size")
    assert not _free("segment.min_chars") and not _free("no_such.field")
