"""The user docs stay true: README snippets run, relative links resolve, the README stays a short guide.

A Python block in README.md runs when the line before its fence is ``<!-- test: run -->``. Each runs in
its own subprocess with this interpreter and the repository on PYTHONPATH (the compiled extension is
not needed: the ops fall back to the reference backend). Every ``zoomkern ...`` line of a bash block in
the README and the guides is parsed by the real command without doing its work (``--print-config`` for
``train``, ``--help`` for the others), and every ``make TARGET`` the docs name exists in the Makefile.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted([README, *(ROOT / "docs").rglob("*.md"), *(ROOT / "benchmarks").glob("*.md")])
RUN_MARK = "<!-- test: run -->"
MAX_README_LINES = 250

FENCE = re.compile(r"^```")
# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _blocks(text: str) -> list[tuple[int, str, str, str]]:
    """(line number, info string, body, the line before the fence) of every fenced block."""
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            start, info = i, lines[i][3:].strip()
            j = i + 1
            while j < len(lines) and not FENCE.match(lines[j]):
                j += 1
            before = lines[start - 1].strip() if start else ""
            out.append((start + 1, info, "\n".join(lines[start + 1 : j]), before))
            i = j + 1
        else:
            i += 1
    return out


def _prose(text: str) -> str:
    """The text outside fenced blocks (links inside code are examples, not links)."""
    keep, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            keep.append(line)
    return "\n".join(keep)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    h = re.sub(r"[`*_]", "", heading.strip().lower())
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


def _anchors(text: str) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", _prose(text), re.M)}


RUNNABLE = [
    pytest.param(body, id=f"README.md:{line}")
    for line, info, body, before in _blocks(README.read_text(encoding="utf-8"))
    if info == "python" and before == RUN_MARK
]


def test_readme_has_runnable_blocks():
    assert RUNNABLE, f"README.md marks no python block with {RUN_MARK!r}"


@pytest.mark.parametrize("code", RUNNABLE)
def test_readme_python_block_runs(code, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, f"README block failed:\n{code}\n--- stderr ---\n{r.stderr[-3000:]}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    text = doc.read_text(encoding="utf-8")
    bad = []
    for target in LINK.findall(_prose(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            bad.append(f"{target}: no file {dest.relative_to(ROOT) if ROOT in dest.parents else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text(encoding="utf-8")):
            bad.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not bad, f"{doc.relative_to(ROOT)}: broken links:\n" + "\n".join(bad)


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, (
        f"README.md has {n} lines; keep it <= {MAX_README_LINES} (move detail to docs/)"
    )


@pytest.mark.parametrize("doc", [README, *sorted((ROOT / "docs").rglob("*.md"))], ids=lambda p: p.name)
def test_user_docs_have_no_session_notes(doc):
    """Users read these: no issue numbers, no paths of one machine, no times of day."""
    text = doc.read_text(encoding="utf-8")
    found = []
    for pattern, what in [
        (r"\bissues?[ -]#?\d+", "an issue number"),
        (r"(?<![\w.])/(work|root)/", "an absolute path of the development machine"),
        (r"\bUTC\b", "a time of day"),
    ]:
        found += [f"{what}: {m.group(0)!r}" for m in re.finditer(pattern, text, re.I)]
    assert not found, f"{doc.relative_to(ROOT)}: " + "; ".join(found)


# --- the shell commands of the user docs -------------------------------------------------------------

COMMAND_DOCS = [README, ROOT / "docs" / "install.md", *sorted((ROOT / "docs" / "guides").glob("*.md"))]
# Files a command names that a clean clone cannot hold, as the test provides them (the user's own file).
PROVIDED = {"my.yaml": "preset: demo\n"}


def _shell_lines(doc: Path) -> list[tuple[int, str]]:
    """(line number, command) of every line of the doc's bash blocks, continuations joined."""
    out = []
    for line, info, body, _ in _blocks(doc.read_text(encoding="utf-8")):
        if info not in ("bash", "sh", "shell"):
            continue
        pending, first = "", 0
        for i, text in enumerate(body.splitlines(), start=line + 1):
            first = first or i
            if text.rstrip().endswith("\\"):
                pending += text.rstrip()[:-1] + " "
                continue
            out.append((first, pending + text))
            pending, first = "", 0
    return out


def _zoomkern_argv(command: str) -> tuple[dict, list[str]] | None:
    """(environment assignments, arguments after ``zoomkern``) of a zoomkern command line, else None.

    ``zoomkern``, ``.venv/bin/zoomkern``, ``python -m zoomkern`` and ``torchrun ... -m zoomkern`` count (the
    launcher's own flags are not checked); a ``# ...`` comment is not part of the command."""
    words = shlex.split(command, comments=True)
    env = {}
    while words and re.fullmatch(r"[A-Za-z_]\w*=\S*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    for i, w in enumerate(words):
        if (i == 0 and Path(w).name == "zoomkern") or (w == "zoomkern" and i and words[i - 1] == "-m"):
            return env, words[i + 1 :]
    return None


COMMANDS = [
    pytest.param(doc, argv, env, id=f"{doc.relative_to(ROOT)}:{line}")
    for doc in COMMAND_DOCS
    for line, command in _shell_lines(doc)
    if (parsed := _zoomkern_argv(command))
    for env, argv in [parsed]
]


def _zoomkern() -> list[str]:
    """The console script beside this interpreter (what ``make build`` installs), else ``python -m``."""
    script = Path(sys.executable).with_name("zoomkern")
    return [str(script)] if script.exists() else [sys.executable, "-m", "zoomkern"]


def test_docs_show_zoomkern_commands():
    assert len(COMMANDS) >= 10, [p.id for p in COMMANDS]


@functools.cache
def _train_help() -> str:
    r = subprocess.run(
        [*_zoomkern(), "train", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("doc, argv, env", COMMANDS)
def test_doc_command_parses(doc, argv, env, tmp_path):
    """The command line as shown parses: flags exist under their current names, values convert.

    ``train`` resolves the whole configuration (``--print-config``: unknown flags and bad values fail,
    nothing is trained or written). The others would read checkpoints (``RUN/checkpoint.pt``) or write
    data sets a clean clone has no files or room for, so the whole line runs with ``--help`` appended:
    argparse converts the values before it, then prints the help and exits. For every command, each flag
    the line uses must be in its ``--help`` as spelled (no abbreviations; deprecated spellings warn)."""
    argv = [str(tmp_path / a) if a in PROVIDED else a for a in argv]
    for name, text in PROVIDED.items():
        (tmp_path / name).write_text(text)
    assert argv and not argv[0].startswith("-"), f"no command in {argv}"
    extra = ["--print-config"] if argv[0] == "train" else ["--help"]
    if "--print-config" in argv:
        extra = []
    run_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="always::FutureWarning", **env)
    r = subprocess.run(
        [*_zoomkern(), *argv, *extra], cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=300
    )
    shown = "zoomkern " + shlex.join(argv)
    assert r.returncode == 0, f"{doc.name}: `{shown}` failed:\n{r.stderr[-3000:]}"
    assert "deprecated" not in r.stderr, f"{doc.name}: `{shown}` uses an old spelling:\n{r.stderr}"
    if argv[0] == "train":
        assert "dataset:" in r.stdout, r.stdout[-2000:]
    shown_help = _train_help() if argv[0] == "train" else r.stdout  # no abbreviated flags either
    flags = {a.split("=")[0] for a in argv if re.match(r"--[a-z]", a)}
    unknown = sorted(f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", shown_help))
    assert not unknown, f"{doc.name}: `{shown}`: {unknown} not in `zoomkern {argv[0]} --help`"


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_make_targets_the_docs_name_exist(doc):
    text = doc.read_text(encoding="utf-8")
    named = set(re.findall(r"`make ([A-Za-z][\w-]*)", text))  # inline code: `make demo`
    for _, command in _shell_lines(doc):
        words = shlex.split(command, comments=True)
        if words[:1] == ["make"] and len(words) > 1 and not words[1].startswith("-"):
            named.add(words[1])
    missing = sorted(named - _make_targets())
    assert not missing, f"{doc.relative_to(ROOT)}: no Makefile target {missing}"


def test_install_extras_table_matches_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {re.split(r"[<>=!~\[ ]", d)[0].lower() for d in project["dependencies"]}
    lines = (ROOT / "docs" / "install.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("| extra | what it adds |") + 2
    rows = {}
    for line in lines[start:]:
        if not line.startswith("| `"):
            break
        name, text = re.match(r"\| `([\w-]+)` \| (.*) \|$", line).groups()
        rows[name] = text.lower()
    extras = project["optional-dependencies"]
    assert set(rows) == set(extras), "docs/install.md's extras table against pyproject.toml"
    for name, deps in extras.items():
        for dep in deps:
            m = re.fullmatch(r"zoomkern\[(.+)\]", dep)
            wanted = m.group(1).split(",") if m else [re.split(r"[<>=!~\[ ]", dep)[0].lower()]
            missing = [w for w in wanted if w.lower() not in core and w.lower() not in rows[name]]
            assert not missing, f"docs/install.md: extra {name!r} does not name {missing}"
