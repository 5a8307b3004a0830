import math

import numpy as np
import pytest

from keras_ls import schedules as S


def test_constant_linear_cosine_values():
    assert S.Constant(0.1)(0) == S.Constant(0.1)(1000) == 0.1
    lin = S.Linear(0.2, 0.0, steps=10)
    assert [round(lin(s), 10) for s in (0, 5, 10, 20)] == [0.2, 0.1, 0.0, 0.0]
    cos = S.Cosine(0.1, 0.0, steps=4)
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(5)]
    np.testing.assert_allclose([cos(s) for s in range(5)], expected)
    assert cos(9) == pytest.approx(0.0)


def test_piecewise_and_warmup():
    pw = S.Piecewise([2, 4], [0.3, 0.2, 0.0])
    assert [pw(s) for s in range(6)] == [0.3, 0.3, 0.2, 0.2, 0.0, 0.0]
    wu = S.Warmup(4, after=S.Linear(0.2, 0.0, 2))
    np.testing.assert_allclose([wu(s) for s in range(8)], [0, 0.05, 0.1, 0.15, 0.2, 0.1, 0, 0])


@pytest.mark.parametrize(
    "sched",
    [
        S.Constant(0.05),
        S.Linear(0.1, 0.0, 7),
        S.Cosine(0.2, 0.05, 3),
        S.Piecewise([1], [0.1, 0.0]),
        S.Warmup(2, after=S.Cosine(0.1, 0.0, 5), start=0.01),
    ],
)
def test_config_round_trip(sched):
    again = S.deserialize(S.serialize(sched))
    assert again == sched
    assert [again(s) for s in range(10)] == [sched(s) for s in range(10)]


def test_from_name():
    assert S.from_name("constant", 0.1, 0.0, 5)(4) == 0.1
    assert S.from_name("linear", 0.1, 0.0, 4)(4) == 0.0
    assert S.from_name("linear", 0.1, 0.0, 4)(2) == pytest.approx(0.05)
    assert S.from_name("cosine", 0.1, 0.0, 4)(2) == pytest.approx(0.05)
    step = S.from_name("step", 0.1, 0.02, 4)
    assert [step(s) for s in range(5)] == [0.1, 0.1, 0.02, 0.02, 0.02]
    with pytest.raises(ValueError, match="Unknown smoothing schedule 'exp'.*constant, linear"):
        S.from_name("exp", 0.1, 0.0, 3)


def test_get_accepts_numbers_callables_and_keras_schedules():
    import keras

    assert S.get(0.1) == S.Constant(0.1)
    fn = S.get(lambda step: 0.1 / (1 + step))
    assert S.evaluate(fn, 1) == pytest.approx(0.05)
    kcos = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=10)
    assert S.evaluate(S.get(kcos), 5) == pytest.approx(0.05, rel=1e-5)
    with pytest.raises(TypeError, match="schedule"):
        S.get("cosine")


def test_evaluate_validates_values():
    with pytest.raises(ValueError, match="at step 3.*\\[0, 1\\]"):
        S.evaluate(lambda s: 0.5 * s, 3)
    with pytest.raises(ValueError, match="at step 0"):
        S.evaluate(lambda s: float("nan"), 0)


@pytest.mark.parametrize(
    "factory, match",
    [
        (lambda: S.Linear(0.1, 1.5, 3), "end"),
        (lambda: S.Linear(0.1, 0.0, 0), "steps"),
        (lambda: S.Piecewise([3, 1], [0.1, 0.2, 0.3]), "strictly increasing"),
        (lambda: S.Piecewise([1], [0.1]), "one more entry"),
        (lambda: S.Constant(-1), "value"),
    ],
)
def test_bad_schedule_arguments(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_negative_step_rejected():
    with pytest.raises(ValueError, match="step"):
        S.Linear(0.1, 0.0, 3)(-1)
