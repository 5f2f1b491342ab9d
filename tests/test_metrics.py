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


def test_paper_protocol_scores_bos_frames_and_the_zero_eos():
    """EmoAva's evaluate.py: gold [mean, y_1..y_T, 0], every position scored; position 0 is our BOS."""
    bos = np.array([0.5, -0.5])
    real = np.array([[0.0, 0.0], [1.0, 1.0]])
    pred = np.array([[0.0, 0.0], [1.0, 1.0], [-0.8, 0.0]])  # exact frames, then y − ŷ = 0.8 at the EOS
    p0 = Phi(4) ** 2 - Phi(-4) ** 2                       # an exact frame
    p_eos = Phi(8) * Phi(4) - Phi(0) * Phi(-4)            # the EOS frame, 0.8 off in one dim
    want = 2 ** (-(3 * math.log2(p0) + math.log2(p_eos)) / 4)
    assert metrics.paper_ppl([pred], [real], bos, SIG, DEL) == pytest.approx(want, rel=1e-12)
    # beyond the frame cap: the first max_frames frames, without EOS (the reference's 256-token window)
    assert metrics.paper_ppl([pred], [real], bos, SIG, DEL, max_frames=1) == pytest.approx(p0 ** -1, rel=1e-12)
    # σ/δ per code space: EmoAva's for FLAME, tighter for arkit52 blendshape scores in [0, 1]
    assert metrics.ppl_sigma_delta("flame53") == (0.2, 0.8) and metrics.ppl_sigma_delta("arkit52") == (0.025, 0.1)
    assert metrics.ppl_sigma_delta("arkit52", delta=0.3) == (0.025, 0.3)


def test_distribution_metrics():
    rng = np.random.default_rng(1)
    same = [np.ones((5, 3))] * 4
    assert metrics.multimodality([same]) == 0.0
    assert metrics.variation(same) == 0.0
    assert metrics.diversity(same) == 0.0
    # lm-listener's diversity: random frame pairs inside each sequence; a two-level sequence
    two = np.array([[0.0, 0.0]] * 20 + [[3.0, 4.0]] * 20)
    d = metrics.diversity([two], seed=3)
    assert 0.5 < d < 4.5 and metrics.diversity([two], seed=3) == d
    # multimodality: frames at the same time in two different sequences of a text
    a, b = np.zeros((6, 2)), np.array([[3.0, 4.0]] * 6)
    assert metrics.multimodality([[a, b]]) == pytest.approx(5.0)
    assert metrics.multimodality([[a, b], [a, a]]) == pytest.approx(2.5)
    x = rng.normal(size=(4000, 3))
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert metrics.frechet_distance(x, x + np.array([1.0, 2.0, 2.0])) == pytest.approx(9.0, rel=1e-6)
    ls = metrics.length_stats([10, 20], [12, 20])
    assert ls["mean_abs_error"] == 1.0 and ls["gen_mean"] == 15.0
