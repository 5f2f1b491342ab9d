"""Metrics: EmoAva's continuous perplexity in closed form against scipy's numerical CDF, and the others."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from model import metrics

SIG, DEL = 0.2, 0.8


def Phi(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_closed_form_equals_scipy_numerical_cdf_d5():
    """Tolerance 1e-5 absolute on each frame's probability: scipy's CDF integrates to abseps 1e-5."""
    rng = np.random.default_rng(0)
    D = 5
    y = rng.normal(0, 0.4, (40, D))
    yhat = y + rng.normal(0, 0.3, (40, D)) * rng.uniform(0.2, 2.0, (40, 1))  # from near to far frames
    closed = 2.0 ** metrics.frame_log2p_emoava(y, yhat, SIG, DEL)
    for j in range(len(y)):
        mvn = multivariate_normal(mean=yhat[j], cov=SIG ** 2 * np.eye(D))
        num = max(mvn.cdf(y[j] + DEL) - mvn.cdf(y[j] - DEL), metrics.FLOOR)
        assert closed[j] == pytest.approx(num, abs=1e-5), j
    assert closed.min() < 0.9  # the inputs reach well below p = 1, so the check is not trivial
    # and the perplexity over sequences agrees with the reference-style computation
    preds, reals = [yhat[:15], yhat[15:]], [y[:15], y[15:]]
    assert metrics.continuous_ppl(preds, reals, SIG, DEL) == pytest.approx(
        metrics.continuous_ppl_scipy(preds, reals, SIG, DEL), rel=1e-4)


def test_hand_computed_case():
    # D = 2, y − ŷ = (0.8, 0): p = Φ(8)Φ(4) − Φ(0)Φ(−4)
    p = Phi(8) * Phi(4) - Phi(0) * Phi(-4)
    y, yhat = np.array([[0.8, 0.0]]), np.zeros((1, 2))
    assert 2.0 ** metrics.frame_log2p_emoava(y, yhat, SIG, DEL)[0] == pytest.approx(p, rel=1e-12)
    # a two-frame sequence: frame 2 is exact (p0 = Φ(4)² − Φ(−4)²); PPL = 2^(−(log2 p + log2 p0)/2)
    p0 = Phi(4) ** 2 - Phi(-4) ** 2
    ppl = metrics.continuous_ppl([np.zeros((2, 2))], [np.array([[0.8, 0.0], [0.0, 0.0]])], SIG, DEL)
    assert ppl == pytest.approx(2 ** (-(math.log2(p) + math.log2(p0)) / 2), rel=1e-12)
    # the true box probability of the same frame: [Φ(8) − Φ(0)]·[Φ(4) − Φ(−4)]
    box = (Phi(8) - Phi(0)) * (Phi(4) - Phi(-4))
    assert 2.0 ** metrics.frame_log2p_box(y, yhat, SIG, DEL)[0] == pytest.approx(box, rel=1e-12)
    # a far prediction hits EmoAva's floor of 1e-10: PPL = 1e10
    assert metrics.continuous_ppl([np.full((3, 2), 5.0)], [np.zeros((3, 2))]) == pytest.approx(1e10, rel=1e-9)


def test_shorter_prediction_is_extended_with_its_last_frame():
    real = np.zeros((4, 3))
    short = np.array([[0.0, 0, 0], [0.1, 0, 0]])
    assert metrics.continuous_ppl([short], [real]) == pytest.approx(
        metrics.continuous_ppl([np.array([[0.0, 0, 0], [0.1, 0, 0], [0.1, 0, 0], [0.1, 0, 0]])], [real]))
    assert metrics.mse([short], [real]) == pytest.approx(3 * 0.01 / 12)


def test_distribution_metrics():
    rng = np.random.default_rng(1)
    same = [np.ones((5, 3))] * 4
    assert metrics.multimodality([same]) == 0.0
    assert metrics.variation(same) == 0.0
    a, b = np.zeros((6, 2)), np.array([[3.0, 4.0]] * 6)
    assert metrics.diversity([a, b]) == pytest.approx(5.0)  # every random pair is (a, b)
    assert metrics.multimodality([[a, b], [a, a]]) == pytest.approx(2.5)
    x = rng.normal(size=(4000, 3))
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert metrics.frechet_distance(x, x + np.array([1.0, 2.0, 2.0])) == pytest.approx(9.0, rel=1e-6)
    ls = metrics.length_stats([10, 20], [12, 20])
    assert ls["mean_abs_error"] == 1.0 and ls["gen_mean"] == 15.0
