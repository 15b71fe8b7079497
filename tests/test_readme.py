"""The README shows what works: every `adlab ...` command in its bash blocks parses with the real
argument parser, every relative link and every repository path it names exists, the example study
file is the shipped one, and the Python API example calls what the package exports with arguments
its functions take.

Static and fast: nothing is trained, and the heavy modules (torch, Lightning) are never imported.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import inspect
import io
import re
import shlex
import unicodedata
from pathlib import Path

import pytest
import yaml

import adlab
from adlab.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")

# top-level folders of the repository: a path in the README that starts with one of these names a file
# the repository holds (runs/ and the like are made by the user, and are not checked)
REPO_FOLDERS = ("bench", "configs", "docs", "examples", "src", "studies", "tests")
SHELL_BLOCKS = ("bash", "sh", "shell", "console")
CONTROL = {";", "&&", "||", "|", "&"}
REDIRECTS = {">", ">>", "<", ">&", "<&"}


# -- reading the Markdown ----------------------------------------------------------------------------------


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block, in order."""
    blocks, lang, body, fence = [], None, [], None
    for line in text.splitlines():
        stripped = line.strip()
        if fence is None:
            m = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if m:
                fence, lang, body = m.group(1), m.group(2).lower(), []
        elif stripped.startswith(fence) and stripped.strip(fence[0]) == "":
            blocks.append((lang, "\n".join(body)))
            fence = None
        else:
            body.append(line)
    return blocks


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    out, fence = [], None
    for line in text.splitlines():
        stripped = line.strip()
        m = re.match(r"^(`{3,}|~{3,})", stripped)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None and stripped.startswith(fence) and stripped.strip(fence[0]) == "":
            fence = None
        elif fence is None:
            out.append(line)
    return "\n".join(out)


def inline_code(text: str) -> list[str]:
    return re.findall(r"(?<!`)`([^`\n]+)`(?!`)", prose(text))


def links(text: str) -> list[str]:
    """Targets of Markdown links and images outside code (inline code spans removed first)."""
    body = re.sub(r"`[^`\n]*`", "", prose(text))
    return re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", body)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading.strip()).lower()
    text = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(text).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = github_slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


# -- the shell commands ------------------------------------------------------------------------------------


def shell_tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def adlab_argv(tokens: list[str]) -> list[list[str]]:
    """The arguments of every `adlab` command in one shell line: split at ; && || | &, leading VAR=value
    assignments skipped, redirections dropped."""
    commands, current = [], []
    for token in [*tokens, ";"]:
        if token in CONTROL:
            commands.append(current)
            current = []
        else:
            current.append(token)
    found = []
    for words in commands:
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]
        if words[:2] in (["python", "-m"], ["python3", "-m"]):
            words = words[2:]
        if not words or Path(words[0]).name != "adlab":
            continue
        argv, skip = [], False
        for i, word in enumerate(words[1:], start=1):
            if skip:
                skip = False
            elif word in REDIRECTS:
                if argv and argv[-1].isdigit() and i >= 2 and words[i - 1] == argv[-1]:
                    argv.pop()  # 2> file: the descriptor is part of the redirection
                skip = True
            else:
                argv.append(word)
        found.append(argv)
    return found


def readme_commands() -> list[tuple[str, list[str]]]:
    """(the line as shown, its arguments) for every `adlab ...` command in the README's shell blocks."""
    found = []
    for lang, body in fenced_blocks(TEXT):
        if lang not in SHELL_BLOCKS:
            continue
        joined = re.sub(r"\\\n", " ", body)  # line continuations
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            for argv in adlab_argv(shell_tokens(line)):
                found.append((re.sub(r"\s+", " ", line.split(" #")[0]).strip(), argv))
    return found


COMMANDS = readme_commands()


def test_the_readme_shows_adlab_commands():
    assert len(COMMANDS) >= 10, COMMANDS  # the extraction found them (a broken regex finds none)
    assert {argv[0] for _, argv in COMMANDS} >= {"train", "study", "config", "report", "data"}


@pytest.mark.parametrize("line,argv", COMMANDS, ids=[line[:70] for line, _ in COMMANDS])
def test_readme_command_parses(line, argv):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None) or not {"-h", "--help", "--version"} & set(argv):
            pytest.fail(f"README command does not parse (exit {exc.code}): {line}\n{err.getvalue()}")


def test_the_extraction_handles_shell_syntax():
    block = "$ adlab train a.yaml \\\n    --out DIR   # a comment\n# adlab nonsense\nmake demo\n"
    text = re.sub(r"\\\n", " ", block)
    found = [argv for line in text.splitlines() for argv in adlab_argv(shell_tokens(line.strip().removeprefix("$ ")))]
    assert found == [["train", "a.yaml", "--out", "DIR"]]
    assert adlab_argv(shell_tokens("X=1 adlab config c.yaml > out.yaml && cd DIR")) == [["config", "c.yaml"]]
    assert adlab_argv(shell_tokens(".venv/bin/adlab report $USER/runs 2> err.txt")) == [["report", "$USER/runs"]]


# -- files the README names ----------------------------------------------------------------------------------


def repo_path(candidate: str) -> bool:
    """A path into the repository itself (not a placeholder, a URL or a folder the user makes)."""
    first = candidate.split("/", 1)[0]
    return "/" in candidate and first in REPO_FOLDERS and not re.search(r"[*?{}<>$]|\.\.\.", candidate)


def test_relative_links_exist():
    missing, bad_anchor = [], []
    for target in links(TEXT):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (README.parent / path) if path else README
        if not file.exists():
            missing.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(TEXT if not path else file.read_text("utf-8")):
            bad_anchor.append(target)
    assert not missing, f"README links to files that do not exist: {missing}"
    assert not bad_anchor, f"README links to headings that do not exist: {bad_anchor}"


def test_yaml_files_passed_to_adlab_exist():
    """Config and study files in the README's commands: in the shell blocks and in inline code (the
    assignments table)."""
    argvs = [argv for _, argv in COMMANDS]
    for span in inline_code(TEXT):
        if span.startswith("adlab "):
            argvs += adlab_argv(shell_tokens(span))
    paths = {word.split("=", 1)[-1] for argv in argvs for word in argv}
    yamls = sorted(p for p in paths if p.endswith((".yaml", ".yml")) and repo_path(p))
    assert any(p.startswith("configs/") for p in yamls) and any(p.startswith("studies/") for p in yamls)
    missing = [p for p in yamls if not (ROOT / p).is_file()]
    assert not missing, f"README passes files that do not exist to adlab: {missing}"


def test_repository_paths_in_inline_code_exist():
    spans = [span.rstrip(".,;:") for span in inline_code(TEXT) if " " not in span]
    missing = sorted({span for span in spans if repo_path(span) and not (ROOT / span).exists()})
    assert not missing, f"README names paths the repository does not hold: {missing}"


def test_example_study_file_is_the_shipped_one():
    """A yaml block that shows a study by name shows the shipped file of that name (comments aside)."""
    shown = 0
    for lang, body in fenced_blocks(TEXT):
        if lang not in ("yaml", "yml"):
            continue
        data = yaml.safe_load(body)
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            continue
        files = [
            f
            for f in (ROOT / "configs" / "studies" / f"{data['name']}.yaml", ROOT / "studies" / f"{data['name']}.yaml")
            if f.is_file()
        ]
        assert files, f"README shows a study {data['name']!r} that is not shipped"
        assert data == yaml.safe_load(files[0].read_text(encoding="utf-8")), (
            f"README's {data['name']} differs from {files[0].relative_to(ROOT)}"
        )
        shown += 1
    assert shown >= 1


# -- the Python API example ----------------------------------------------------------------------------------


def _exported_functions() -> dict[str, ast.FunctionDef]:
    """Each name adlab exports lazily, found in the source of the module `adlab.__getattr__` imports it
    from (importing it would import torch)."""
    init = Path(adlab.__file__)
    found = {}
    for node in ast.walk(ast.parse(init.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or not node.module or not node.module.startswith("adlab"):
            continue
        base = init.parent.parent / Path(*node.module.split("."))
        for source in (base.with_suffix(".py"), base / "__init__.py"):
            if not source.is_file():
                continue
            defs = {
                d.name: d
                for d in ast.parse(source.read_text(encoding="utf-8")).body
                if isinstance(d, (ast.FunctionDef, ast.AsyncFunctionDef))
            }
            for alias in node.names:
                if alias.name in defs:
                    found[alias.asname or alias.name] = defs[alias.name]
    return found


def _signature(name: str, defs: dict[str, ast.FunctionDef]) -> inspect.Signature:
    fn = defs.get(name)
    if fn is None:  # not a plain function in its module: import it after all
        return inspect.signature(getattr(adlab, name))
    args = copy.deepcopy(fn.args)
    for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
        if arg is not None:
            arg.annotation = None
    args.defaults = [ast.Constant(None) for _ in args.defaults]
    args.kw_defaults = [None if d is None else ast.Constant(None) for d in args.kw_defaults]
    namespace: dict = {}
    exec(f"def stub({ast.unparse(args)}): pass", namespace)  # the parameters alone, no annotations or defaults
    return inspect.signature(namespace["stub"])


def test_python_api_example_calls_what_adlab_exports():
    blocks = [body for lang, body in fenced_blocks(TEXT) if lang == "python"]
    assert blocks, "README has no Python example"
    defs = _exported_functions()
    called = set()
    for body in blocks:
        for node in ast.walk(ast.parse(body)):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "adlab"
            ):
                continue
            name = node.func.attr
            assert name in adlab.__all__, f"README calls adlab.{name}, which adlab does not export"
            called.add(name)
            if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
                continue
            try:
                _signature(name, defs).bind(*node.args, **{k.arg: None for k in node.keywords})
            except TypeError as exc:
                pytest.fail(f"README's call {ast.unparse(node)} does not match adlab.{name}: {exc}")
    exported = {n for n in adlab.__all__ if not n.startswith("__")}
    assert called == exported, f"README's Python example leaves out {sorted(exported - called)}"
