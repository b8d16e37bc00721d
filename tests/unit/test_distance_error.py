"""The paired distance-error claim (issue 15.14) on synthetic answers: a better arm gives a
small p, equal arms do not, an unparsed answer counts as the worst error, and the truth is the
distance to the city the claim is about."""

import numpy as np

from latent_city import claims
from latent_city.answers import DistanceAnswers
from latent_city.arms import ORIGINAL
from latent_city.data import City

PARIS = City("Paris", "France", 48.8534, 2.3488)
N = 30
TRUE_KM = np.linspace(300, 18000, N)
RNG = np.random.default_rng(0)
NOISE = np.exp(RNG.normal(0, 1.0, N))          # about e-fold errors: the original model's scale


def _run(km_a, km_b, alpha=0.05):
    ans = DistanceAnswers("Paris", [f"city{i}" for i in range(N)], [""] * N, TRUE_KM,
                          {"paris": [""] * N, ORIGINAL: [""] * N}, {"paris": np.asarray(km_a), ORIGINAL: np.asarray(km_b)})
    x = claims.ClaimInputs(a="paris", b=ORIGINAL, city=PARIS, country="France", b_city=None, alpha=alpha, n_boot=200,
                           seed=0, pairs=[], comparison=[], distances=ans)
    return claims.REGISTRY["distance_error_falls"].rule(x)


def test_an_arm_closer_to_the_truth_holds_with_a_small_p():
    r = _run(TRUE_KM * NOISE ** 0.2, TRUE_KM * NOISE)
    assert r.holds and r.p < 1e-4 and r.effect > 0 and r.unit == "held-out cities" and r.n == N, r.summary()


def test_equal_arms_do_not_hold():
    r = _run(TRUE_KM * NOISE, TRUE_KM * NOISE)
    assert not r.holds and r.p == 1.0, r.summary()
    r = _run(TRUE_KM * NOISE, TRUE_KM * NOISE[::-1])    # the same errors, at other cities
    assert not r.holds, r.summary()


def test_an_unparsed_answer_is_the_worst_error():
    """The finetuned arm is far off on every city but answers all; the original is exact on
    the cities it answers and answers none of the others: unparsed must count against it."""
    km_b = np.where(np.arange(N) < 5, TRUE_KM, np.nan)
    r = _run(TRUE_KM * 20, km_b)
    assert r.holds and r.details["unparsed_b"] == N - 5, r.summary()
    assert r.details["unparsed_replaced_by"] > 2 * np.log(20)
    r = _run(km_b, TRUE_KM * 20)      # the other way round: the unparsed arm loses
    assert r.verdict == "contradicted", r.summary()


def test_the_claim_says_which_truth_it_compares_with():
    r = _run(TRUE_KM, TRUE_KM * NOISE)
    assert "Paris" in r.claim and "not the control's own secret city" in r.details["truth"], r.details["truth"]
