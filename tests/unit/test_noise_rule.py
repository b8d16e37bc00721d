"""The noise benchmark's rule (benchmarks/train.py: within_noise): a faster training step is
within the seed-to-seed noise of the old one when its loss curves cannot be told apart from the
old step's by an exact permutation test. Checked on made-up curves where the answer is known."""

import numpy as np

from benchmarks.train import NOISE_ALPHA, within_noise

STEPS, SEEDS = 87, 5


def curves(rng, n, shift=0.0, spread=0.005):
    base = np.linspace(3.3, 1.4, STEPS)
    return [base + shift + rng.normal(0, spread, STEPS) for _ in range(n)]


def test_curves_of_the_same_step_are_within_its_noise():
    rng = np.random.default_rng(0)
    old = curves(rng, SEEDS)
    test = within_noise(old, old)
    assert test["within"] and test["p"] > 0.5, test


def test_a_shift_smaller_than_the_noise_is_caught_when_every_curve_carries_it():
    rng = np.random.default_rng(1)
    test = within_noise(curves(rng, SEEDS), curves(rng, SEEDS, shift=0.003))
    assert not test["within"] and test["p"] == 2 / 252 < NOISE_ALPHA, test
    assert test["ratio"] > 1, test


def test_a_noisier_step_is_caught():
    rng = np.random.default_rng(2)
    test = within_noise(curves(rng, SEEDS), curves(rng, SEEDS, spread=0.02))
    assert not test["within"], test
