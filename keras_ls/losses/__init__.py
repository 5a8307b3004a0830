"""Label-smoothed Keras losses: thin classes over public functional losses.

Each class holds its configuration and its schedulable hyperparameters (see
``SchedulableLoss``); its ``call`` is the functional loss of the same family, which custom
training loops can call directly and which returns the per-position loss as Keras'
functional losses do. Every loss reads ``(y_true, y_pred)`` through one label path
(``keras_ls/losses/_labels.py``: integer labels vs one-hot/soft targets, ``ignore_class``,
invalid labels).

================================  ==========================================
``crossentropy``                  ``SmoothedCE``, ``SmoothedBCE``,
                                  ``smoothed_crossentropy``,
                                  ``smoothed_binary_crossentropy``
``confidence_penalty``            ``ConfidencePenaltyCE``,
                                  ``confidence_penalty_crossentropy``
``dice``                          ``SmoothedDice``, ``smoothed_dice``
``online``                        ``OnlineSmoothedCE``, ``OnlineSoftTargets``,
                                  ``online_smoothed_crossentropy``
``linear``                        ``LinearSmoothedCE``, ``linear_smoothed_crossentropy``
                                  (LM head fused with the loss, in chunks)
================================  ==========================================
"""

from keras_ls.losses._base import SchedulableLoss
from keras_ls.losses.confidence_penalty import (
    ConfidencePenaltyCE,
    confidence_penalty_crossentropy,
)
from keras_ls.losses.crossentropy import (
    SmoothedBCE,
    SmoothedCE,
    smoothed_binary_crossentropy,
    smoothed_crossentropy,
)
from keras_ls.losses.dice import SmoothedDice, smoothed_dice
from keras_ls.losses.linear import LinearSmoothedCE, linear_smoothed_crossentropy
from keras_ls.losses.online import (
    MAX_CLASSES,
    OnlineSmoothedCE,
    OnlineSoftTargets,
    initial_soft_targets,
    online_smoothed_crossentropy,
)

__all__ = [
    "MAX_CLASSES",
    "ConfidencePenaltyCE",
    "LinearSmoothedCE",
    "OnlineSmoothedCE",
    "OnlineSoftTargets",
    "SchedulableLoss",
    "SmoothedBCE",
    "SmoothedCE",
    "SmoothedDice",
    "confidence_penalty_crossentropy",
    "initial_soft_targets",
    "linear_smoothed_crossentropy",
    "online_smoothed_crossentropy",
    "smoothed_binary_crossentropy",
    "smoothed_crossentropy",
    "smoothed_dice",
]

# Importing any Keras-side keras-ls module registers every keras-ls class with Keras.
import keras_ls  # noqa: E402

keras_ls.register_serializables()
