"""Griffe extension for the API reference: the docstrings' doctest conventions, as Markdown.

The docstrings follow Keras' conventions, which sybil executes (``conftest.py``): an
``Example:`` line followed by unindented ``>>>`` lines, reST roles (``:func:`x```) and
reST simple tables. Rendered as Google-style Markdown, the ``>>>`` lines would read as
block quotes. This extension rewrites each docstring (not the source) before
mkdocstrings renders it: ``>>>`` runs become ``pycon`` code blocks (their ``# doctest:``
flags dropped), an ``Example:`` title a bold line, a role its code span and a simple
table a text block.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|obj|exc|py:\w+):`~?([^`]+)`")
_FLAG = re.compile(r"\s*#\s*doctest:.*$")
_RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")
_SECTION = re.compile(r"^(\s*)(Examples?):\s*$")


def markdown_docstring(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    fence = False
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = not fence
            out.append(line)
            i += 1
            continue
        if fence:
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        section = _SECTION.match(line)
        if section and not _indented_after(lines, i, len(indent)):
            out += [f"{indent}**{section.group(2)}:**", ""]
            i += 1
            continue
        if stripped.startswith(">>>"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(_FLAG.sub("", lines[i]))
                i += 1
            if out and out[-1].strip():
                out.append("")
            out += [f"{indent}```pycon", *block, f"{indent}```"]
            continue
        if _RULE.match(line):
            # A reST simple table ends at a rule followed by a blank line (or the end).
            block = [line]
            i += 1
            while i < len(lines):
                block.append(lines[i])
                i += 1
                if _RULE.match(block[-1]) and (i == len(lines) or not lines[i].strip()):
                    break
            out += [f"{indent}```text", *block, f"{indent}```"]
            continue
        out.append(_ROLE.sub(r"`\1`", line))
        i += 1
    return "\n".join(out)


def _indented_after(lines: list[str], i: int, indent: int) -> bool:
    """Whether the first non-blank line after ``lines[i]`` is indented past ``indent``."""
    for line in lines[i + 1:]:
        if line.strip():
            return len(line) - len(line.lstrip()) > indent
    return False


class DoctestMarkdown(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
