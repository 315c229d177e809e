"""The package's shape: layers as folders, imports only downward, no cycle, the README's map of
every module, and no function or class too long to read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jaxstyle"
#: Bottom to top. The top level (``cli.py``, ``__init__.py``) sits above every folder.
LAYERS = ["core", "media", "model", "engine", "driver", "serve"]


def modules() -> dict[str, Path]:
    """``{"engine.plan": path, "cli": path, ...}`` for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(p for p in parts if p != "__init__") or "__init__"] = path
    return out


def rank(module: str) -> int:
    layer = module.split(".")[0]
    return LAYERS.index(layer) if layer in LAYERS else len(LAYERS)


def imports(module: str, text: str, known: set[str], init: bool = False) -> set[str]:
    """Every jaxstyle module that ``module`` (the text of its file; ``init`` for a folder's
    ``__init__.py``) imports, at the top or inside a function, relatively or absolutely."""
    parts = [] if module == "__init__" else module.split(".")
    package = parts if init else parts[:-1]
    found = set()
    for node in runtime_nodes(ast.parse(text)):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                stem = [*package[: len(package) - (node.level - 1)], *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.split(".")[0] == "jaxstyle":
                stem = node.module.split(".")[1:]
            else:
                continue
            names = [".".join([*stem, a.name]) for a in node.names] + [".".join(stem)]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".", 1)[1] for a in node.names if a.name.startswith("jaxstyle.")]
        found.update(n for n in names if n in known and n != module)
    return found


def runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:``, which a type checker reads and
    Python never runs."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *runtime_nodes(child)])
            continue
        yield node
        yield from runtime_nodes(node)


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports(m, p.read_text(), known, p.name == "__init__.py") for m, p in mods.items()}


def test_layers_are_the_folders():
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert folders == sorted(LAYERS)
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "cli.py"]


def test_imports_only_go_down():
    wrong = [f"{m} -> {d}" for m, deps in graph().items() for d in deps
             if m != "__init__" and rank(d) > rank(m)]
    assert wrong == []


def test_the_import_graph_has_no_cycle():
    g = {m: {d for d in deps if d != "__init__"} for m, deps in graph().items()}
    state: dict[str, int] = {}

    def visit(m, trail):
        if state.get(m) == 1:
            raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(m):], m]))
        if state.get(m) == 2:
            return
        state[m] = 1
        for d in sorted(g[m]):
            visit(d, [*trail, m])
        state[m] = 2

    for m in sorted(g):
        visit(m, [])


def test_the_checker_sees_what_it_must():
    """The checks above catch an upward import made inside a function, one written absolutely,
    and one from a folder's ``__init__``; they ignore other packages."""
    known = {"engine.plan", "serve.live", "media.images", "core.errors", "media"}
    text = ("import numpy\nfrom ..core.errors import ConfigError\n"
            "def f():\n    from ..serve.live import LiveState\nimport jaxstyle.media.images\n")
    assert imports("engine.plan", text, known) == {"serve.live", "media.images", "core.errors"}
    assert imports("media", "from .images import x\nfrom ..serve import live\n", known | {"serve"}, init=True) \
        == {"media.images", "serve.live", "serve"}
    typed = "if TYPE_CHECKING:\n    from ..serve.live import LiveState\nelse:\n    from ..media import images\n"
    assert imports("engine.plan", typed, known | {"media"}) == {"media.images", "media"}
    assert rank("serve.live") > rank("engine.plan") > rank("media.images") > rank("core.errors")
    assert rank("cli") > rank("serve.studio")


def readme_map() -> set[str]:
    """The modules the README's map names, as ``layer/module``."""
    text = (ROOT / "README.md").read_text()
    section = text.split("<!-- module map -->")[1].split("<!-- end of module map -->")[0]
    return set(re.findall(r"`((?:[a-z]+/)?[a-z_]+)\.py`", section))


def test_the_readme_map_names_every_module():
    tree = {str(p.relative_to(PACKAGE).with_suffix("")) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    assert readme_map() == tree


def code_lines(node: ast.AST, lines: list[str]) -> int:
    """Lines of code of a function or class: no docstrings, blank lines or comment lines."""
    skip = set()
    for inner in ast.walk(node):
        body = getattr(inner, "body", None)
        if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            skip.update(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(1 for i in range(node.lineno, node.end_lineno + 1)
               if i not in skip and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#"))


def too_long(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            limit = 200 if isinstance(node, ast.ClassDef) else \
                60 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
            if limit is not None and code_lines(node, lines) > limit:
                out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({code_lines(node, lines)} lines)")
    return out


@pytest.mark.parametrize("folder", ["jaxstyle", "scripts"])
def test_no_function_over_60_lines_no_class_over_200(folder):
    assert too_long(ROOT / folder) == []


def test_code_lines_counts_code_only():
    text = 'def f():\n    """Doc\n    string."""\n    # a comment\n\n    a = 1\n    return a\n'
    node = ast.parse(text).body[0]
    assert code_lines(node, text.splitlines()) == 3  # def, a = 1, return


def test_the_readme_lists_every_script_with_its_docstring():
    """Each script under scripts/ is in the README's index with its docstring's first line, and
    none edits ``sys.path`` or imports another script: what they share is in the package."""
    text = (ROOT / "README.md").read_text()
    index = text.split("<!-- scripts index -->")[1].split("<!-- end of scripts index -->")[0]
    listed = dict(re.findall(r"^\| `(scripts/[\w/]+\.py)` \| (.*) \|$", index, re.M))
    scripts = sorted(ROOT.glob("scripts/**/*.py"))
    assert sorted(listed) == [str(p.relative_to(ROOT)) for p in scripts]
    names = {p.stem for p in scripts}
    for path in scripts:
        tree = ast.parse(path.read_text())
        first = (ast.get_docstring(tree) or "").split("\n")[0].replace("``", "`")
        assert first and listed[str(path.relative_to(ROOT))] == first, path
        assert "sys.path" not in path.read_text(), path
        imported = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | \
            {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not imported & names - {"jaxstyle"}, (path, imported & names)
        private = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("jaxstyle")
                   for a in n.names if a.name.startswith("_")]
        assert private == [], (path, private)


def test_the_readme_diagram_is_the_folders():
    """The diagram in the README's "Where things are" names the layers top to bottom as they are
    ranked here, and nothing else."""
    text = (ROOT / "README.md").read_text().split("### Where things are")[1]
    block = text.split("```")[1]
    drawn = [line.split()[0].rstrip("/") for line in block.strip().splitlines()]
    assert drawn == ["cli.py", *reversed(LAYERS)]
