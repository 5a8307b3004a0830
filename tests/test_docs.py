"""The documentation site builds offline without a warning, and the README stays short.

The site's code blocks run through sybil (``conftest.py``: ``docs/*.md``); this file builds
the site itself (``mkdocs build --strict``: a warning -- a broken link or anchor, a page
missing from the nav, a docstring griffe cannot read -- fails the build) and checks the
README's promises.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_site_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        # Material prints a notice about MkDocs 2.0 unless told not to; no network is used.
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-6000:]
    # The API reference is generated from the docstrings, examples rendered as code.
    losses = (site / "api" / "losses" / "index.html").read_text()
    assert "SmoothedCE" in losses and "label_smoothing" in losses
    # `>>>` prompts highlighted in code blocks (scripts/docs_griffe.py), not block quotes.
    assert '<span class="gp">&gt;&gt;&gt; </span>' in losses and "<blockquote>" not in losses
    for page in ("schedules", "callbacks", "metrics", "calibration", "smoothing", "noise",
                 "detection"):
        assert (site / "api" / page / "index.html").stat().st_size > 10_000, page
    assert "SmoothedDetectionTrainer" in (site / "api" / "detection" / "index.html").read_text()
    # The pictures the pages show are in the site, the benchmarks' ones included.
    assert (site / "img" / "fashion_mnist_reliability.png").exists()
    assert (site / "img" / "results" / "calibration_study.png").exists()
    # The detection page includes the method card.
    assert "What is smoothed, and what is not" in (site / "detection" / "index.html").read_text()


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= 150, len(lines)
    first_code = text.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert first_code[0].startswith("bash scripts/demo.sh"), first_code
    assert first_code[1].startswith("bash scripts/test.sh"), first_code
    # Nothing but the title comes before the two commands.
    assert text.index("```bash") < text.index("\n", text.index("# ")) + 3


def test_readme_links_and_pictures_exist() -> None:
    text = README.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert local, "the README links to the site's pages"
    for target in local:
        assert (ROOT / target).exists(), target


def test_readme_states_cpu_facts_and_licence() -> None:
    text = README.read_text()
    yolo = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "YOLO(" in b)
    # Runs on the machine a newcomer has; device=0 stops on a CPU machine.
    assert 'device="cpu"' in yolo and not re.search(r"device\s*=\s*0\s*[,)]", yolo)
    assert "TF_CPP_MIN_LOG_LEVEL=3" in text
    assert "AGPL-3.0" in text and "Apache-2.0" in text
    assert "mkdocs serve" in text


def test_docstrings_rendered_as_markdown() -> None:
    """scripts/docs_griffe.py: doctest runs become code blocks, reST idioms Markdown."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from docs_griffe import markdown_docstring
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    doc = (
        "See :func:`mix` and :class:`~keras_ls.SmoothedCE`.\n\n"
        "=====  =====\n``a``    ``b``\n=====  =====\n\nAfter.\n\n"
        "Example:\n\n>>> f(1)  # doctest: +ELLIPSIS\n2\n\nText.\n\n"
        "Args:\n    x: A number.\n\n"
        "```python\n>>> not a doctest: inside a fence\n```"
    )
    assert markdown_docstring(doc).splitlines() == [
        "See `mix` and `keras_ls.SmoothedCE`.",
        "",
        "```text", "=====  =====", "``a``    ``b``", "=====  =====", "```",
        "",
        "After.",
        "",
        "**Example:**",
        "",
        "",
        "```pycon", ">>> f(1)", "2", "```",
        "",
        "Text.",
        "",
        "Args:",
        "    x: A number.",
        "",
        "```python", ">>> not a doctest: inside a fence", "```",
    ]
