"""The package's shape: no import cycle between its modules (imports inside functions count: they
only hide a cycle), and no module reaching for another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "humpback"


def module_name(path: Path, src: Path) -> str:
    parts = path.relative_to(src.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(dotted: str, src: Path) -> bool:
    path = src.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports(path: Path, src: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import of the package in the file, at any depth."""
    here = module_name(path, src)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    root = src.name
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != root and not target.startswith(root + "."):
                continue
            names = [a.name for a in node.names]
            submodules = [n for n in names if is_module(f"{target}.{n}", src)]  # `from . import files`
            found += [(f"{target}.{n}", []) for n in submodules]
            found.append((target, [n for n in names if n not in submodules]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name == root or a.name.startswith(root + ".")]
    return found


def graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the package's modules it imports. The package itself (its __init__ re-exports the
    public API) is left out as a target: the edges that make a cycle are to the modules."""
    return {
        module_name(p, src): {t for t, _ in imports(p, src) if t not in (module_name(p, src), src.name)}
        for p in src.rglob("*.py")
    }


def cycles(src: Path = SRC) -> list[list[str]]:
    edges, found, done = graph(src), [], set()

    def visit(node: str, stack: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt in stack:
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in done:
                visit(nxt, stack + [nxt])
        done.add(node)

    for start in sorted(edges):
        if start not in done:
            visit(start, [start])
    return found


def private_imports(src: Path = SRC) -> list[str]:
    return [
        f"{module_name(p, src)} imports {target}.{n}"
        for p in src.rglob("*.py")
        for target, names in imports(p, src)
        for n in names
        if n.startswith("_")
    ]


def test_no_import_cycle_between_modules():
    found = cycles()
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_no_private_name_imported_from_another_module():
    assert not private_imports()


def test_the_checks_find_a_hidden_cycle_and_a_private_import(tmp_path):
    """The same checks on a made-up package: they can fail."""
    pkg = tmp_path / "humpback"
    (pkg / "engines").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "engines" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .b import _hidden\n")  # hidden in a function
    (pkg / "b.py").write_text("from . import a\nfrom .engines import x\n_hidden = 1\n")
    assert graph(pkg)["humpback.b"] == {"humpback.a", "humpback.engines"}
    assert cycles(pkg) == [["humpback.a", "humpback.b", "humpback.a"]]
    assert private_imports(pkg) == ["humpback.a imports humpback.b._hidden"]
