"""Gradient clipping, Adagrad and the learning-rate schedule (charrnn.optim), with
hand-computed values."""
import math

import numpy as np
import pytest

from charrnn.optim import ADAGRAD_EPS, Adagrad, clip_gradients, scheduled_learning_rate
from charrnn.model import ModelSpec, Network


# --------------------------------------------------------------------------- clipping

def test_clip_gradients_elementwise_in_place():
    grad = np.array([-7.0, -5.0, -4.99, 0.0, 2.5, 5.0, 6.25, 1e30])
    returned = clip_gradients(grad, 5.0)
    assert returned is grad
    np.testing.assert_array_equal(grad, [-5.0, -5.0, -4.99, 0.0, 2.5, 5.0, 5.0, 5.0])


def test_clip_gradients_other_threshold_and_float32():
    grad = np.array([[0.5, -1.5], [3.0, -0.25]], dtype=np.float32)
    clip_gradients(grad, 1.0)
    assert grad.dtype == np.float32
    np.testing.assert_array_equal(grad, np.array([[0.5, -1.0], [1.0, -0.25]], dtype=np.float32))


def test_clipping_the_flat_buffer_clips_every_parameter():
    grads = Network(ModelSpec(3, 2), np.float64).zeros()
    grads.flat[...] = np.linspace(-20, 20, grads.flat.size)
    clip_gradients(grads.flat, 5.0)
    for name in grads:
        assert np.abs(grads[name]).max() <= 5.0, name
    assert grads["l1.Wxh"][0, 0] == -5.0 and grads["by"][-1] == 5.0


# --------------------------------------------------------------------------- Adagrad

def test_adagrad_eps_is_1e_minus_8():
    assert ADAGRAD_EPS == 1e-8


def test_adagrad_two_steps_by_hand():
    """lr 0.1; m += g*g; p -= lr * g / sqrt(m + 1e-8), worked out element by element."""
    param = np.array([1.0, 2.0, 3.0])
    memory = np.zeros(3)
    opt = Adagrad(memory, learning_rate=0.1)

    opt.update(param, np.array([3.0, -4.0, 0.0]))
    # m = [9, 16, 0]; steps: 0.1*3/3 = 0.1, 0.1*4/4 = 0.1, 0 (zero gradient, no NaN from 0/0)
    np.testing.assert_array_equal(memory, [9.0, 16.0, 0.0])
    np.testing.assert_allclose(param, [0.9, 2.1, 3.0], rtol=0, atol=1e-9)
    # ...and to the last digits, with the 1e-8 inside the square root:
    np.testing.assert_allclose(param, [1 - 0.3 / math.sqrt(9 + 1e-8), 2 + 0.4 / math.sqrt(16 + 1e-8), 3.0],
                               rtol=1e-15)

    opt.update(param, np.array([1.0, 0.0, 2.0]))
    # m = [10, 16, 4]; steps: 0.1/sqrt(10) = 0.0316227766..., 0, 0.1*2/2 = 0.1
    np.testing.assert_array_equal(memory, [10.0, 16.0, 4.0])
    np.testing.assert_allclose(param, [0.9 - 0.0316227766016838, 2.1, 2.9], rtol=0, atol=1e-9)


def test_adagrad_eps_sits_inside_the_square_root():
    """g = 1e-4 from zero memory: m = 1e-8, so the step is lr * 1e-4 / sqrt(2e-8) = lr / sqrt(2).

    (With the eps outside the root the step would be lr * 1e-4 / (1e-4 + 1e-8), about lr.)
    """
    param = np.zeros(1)
    Adagrad(np.zeros(1), learning_rate=0.5).update(param, np.array([1e-4]))
    np.testing.assert_allclose(param, [-0.5 / math.sqrt(2)], rtol=1e-12)


def test_adagrad_first_step_is_lr_times_sign():
    """From zero memory every (non-tiny) element moves by lr against its gradient's sign."""
    grad = np.array([0.3, -2.0, 50.0, -0.5])
    param = np.zeros(4)
    Adagrad(np.zeros(4), learning_rate=0.01).update(param, grad)
    np.testing.assert_allclose(param, [-0.01, 0.01, -0.01, 0.01], rtol=1e-6)


def test_adagrad_updates_the_memory_it_was_given_in_place():
    """The memory is shared with the checkpointed ParamSet, so it must not be replaced."""
    params = Network(ModelSpec(2, 2), np.float64).zeros()
    memory = params.zeros_like()
    opt = Adagrad(memory.flat, learning_rate=0.1)
    grad = np.arange(params.flat.size, dtype=np.float64) - 3.0
    opt.update(params.flat, grad)
    assert opt.memory is memory.flat
    np.testing.assert_array_equal(memory.flat, grad * grad)
    np.testing.assert_array_equal(memory["by"], grad[-2:] ** 2)
    # The parameter views moved with the flat buffer.
    assert params["l1.Wxh"][0, 0] > 0 and params["by"][-1] < 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adagrad_is_bit_for_bit_min_char_rnn(dtype):
    """Several steps on random arrays equal min-char-rnn's one-line update exactly."""
    rng = np.random.default_rng(5)
    lr = 0.1
    param = rng.standard_normal(50).astype(dtype)
    memory = np.zeros(50, dtype=dtype)
    ref_param, ref_mem = param.copy(), memory.copy()
    opt = Adagrad(memory, lr)
    for _ in range(5):
        grad = (rng.standard_normal(50) * 3).astype(dtype)
        grad[::7] = 0
        opt.update(param, grad)
        ref_mem += grad * grad
        ref_param += -lr * grad / np.sqrt(ref_mem + 1e-8)
        assert param.dtype == dtype and memory.dtype == dtype
        np.testing.assert_array_equal(memory, ref_mem)
        np.testing.assert_array_equal(param, ref_param)


# --------------------------------------------------------------------------- schedule

def test_schedule_warms_up_holds_then_cools_down():
    """Peak 0.5, 100 iterations, warm-up over the first 10, cool-down over the last 20."""
    def lr(iteration):
        return scheduled_learning_rate(0.5, iteration, 100, 0.1, 0.2)
    assert lr(0) == pytest.approx(0.05)          # 1/10 of the peak
    assert lr(4) == pytest.approx(0.25)
    assert lr(9) == pytest.approx(0.5)           # the warm-up ends at the peak
    assert lr(10) == lr(50) == lr(80) == 0.5     # holds until 20 iterations are left
    assert lr(81) == pytest.approx(0.5 * 19 / 20)
    assert lr(90) == pytest.approx(0.25)
    assert lr(99) == pytest.approx(0.5 / 20)     # the last update is small but not zero
    assert lr(100) == 0.0 and lr(150) == 0.0     # never negative past the end


def test_schedule_phases_can_be_turned_off():
    assert [scheduled_learning_rate(0.1, i, 10, 0, 0.0) for i in range(10)] == [0.1] * 10
    assert scheduled_learning_rate(0.1, 0, 10, 0, 0.5) == 0.1
    assert scheduled_learning_rate(0.1, 9, 10, 0, 0.5) == pytest.approx(0.1 / 5)
    assert scheduled_learning_rate(0.1, 0, 10, 0.4, 0.0) == pytest.approx(0.025)
    assert scheduled_learning_rate(0.1, 9, 10, 0.4, 0.0) == 0.1


def test_schedule_takes_the_smaller_phase_when_warmup_and_cooldown_overlap():
    """Warm-up and cool-down both over the whole run: a triangle that never reaches the peak."""
    values = [scheduled_learning_rate(1.0, i, 10, 1.0, 1.0) for i in range(10)]
    by_hand = [0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.4, 0.3, 0.2, 0.1]
    assert values == pytest.approx(by_hand)
    assert max(values) < 1.0


def test_a_longer_max_iters_on_resume_jumps_into_the_new_schedule():
    """What the README promises for a finished 36,000-iteration run resumed with a larger
    --max-iters: no second warm-up, straight to the new schedule's rate."""
    def lr(iteration, max_iters):
        return scheduled_learning_rate(0.07, iteration, max_iters, 0.1, 0.25)
    assert lr(35999, 36000) == pytest.approx(0.07 / 9000)      # the old run's last update
    assert lr(36000, 40000) == pytest.approx(0.07 * 4000 / 10000)   # part way down
    assert lr(36000, 72000) == 0.07                              # back at the peak
