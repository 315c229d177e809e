"""The docs as a user meets them: every command they show parses with its program's own argument
parser (without running the job), every link resolves, and every one-line error the code can end
with is explained in docs/troubleshooting.md.

Commands are ``jaxstyle ...`` and ``python scripts/...`` in code blocks and in inline code,
joined across continued lines (a trailing ``\\``) and, inline, across line breaks. A usage
synopsis (``[--set key=value ...]``) is not a command; a placeholder is written in capitals
(``OUTPUT``, ``DIR``). docs/history.md, the dated record of earlier measurements, is exempt, and so
is the inline code of docs/troubleshooting.md, which quotes messages."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CHECKED = [p for p in DOCS if p.name != "history.md"]
COMMAND = re.compile(r"^(jaxstyle(\s|$)|python3? scripts/)")


def commands(path: Path) -> list[tuple[int, str]]:
    """``(line, command)`` for every command the page shows."""
    text = path.read_text()
    found = []
    block, lines = False, text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("```"):
            block = not block
        elif block or line.startswith("    "):
            start, cmd = i, line.strip()
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd[:-1] + " " + lines[i].strip()
            cmd = re.sub(r"\s+#.*$", "", cmd).strip()
            if COMMAND.match(cmd):
                found.append((start + 1, cmd))
        i += 1
    prose = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    if path.name == "troubleshooting.md":  # its inline code quotes messages, not commands
        prose = ""
    for m in re.finditer(r"`([^`]+)`", prose):
        cmd = " ".join(m.group(1).split())
        if COMMAND.match(cmd):
            found.append((prose.count("\n", 0, m.start()) + 1, cmd))
    return [(n, c) for n, c in found if not re.search(r"\[[^\]]*\.\.\.\]|\.\.\.", c)]


class Parsed(Exception):
    """Raised once a script's parser has accepted its arguments, before the script does anything."""


def check_script(script: Path, argv: list[str], monkeypatch) -> None:
    """Run the script's ``main`` up to its argument parsing: a mistake there is an error."""
    original = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        original(self, args, namespace)
        raise Parsed

    def error(self, message):
        raise AssertionError(f"{script.name}: {message}")

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    monkeypatch.setattr(argparse.ArgumentParser, "error", error)
    monkeypatch.setattr(sys, "argv", [str(script), *argv])
    spec = importlib.util.spec_from_file_location(f"docs_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # a dataclass looks its module up there
    spec.loader.exec_module(module)
    with pytest.raises(Parsed):
        module.main()


def check_jaxstyle(argv: list[str]) -> None:
    """The ``jaxstyle`` command's own parsing (and the studio's, for ``jaxstyle studio``)."""
    if argv[:1] == ["studio"]:
        from jaxstyle.serve.studio import parser
        parser().parse_args(argv[1:])
    elif argv[:1] == ["keys"]:
        assert len(argv) <= 2
    elif argv[:1] == ["doctor"]:
        assert len(argv) == 1
    else:
        from jaxstyle.cli import parse
        try:
            parse(argv)
        except SystemExit as exc:  # --help and --version print and end
            assert exc.code == 0 and {"--help", "-h", "--version"} & set(argv)


ALL = [(p, n, c) for p in CHECKED for n, c in commands(p)]


def test_the_docs_show_commands():
    assert len(ALL) > 30
    assert any(c.startswith("python scripts/transfer.py --config examples/config.yaml") for _, _, c in ALL)


@pytest.mark.parametrize("path, line, command", ALL, ids=[f"{p.name}:{n}" for p, n, _ in ALL])
def test_every_command_in_the_docs_parses(path, line, command, monkeypatch):
    words = shlex.split(command)
    if words[0] == "jaxstyle":
        check_jaxstyle(words[1:])
    elif words[1] == "scripts/transfer.py":
        check_jaxstyle(words[2:])
    else:
        script = ROOT / words[1]
        assert script.is_file(), f"{path.name}:{line}: {words[1]} does not exist"
        check_script(script, words[2:], monkeypatch)


def test_every_link_resolves():
    broken = []
    for page in DOCS:
        prose = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.name}: {target}")
    assert not broken


#: One-line errors (``error: ...``, exit status 2) the command line cannot reach: library
#: functions whose input the config has already checked, and the studio's own (its page shows them).
UNREACHABLE = {
    "model/vgg.py": "the config checks pooling, padding and layer names first; images come from the pipeline",
    "model/normalize.py": "scripts/convert_weights.py --calibrate only (its own docs)",
    "engine/program.py:unknown strategy": "optimizer.strategy is checked by the config",
}


def messages() -> list[tuple[str, str]]:
    """``(where, text)`` of every error the code raises for the user, its placeholders as ``{}``."""
    def text(node) -> str:
        if isinstance(node, ast.Constant):
            return str(node.value)
        if isinstance(node, ast.JoinedStr):
            return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        if isinstance(node, ast.BinOp):
            return text(node.left) + text(node.right)
        return "{}"
    out = []
    for path in sorted((ROOT / "jaxstyle").rglob("*.py")):
        where = str(path.relative_to(ROOT / "jaxstyle"))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args \
                    and isinstance(node.exc.func, ast.Name) and node.exc.func.id in \
                    ("ConfigError", "OutputError", "ImageError", "WeightsError", "YAMLLimitError"):
                out.append((f"{where}:{node.lineno}", text(node.exc.args[0])))
    return out


def key_text(message: str) -> str | None:
    """The longest literal part of a message (at least 10 characters), which the docs must quote."""
    parts = [p.strip(" :;,.()'") for p in message.split("{}")]
    parts = [p for p in parts if len(p) >= 10]
    return max(parts, key=len) if parts else None


def test_every_error_message_is_explained_in_troubleshooting():
    page = (ROOT / "docs" / "troubleshooting.md").read_text().lower()
    missing = []
    for where, message in messages():
        if any(where.startswith(k.split(":")[0]) and (":" not in k or k.split(":", 1)[1] in message)
               for k in UNREACHABLE):
            continue
        key = key_text(message)
        if key is not None and key.lower() not in page:
            missing.append(f"{where}: {key}")
    assert not missing, "\n".join(missing)


def test_the_collector_sees_messages():
    found = dict(messages())
    assert len(found) > 150
    assert any(m == "config file not found: {}" for m in found.values())
    assert key_text("{} must be a port from 0 to 65535 (0: a free one), not {}") == \
        "must be a port from 0 to 65535 (0: a free one), not"
