"""python -m detection: help from the argument tables, parsing, exit codes, missing extra."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import warnings
from dataclasses import fields
from pathlib import Path

import pytest

from detection import cli
from detection.config import KEYS, SmoothingConfig
from detection.data import make_subset

REPO = Path(__file__).resolve().parents[2]
HINT = 'pip install "keras-ls[detection]"'

# Installed in a fresh interpreter: makes the named top-level modules unimportable,
# as on a machine without the `detection` extra.
BLOCKER = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Block())
"""


def _python(code: str, *, blocked: tuple[str, ...] = (), cwd: Path = REPO):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("KERAS_LS_OFFLINE", None)
    code = BLOCKER.format(blocked=set(blocked)) + code if blocked else code
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def _cli(*argv: str, blocked: tuple[str, ...] = ()):
    """``python -m detection *argv`` in a fresh interpreter (with optional blocked modules)."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['detection', *{list(argv)!r}]\n"
        "runpy.run_module('detection', run_name='__main__', alter_sys=True)\n"
    )
    return _python(code, blocked=blocked)


@pytest.mark.parametrize(
    "argv", [["--help"], ["-h"], ["help"], [], ["train", "--help"], ["subset", "-h"]]
)
def test_help_exits_zero_with_usage(argv):
    r = subprocess.run(
        [sys.executable, "-m", "detection", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("usage: python -m detection"), r.stdout[:200]
    command = argv[0] if argv and argv[0] in cli.COMMANDS else None
    if command is None:
        assert "train" in r.stdout and "subset" in r.stdout and "--help" in r.stdout


def test_train_help_lists_every_key_default_and_ultralytics_pass_through():
    text = cli.train_help()
    defaults = {f.name: f.default for f in fields(SmoothingConfig)}
    for key in KEYS:  # the four smoothing keys, with SmoothingConfig's defaults
        shown = "none" if defaults[key] is None else str(defaults[key])
        assert f"  {key}={shown} " in text
    for head in ("  model=... ", "  task=none ", "  offline=false "):
        assert head in text
    assert "(required)" in text
    for choice in ("constant", "linear", "cosine", "step", "uniform", "yolov5"):
        assert choice in text
    # How Ultralytics' own keys pass through, and where to find them all.
    assert "epochs=3 imgsz=320" in text and "device=cpu" in text
    assert "`yolo cfg`" in text and "docs.ultralytics.com/usage/cfg" in text
    assert "parsed as `yolo train` parses it" in text


def test_train_help_names_every_task():
    from detection.trainer import TRAINERS

    task_help = next(a.help for a in cli.TRAIN_ARGS if a.name == "task")
    assert [t for t in TRAINERS if t not in task_help] == []


def test_subset_table_is_make_subset_signature():
    params = inspect.signature(make_subset).parameters
    args = cli._subset_args()
    assert [a.name for a in args if a.name != "offline"] == list(params)
    text = cli.subset_help()
    for arg in args:
        default = params[arg.name].default if arg.name in params else False
        if default is inspect.Parameter.empty:
            assert f"  {arg.name}=... " in text and arg.default is cli.REQUIRED
        else:
            # CLI spelling: none, true/false, numbers as Python prints them.
            shown = "none" if default is None else str(default)
            shown = shown.lower() if isinstance(default, bool) else shown
            assert f"  {arg.name}={shown} " in text, arg.name
            assert arg.default == default
    assert "background" in text and "data.yaml" in text


def test_help_needs_neither_ultralytics_nor_torch():
    code = (
        "from detection.cli import main\n"
        "assert main(['train', '--help']) == 0\n"
        "assert main(['--help']) == 0\n"
        "import sys\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'ultralytics', 'tensorflow', 'keras')]\n"
    )
    r = _python(code, blocked=("ultralytics", "torch"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "label_smoothing_schedule=constant" in r.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "epochs=3"], "train needs model=..."),
        (["train", "model=yolo11n.yaml", "bare"], "arguments must be key=value; received 'bare'"),
        (["train", "model=yolo11n.yaml", "epochs="], "`epochs` has no value"),
        (["train", "model=yolo11n.yaml", "offline=maybe"], "`offline` must be true or false"),
        (["subset", "src=a.yaml", "classes=dog"], "subset needs out=..."),
        (["subset", "src=a.yaml", "classes=dog", "out=o", "foo=1"], "unknown subset argument"),
        (
            ["subset", "src=a.yaml", "classes=dog", "out=o", "max_images=ten"],
            "`max_images` must be an integer or none; received 'ten'",
        ),
        (
            ["subset", "src=a.yaml", "classes=dog", "out=o", "keep_background=maybe"],
            "`keep_background` must be true or false; received 'maybe'",
        ),
        (["bogus"], "unknown command 'bogus'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_train_keys_are_parsed_and_checked_by_ultralytics(subset3, tmp_path, capsys):
    # Unknown key: Ultralytics' own check (closest valid key), before any run folder.
    project = tmp_path / "runs"
    argv = ["train", "model=yolo11n.yaml", f"data={subset3}", f"project={project}"]
    assert cli.main([*argv, "epochz=1"]) == 2
    assert "'epochz' is not a valid YOLO argument" in capsys.readouterr().err
    assert cli.main([*argv, "task=segmnt"]) == 2
    assert "`task` must be one of detect, segment, pose, obb, classify" in capsys.readouterr().err
    assert not project.exists()


def test_values_parsed_like_yolo_train():
    from ultralytics.cfg import parse_key_value_pair

    # What cmd_train hands to Ultralytics: exactly `yolo train`'s reading of each pair.
    assert dict(
        parse_key_value_pair(p) for p in ("epochs=3", "device=0,1", "name=007", "plots=False")
    ) == {"epochs": 3, "device": (0, 1), "name": "007", "plots": False}


@pytest.mark.parametrize("blocked", [("ultralytics",), ("torch",)])
def test_missing_extra_says_what_to_install(blocked):
    code = (
        "import detection, detection.config\n"  # fine without the extra
        "try:\n"
        "    from detection import SmoothedDetectionTrainer\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, '|', e)\n"
    )
    r = _python(code, blocked=blocked)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("MissingExtraError | detection.SmoothedDetectionTrainer needs")
    assert HINT in r.stdout and repr(blocked[0]) in r.stdout

    r = _cli("train", "model=yolo11n.yaml", "data=data.yaml", blocked=blocked)
    assert r.returncode == 1
    assert r.stderr.startswith("error: python -m detection train needs") and HINT in r.stderr


def test_exports_are_what_users_call_and_no_export_is_a_submodule():
    import pkgutil

    import detection

    assert detection.__all__ == sorted(
        [
            "SmoothedDetectionTrainer",
            "SmoothedSegmentationTrainer",
            "SmoothedPoseTrainer",
            "SmoothedOBBTrainer",
            "SmoothedClassificationTrainer",
            "offline",
            "make_subset",
            "SmoothingConfig",
            "patch_detection_criterion",
            "smooth_class_targets",
        ]
    )
    # A submodule, once imported, becomes an attribute of the package: an exported name
    # equal to a submodule's would be replaced by the module (detection.offline in 0.1).
    submodules = {m.name for m in pkgutil.iter_modules(detection.__path__)}
    assert not submodules & set(detection.__all__)
    # 0.2.0 is the first public version: the 0.1 top-level names are gone, no shims.
    for name in ("is_offline", "resolve_model", "check_detection_data", "MODES", "is_patched"):
        with pytest.raises(AttributeError, match=name):
            getattr(detection, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert detection.make_subset is make_subset  # exported names do not warn
    import detection.network
    import detection.targets

    assert not hasattr(detection.targets, "is_patched")
    assert not hasattr(detection.network, "ENV_VAR")
    assert detection.offline is detection.network.offline


@pytest.mark.parametrize(
    "code",
    [
        "import detection\nfrom detection.network import is_offline\ndetection.offline(cfg)",
        "from detection.network import is_offline\nimport detection\ndetection.offline(cfg)",
        "import detection\ndetection.offline(cfg)\nimport detection.network\n"
        "from detection.network import is_offline\ndetection.offline(cfg)",
        "import detection.network as n\nimport detection\nfrom detection import offline\n"
        "offline(cfg)\nis_offline = n.is_offline",
    ],
    ids=["package-first", "module-first", "call-import-call", "from-import"],
)
def test_offline_is_the_function_in_every_import_order(code, tmp_path):
    cfg = tmp_path / "cfg"
    r = _python(f"cfg = {str(cfg)!r}\n{code}\nassert is_offline()\nprint('ok')\n")
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
