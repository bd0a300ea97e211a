"""Writes docs/reference.md: every `humpback` command with its flags, and every config class with
its fields, defaults and meaning, read from the CLI and the config classes themselves (so the page
cannot drift from the code: tests/test_docs.py fails when the file differs from what this makes).

    python docs/gen_reference.py           # rewrite docs/reference.md
"""

from __future__ import annotations

import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "reference.md"


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(field) -> str:
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        return "(its own defaults)" if isinstance(field.default_factory, type) else "`[]`"
    if field.default is PydanticUndefined:
        return "required"
    value = field.default
    if isinstance(value, str) and len(value) > 40:
        return f"`{value[:37]}...`"
    return f"`{value!r}`" if value is not None else "`None`"


def config_classes() -> list[type]:
    """Every config class of humpback.config, in the order they are defined."""
    import inspect

    from pydantic import BaseModel

    from humpback import config

    return [
        c
        for _, c in sorted(inspect.getmembers(config, inspect.isclass), key=lambda m: inspect.getsourcelines(m[1])[1])
        if issubclass(c, BaseModel) and c.__module__ == config.__name__ and not c.__name__.startswith("_")
    ]


def reference() -> str:
    import typer.main
    from pydantic import BaseModel

    from humpback.cli import COMMAND_CONFIGS, app
    from humpback.config import EFFECTS, field_effect

    group = typer.main.get_command(app)
    lines = [
        "# Reference",
        "",
        "Every command and every config field, generated from the code by `python docs/gen_reference.py`",
        "(`make docs` runs it). A config field is a YAML key of the command's `--config` file and, when",
        "its type has one, a flag; in `humpback run` a stage's fields carry the stage's name",
        "(`--segment-min-chars`, `--curate-k`).",
        "",
        "## Commands",
        "",
    ]
    for name in sorted(group.commands):
        command = group.commands[name]
        config = COMMAND_CONFIGS.get(name)
        lines += [f"### `humpback {name}`", "", _cell(command.help or ""), ""]
        if config is not None:
            lines += [f"Its config: [`{config.__name__}`](#{config.__name__.lower()}).", ""]
        lines += ["| flag | meaning |", "|---|---|"]
        for param in command.params:
            flags = ", ".join(f"`{o}`" for o in [*param.opts, *getattr(param, "secondary_opts", [])])
            lines.append(f"| {flags} | {_cell(getattr(param, 'help', '') or '')} |")
        lines.append("")
    lines += ["## Config classes", "", "What a field changes (declared with each field in `config.py`):", ""]
    lines += [f"- **{effect}**: {meaning}." for effect, meaning in EFFECTS.items()] + [""]
    for cls in config_classes():
        lines += [
            f"### {cls.__name__}",
            "",
            _cell(cls.__doc__ or ""),
            "",
            "| field | default | changes | meaning |",
            "|---|---|---|---|",
        ]
        for field_name, field in cls.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                meaning = (
                    f"{_cell(field.description or '')} See [`{annotation.__name__}`](#{annotation.__name__.lower()})."
                )
            else:
                meaning = _cell(field.description or "")
            lines.append(f"| `{field_name}` | {_default(field)} | {field_effect(cls, field_name)} | {meaning} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    sys.path.insert(0, str(PAGE.parents[1] / "src"))
    PAGE.write_text(reference(), encoding="utf-8")
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
