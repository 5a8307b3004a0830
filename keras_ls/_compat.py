"""Every private hook keras-ls uses, in one place.

Each hook names the versions it was checked against and the public API it would use if one
existed. Nothing else in ``keras_ls/`` or ``detection/`` imports ``keras.src``,
``tensorflow.python`` or ``torch._C``, walks the stack, installs import hooks, or reads a
private attribute of another library's object. Keras, TensorFlow, JAX and torch are imported
inside the functions: importing this module imports none of them (``keras_ls/__init__.py``
uses it before Keras is loaded).

Checked against: Keras 3.10 and 3.15.1, TensorFlow 2.20, JAX 0.10.2, torch 2.14.1.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from typing import Any

# -- Keras -------------------------------------------------------------------------------------


def get_keras_mask(x: Any) -> Any:
    """The Keras mask carried by a tensor, or None.

    ``keras.src.backend.get_keras_mask`` (Keras >= 3.6). Public alternative: none; Keras
    propagates masks through this attribute between layers and losses.
    """
    from keras.src.backend import get_keras_mask as get

    return get(x)


def set_keras_mask(x: Any, mask: Any) -> None:
    """Attach a Keras mask to a loss tensor (Keras then averages over the unmasked positions).

    ``keras.src.backend.set_keras_mask`` (Keras >= 3.6). Public alternative: none.
    """
    from keras.src.backend import set_keras_mask as set_mask

    set_mask(x, mask)


def reduce_weighted_values(
    values: Any, sample_weight: Any, mask: Any, reduction: str | None, dtype: Any
) -> Any:
    """Keras' masked, weighted loss reduction, as ``keras.losses.Loss.__call__`` does it.

    ``keras.src.losses.loss.reduce_weighted_values`` (Keras 3.10-3.15). Public alternative:
    ``keras.losses.Loss.__call__``, which we cannot call because it casts integer labels to
    the loss dtype (labels above 256 round under bfloat16).
    """
    from keras.src.losses.loss import reduce_weighted_values as reduce

    return reduce(
        values, sample_weight=sample_weight, mask=mask, reduction=reduction, dtype=dtype
    )


def stateless_scope() -> Any:
    """The active ``keras.StatelessScope`` (Keras' JAX trainers run every step in one), or None.

    ``keras.src.backend.common.stateless_scope.get_stateless_scope`` (Keras 3.0-3.15).
    Public alternative: none (``keras.StatelessScope`` is public, the getter is not).
    """
    from keras.src.backend.common.stateless_scope import get_stateless_scope

    return get_stateless_scope()


def in_symbolic_scope() -> bool:
    """True while Keras computes output shapes (``compute_output_spec``: no real step).

    ``keras.src.backend.common.symbolic_scope.in_symbolic_scope`` (Keras 3.3-3.15). Public
    alternative: none.
    """
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope as inside

    return inside()


def track_metric(model: Any, metric: Any) -> None:
    """Make ``metric``'s variables part of ``model``'s state (threaded through its step).

    Appends to ``model._metrics``, the list Keras' layer tracker fills when a metric is
    assigned as an attribute (Keras 3.0-3.15). Public alternative: ``model.some_name =
    metric`` before the model is built; on a built model the tracker is locked.
    """
    model._metrics.append(metric)


def compiled_user_metrics(model: Any) -> list:
    """The metric objects given to ``model.compile`` (``metrics`` and ``weighted_metrics``).

    Keras adds them to ``model.metrics`` only when it builds its compiled-metrics container
    (lazily, at the first traced step on a single device); before that they are in
    ``model._compile_metrics._user_metrics`` (Keras 3.0-3.15). Public alternative: none.
    """
    import keras

    compiled = getattr(model, "_compile_metrics", None)
    found = []
    for user in ("_user_metrics", "_user_weighted_metrics"):
        for metric in keras.tree.flatten(getattr(compiled, user, None) or []):
            if isinstance(metric, keras.metrics.Metric):
                found.append(metric)
    return found


# -- TensorFlow --------------------------------------------------------------------------------


def tf_in_xla_context(default: bool) -> bool:
    """True while tracing inside ``jit_compile=True`` (Keras' or the user's).

    ``tensorflow.python.ops.control_flow_util.GraphOrParentsInXlaContext`` (TF 2.16-2.20),
    the check ``tf.function`` makes itself. Public alternative: none. Where it has moved,
    ``default`` answers: the caller's code path that works in both cases.
    """
    try:
        import tensorflow as tf
        from tensorflow.python.ops import control_flow_util

        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except Exception:  # noqa: BLE001 - private API moved
        return default


def tf_recording(tensors: list) -> bool:
    """Whether a gradient tape records these tensors.

    ``tensorflow.python.eager.record.should_record_backprop`` (TF 2.16-2.21), TF's own check.
    Public alternative: none. Where it has moved, True: the caller computes the gradients in
    any case (correct, some work more).
    """
    try:
        from tensorflow.python.eager import record

        return bool(record.should_record_backprop(tensors))
    except Exception:  # noqa: BLE001 - private API moved
        return True


# -- torch -------------------------------------------------------------------------------------


def torch_backward_frees_graph() -> bool:
    """True when the running backward pass will free its graph (``retain_graph=False``).

    ``torch._C._autograd._get_current_graph_task_keep_graph`` (torch 2.4-2.14), the check
    aot_autograd makes before freeing saved tensors. Public alternative: none. If it has
    moved, False: the caller keeps its saved tensors (correct, one copy more).
    """
    import torch

    if torch.compiler.is_compiling():
        return False
    try:
        return not torch._C._autograd._get_current_graph_task_keep_graph()
    except (AttributeError, RuntimeError):  # private API moved: be safe
        return False


def torch_func_wrapped(x: Any) -> bool:
    """True for a tensor wrapped by a ``torch.func`` transform (``grad``, ``vmap``...).

    ``torch._C._functorch.is_functorch_wrapped_tensor`` (torch 2.0-2.14). Public alternative:
    none. Where it has moved, False (the caller treats the value as concrete).
    """
    import torch

    try:
        return bool(torch._C._functorch.is_functorch_wrapped_tensor(x))
    except AttributeError:  # private API moved
        return False


# -- Python import system ----------------------------------------------------------------------


class RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """One-shot import hook: run ``register`` right after ``import keras`` finishes.

    ``keras_ls`` must not import Keras itself (``keras_ls.smoothing``/``schedules`` serve the
    YOLO adapter without TensorFlow), yet ``keras.saving.load_model`` needs the keras-ls
    classes registered in the order ``import keras_ls; import keras; load_model(...)``.
    Public alternative: an entry point Keras would read at import; none exists (Keras 3.15).

    It only answers for the name ``keras``, removes itself at once, and wraps the loader's
    ``exec_module``; ``busy()`` true means one of our own modules triggered the import and
    will register everything itself when it finishes.
    """

    def __init__(self, register: Callable[[], None], busy: Callable[[], bool]):
        self.register, self.busy = register, busy

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "keras":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # one shot, and no recursion below
        spec = importlib.util.find_spec("keras")
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_register(module: Any) -> None:
            exec_module(module)
            if not self.busy():
                self.register()

        loader.exec_module = exec_then_register
        return spec

    @classmethod
    def install(cls, register: Callable[[], None], busy: Callable[[], bool]) -> None:
        if not any(isinstance(f, cls) for f in sys.meta_path):
            sys.meta_path.insert(0, cls(register, busy))


def module_initializing(module: Any) -> bool:
    """True while ``module`` is executing its import (``__spec__._initializing``, CPython).

    Public alternative: none (importlib sets the flag; Python 3.10-3.13).
    """
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


__all__ = [
    "RegisterAfterKeras",
    "compiled_user_metrics",
    "get_keras_mask",
    "in_symbolic_scope",
    "module_initializing",
    "reduce_weighted_values",
    "set_keras_mask",
    "stateless_scope",
    "tf_in_xla_context",
    "tf_recording",
    "torch_backward_frees_graph",
    "torch_func_wrapped",
    "track_metric",
]
