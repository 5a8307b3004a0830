"""Documentation that is executed: sybil runs every Python example of the docs and docstrings.

- Markdown (``README.md``, the site's pages ``docs/*.md``, ``examples/README.md``,
  ``saved_models/README.md``, ``detection/README.md``): every ```` ```python ```` block runs
  as written, in order, one namespace per file, from the repository root. A block may be
  skipped only with sybil's ``<!-- skip: next -->`` marker, where the text names the tested
  script that runs the same thing.
- Docstrings of ``keras_ls`` and ``detection`` modules: ``>>>`` examples and ```` ```python ````
  blocks, with ``np``, ``keras`` and ``keras_ls`` imported beforehand (the convention of
  Keras' own docstrings).

``scripts/test.sh`` passes these paths to pytest: the Keras-side files in the Keras process,
``detection/`` in the YOLO process (a YOLO process never loads TensorFlow). ``docs/detection.md``
only includes ``detection/README.md`` (a snippet line, not code), so the YOLO examples run once,
in the YOLO process.
"""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from sybil import Sybil
from sybil.document import PythonDocStringDocument
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser
from sybil.parsers.rest import DocTestParser
from sybil.sybil import SybilCollection

ROOT = Path(__file__).resolve().parent
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
SAVED_MODEL = ROOT / "saved_models" / "fashion_mnist_smoothed.keras"


def _docstring_namespace(namespace: dict) -> None:
    import keras
    import numpy as np

    import keras_ls

    namespace.update(np=np, keras=keras, keras_ls=keras_ls)


def _markdown_setup(namespace: dict) -> None:
    os.chdir(ROOT)  # the READMEs' paths are relative to the repository root


def _saved_models_setup(namespace: dict) -> None:
    """``saved_models/README.md`` loads what the demo writes: write it (tiny) if missing."""
    _markdown_setup(namespace)
    if SAVED_MODEL.exists():
        return
    tmp = ROOT / "runs" / "doc_tests"
    args = ["--epochs", "1", "--n-train", "512", "--n-test", "256"]
    args += ["--plot", str(tmp / "reliability.png"), "--log-dir", str(tmp / "logs")]
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "image_classification.py"), *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )


def _skip_without_coco128(parser: Callable[..., Iterable]) -> Callable[..., Iterable]:
    """``parser`` whose examples skip (naming ``KERAS_LS_COCO128``) where COCO128 is absent.

    The examples find COCO128 through ``detection.data.find_coco128``, which raises
    ``Coco128NotFound`` with the reason; a clone without the data skips them, never fails.
    """

    def parse(document):
        for region in parser(document):
            inner = region.evaluator

            def evaluator(example, inner=inner):
                try:
                    return inner(example)
                except FileNotFoundError as e:
                    if type(e).__name__ != "Coco128NotFound":
                        raise
                    pytest.skip(str(e))

            region.evaluator = evaluator
            yield region

    return parse


markdown = Sybil(
    parsers=[PythonCodeBlockParser(doctest_optionflags=FLAGS), SkipParser()],
    patterns=["README.md", "examples/README.md"],
    # Path.match matches from the right: "README.md" would take these two as well, which
    # have their own Sybil (setup, process) below.
    excludes=["detection/README.md", "saved_models/README.md"],
    setup=_markdown_setup,
    name="markdown",
)
docs_markdown = Sybil(
    parsers=[PythonCodeBlockParser(doctest_optionflags=FLAGS), SkipParser()],
    patterns=["docs/*.md"],
    setup=_markdown_setup,
    name="docs-markdown",
)
saved_models = Sybil(
    parsers=[PythonCodeBlockParser(doctest_optionflags=FLAGS), SkipParser()],
    patterns=["saved_models/README.md"],
    setup=_saved_models_setup,
    name="saved-models",
)
detection_markdown = Sybil(
    parsers=[
        _skip_without_coco128(PythonCodeBlockParser(doctest_optionflags=FLAGS)),
        SkipParser(),
    ],
    patterns=["detection/README.md"],
    setup=_markdown_setup,
    name="detection-markdown",
)
docstrings = Sybil(
    parsers=[DocTestParser(optionflags=FLAGS), PythonCodeBlockParser(), SkipParser()],
    patterns=["keras_ls/*.py", "keras_ls/**/*.py"],
    document_types={".py": PythonDocStringDocument},
    setup=_docstring_namespace,
    name="docstrings",
)
detection_docstrings = Sybil(
    parsers=[
        DocTestParser(optionflags=FLAGS),
        _skip_without_coco128(PythonCodeBlockParser()),
        SkipParser(),
    ],
    patterns=["detection/*.py"],
    document_types={".py": PythonDocStringDocument},
    setup=_markdown_setup,
    name="detection-docstrings",
)

pytest_collect_file = SybilCollection(
    [markdown, docs_markdown, saved_models, detection_markdown, docstrings, detection_docstrings]
).pytest()
