"""The user docs stay true: README snippets run, relative links resolve, the README stays a short guide.

A Python block in README.md runs when the line before its fence is ``<!-- test: run -->``. Each runs in
its own subprocess with this interpreter and the repository on PYTHONPATH (the compiled extension is
not needed: the ops fall back to the reference backend). ``zoomkern ...`` shell commands are not run here.
"""

from __future__ import annotations

import os
import re
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
    assert n <= MAX_README_LINES, f"README.md has {n} lines; keep it <= {MAX_README_LINES} (move detail to docs/)"


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
