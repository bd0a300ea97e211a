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
