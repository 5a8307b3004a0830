"""MkDocs hook: serve the pictures that the benchmarks write under ``benchmarks/results/``.

The pages show them as ``img/results/<name>.png``; they are not copied into ``docs/``, so
a rerun of a benchmark updates the site without a second copy to keep in sync.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def on_files(files: Files, config) -> Files:
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"img/results/{png.name}", abs_src_path=str(png)))
    return files
