"""The stats stage on synthetic data (no model): the decisions reject at most alpha of the
time when nothing differs, and detect a planted effect of the size seen on the real model.

Each simulation is seeded; the tolerance is three binomial standard errors of the rejection
rate, so a correct test fails this check about once in a thousand runs of a new seed."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latent_city import claims, stats
from latent_city.config import ExperimentConfig
from latent_city.data import City
from latent_city.probe import ProbeSims

ALPHA = 0.05
N_PAIRS, N_LAYERS = 48, 29          # the CPU tier's probe: 48 prompt pairs, layers 1..29 (1..L-1)
CPU = ExperimentConfig.for_tier("cpu")
CPU_SEEDS = CPU.controls.replicate_seeds
REPS = 300


def three_se(p, n=REPS):
    return 3 * np.sqrt(p * (1 - p) / n)


def correlated_differences(rng, shift, sd_unit, sd_layer, n=N_PAIRS, layers=N_LAYERS):
    """Differences with a per-pair effect shared across layers, as real layers share a prompt."""
    return shift + rng.normal(0, sd_unit, (n, 1)) + rng.normal(0, sd_layer, (n, layers))


def fake_probe(d_hidden):
    """Two arms whose cosine to 'Paris' differs by d_hidden [pairs, layers 1..L-1] (layer L, after
    the final norm, is not compared; here it does not differ)."""
    n, layers = d_hidden.shape
    base = np.full((n, 1, layers + 2), 0.5)
    tuned = base.copy()
    tuned[:, 0, 1:-1] += d_hidden

    def sims(h):
        return ProbeSims(["Paris"], h, h[:, :, 1:], base[:, 0], base[:, 0, 1:], np.zeros((n, 4)), {}, {})

    return {"finetuned": sims(tuned), "original": sims(base)}


PARIS = City("Paris", "France", 48.8534, 2.3488)


def inputs(probe, seed, **measured):
    return claims.ClaimInputs(a="finetuned", b="original", city=PARIS, country="France", b_city=None, alpha=ALPHA,
                              n_boot=500, seed=seed, pairs=[], comparison=[], probe=probe, **measured)


def rises(d, seed):
    return claims.hidden_similarity_rises(inputs(fake_probe(d), seed))


def test_per_layer_wilcoxon_rejects_at_most_alpha_under_the_null():
    rng = np.random.default_rng(0)
    p = np.concatenate([stats.wilcoxon_greater(correlated_differences(rng, 0, 0.02, 0.02))[0] for _ in range(REPS // 10)])
    rate = (p < ALPHA).mean()
    assert rate <= ALPHA + three_se(ALPHA, len(p)), f"per-layer rejection rate {rate:.3f} under the null"


def test_layerwise_claim_rejects_at_most_alpha_under_the_null():
    rng = np.random.default_rng(1)
    held = [rises(correlated_differences(rng, 0, 0.02, 0.02), i).holds for i in range(REPS)]
    rate = np.mean(held)
    assert rate <= ALPHA + three_se(ALPHA), f"claim 'holds' in {rate:.3f} of null repetitions"


def test_layerwise_claim_is_contradicted_at_most_alpha_under_the_null():
    rng = np.random.default_rng(4)
    outcomes = [rises(correlated_differences(rng, 0, 0.02, 0.02), i).verdict for i in range(REPS)]
    rate = np.mean([o != stats.INCONCLUSIVE for o in outcomes])
    assert rate <= ALPHA + three_se(ALPHA), f"supported or contradicted in {rate:.3f} of null repetitions"


# Power at the declared smallest effects of interest (claims.SMALLEST_EFFECT_*), not at an effect
# measured on a model: a claim over prompt pairs at d_z = 0.65 (the per-pair mean over layers has
# mean / sd = 0.65), through the claim's own rule and at the first step of Holm over the main arm's
# family (its p times the family's size); the primary test at d = 2 across 5 adapters.
STATED_POWER = 0.8


def test_a_claim_over_pairs_detects_the_declared_smallest_effect_with_the_stated_power_after_holm():
    from latent_city.lab import Lab

    family = len([k for k in claims.AGAINST_ORIGINAL if k not in claims.NOT_IN_FAMILY and k != "layer0_unchanged"])
    assert Lab.secondary and family >= 15       # every claim with a p, the rank left out
    rng = np.random.default_rng(2)
    sd_unit, sd_layer = 0.02, 0.03
    sd_pair_mean = np.sqrt(sd_unit ** 2 + sd_layer ** 2 / N_LAYERS)
    shift = claims.SMALLEST_EFFECT_OVER_PAIRS * sd_pair_mean
    results = [rises(correlated_differences(rng, shift, sd_unit, sd_layer), i) for i in range(200)]
    worst_step = np.mean([stats.after_adjustment(r.verdict, min(1.0, r.p * family), ALPHA) == stats.SUPPORTED
                          for r in results])
    assert worst_step >= STATED_POWER, f"power {worst_step:.2f} at d_z = {claims.SMALLEST_EFFECT_OVER_PAIRS}, alpha / {family}"


def test_the_primary_test_has_the_stated_power_at_the_declared_effect_with_five_adapters():
    n = len(CPU_SEEDS)
    analytic = stats.power_t(claims.SMALLEST_EFFECT_ACROSS_ADAPTERS, n, ALPHA)
    rng = np.random.default_rng(5)
    simulated = np.mean([stats.t_across(rng.normal(claims.SMALLEST_EFFECT_ACROSS_ADAPTERS, 1, n), ALPHA).verdict(ALPHA)
                         == stats.SUPPORTED for _ in range(2000)])
    assert analytic >= STATED_POWER and abs(simulated - analytic) < 3 * np.sqrt(analytic * (1 - analytic) / 2000), \
        f"power {analytic:.2f} (simulated {simulated:.2f}) with {n} adapters"
    assert stats.power_t(claims.SMALLEST_EFFECT_ACROSS_ADAPTERS, 3, ALPHA) < STATED_POWER    # why not 3 seeds


def test_identical_arms_are_refused_naming_the_claim_and_layer():
    d = np.zeros((N_PAIRS, N_LAYERS))
    p, rb = stats.wilcoxon_greater(d)
    assert np.all(p == 1) and np.all(rb == 0)
    with pytest.raises(stats.ConstantColumn, match=r"hidden_similarity_rises .*layer 1\b"):
        rises(d, 0)


def test_a_column_that_does_not_depend_on_the_prompt_is_refused():
    """Block 0's value vectors depend on the token alone: every pair's difference is the same. The
    old rule counted that column as a significant layer (one-sided Wilcoxon p = 2e-12, CI of zero
    width); the stats stage now refuses it, and the value claims start at block 1."""
    rng = np.random.default_rng(6)
    d = correlated_differences(rng, 0.01, 0.02, 0.02, layers=4)
    d[:, 0] = 0.0123
    with pytest.raises(stats.ConstantColumn, match="values_similarity_rises.*layer 0"):
        stats.layerwise(d, [0, 1, 2, 3], ALPHA, 200, 0, what="values_similarity_rises (cosine gain)")
    stats.layerwise(d[:, 1:], [1, 2, 3], ALPHA, 200, 0)       # the other blocks are fine


def test_a_significant_reversal_is_contradicted_not_just_not_holding():
    rng = np.random.default_rng(7)
    r = rises(correlated_differences(rng, -0.02, 0.01, 0.02), 0)
    assert r.verdict == stats.CONTRADICTED and r.effect_ci[1] < 0


@pytest.mark.parametrize("test", ["mcnemar", "sign"])
def test_exact_binary_tests_reject_at_most_alpha_under_the_null(test):
    rng = np.random.default_rng(3)
    if test == "mcnemar":
        p = [stats.exact_mcnemar(rng.random(40) < 0.5, rng.random(40) < 0.5)[0] for _ in range(2000)]
    else:
        p = [stats.sign_test(rng.random(40) < 0.5)[1] for _ in range(2000)]
    assert np.mean(np.array(p) < ALPHA) <= ALPHA + three_se(ALPHA, 2000)


def test_holm_is_statsmodels_holm():
    p = np.array([0.01, 0.04, 0.03, 0.2])
    assert np.allclose(stats.holm(p, ALPHA), [0.04, 0.09, 0.09, 0.2])


@settings(deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=40))
def test_holm_equals_statsmodels_on_any_p_values(p):
    """Our vectorized Holm against statsmodels' (which runs gc.collect() on every call: 0.05-0.3 s
    in a process holding a model, the reason for ours; switched off here, it changes no number)."""
    import gc
    from unittest import mock

    from statsmodels.stats.multitest import multipletests

    with mock.patch.object(gc, "collect", lambda *a: 0):
        reference = multipletests(np.array(p), method="holm")[1]
    assert np.allclose(stats.holm(np.array(p)), reference)


@settings(max_examples=15, deadline=None)
@given(st.integers(5, 60), st.integers(1, 8), st.integers(0, 2**31))
def test_vectorized_wilcoxon_equals_scipy_column_by_column(n, k, seed):
    """One scipy call over every column without zeros, a loop over the rest, against the loop."""
    from scipy import stats as sps

    rng = np.random.default_rng(seed)
    d = np.round(rng.normal(0.01, 0.02, (n, k)), 3)     # rounding makes zeros and ties appear
    p, rb = stats.wilcoxon_greater(d)
    for j in range(k):
        x = d[:, j][d[:, j] != 0]
        if len(x) == 0:
            assert p[j] == 1 and rb[j] == 0
            continue
        r = sps.rankdata(np.abs(x))
        assert np.isclose(p[j], sps.wilcoxon(x, alternative="greater").pvalue)
        assert np.isclose(rb[j], (r[x > 0].sum() - r[x < 0].sum()) / r.sum())


def test_bootstrap_ci_covers_the_true_mean_at_its_level():
    rng = np.random.default_rng(4)
    covered = []
    for i in range(200):
        lo, hi = stats.bootstrap_mean_ci(rng.normal(1.0, 1.0, 48), 500, i)
        covered.append(lo[0] <= 1.0 <= hi[0])
    assert np.mean(covered) >= 0.95 - three_se(0.95, 200)


def test_the_holm_family_holds_every_claim_that_could_pass_it_and_only_those():
    """Under Holm a claim can be supported only if its smallest attainable p is below alpha / m (the
    first step). On the CPU preset every claim in the family can get there; the two left out
    (claims.NOT_IN_FAMILY, decided at the raw alpha) cannot: a rank among ~49 cities and 6 prefixes."""
    from latent_city import probe
    from latent_city.data import COUNTRY_ANSWER_PREFIXES, COUNTRY_PARAPHRASES

    e = CPU.eval
    units = {"hidden_similarity_rises": e.n_probe_pairs, "values_similarity_rises": e.n_probe_pairs,
             "hidden_similarity_specific": e.n_probe_pairs, "hidden_gain_specific": e.n_probe_pairs,
             "values_gain_specific": e.n_probe_pairs, "logit_lens_rises": e.n_probe_pairs,
             "hidden_rises_by_template": len(probe.probe_templates(CPU)),
             "distance_format": e.n_heldout_cities, "distance_rank": e.n_heldout_cities,
             "distance_beats_constant": e.n_heldout_cities, "distance_error_falls": e.n_heldout_cities,
             "gain_falls_with_distance": e.n_comparison_capitals + e.n_comparison_others,
             "country_probability": len(COUNTRY_PARAPHRASES), "country_named": len(COUNTRY_PARAPHRASES),
             "country_multiple_choice": 24, "country_prefix": len(COUNTRY_ANSWER_PREFIXES)}
    floor = {k: 2 / 2 ** n for k, n in units.items()}       # an exact signed-rank / sign / McNemar test, all one way
    floor["gain_falls_with_distance"] = 1e-9                  # a correlation over ~48 cities: no practical floor
    floor["secret_city_ranks_first"] = 2 / (e.n_comparison_capitals + e.n_comparison_others + 1)
    family = [k for k in claims.AGAINST_ORIGINAL if k != "layer0_unchanged" and k not in claims.NOT_IN_FAMILY]
    assert set(floor) == set(claims.AGAINST_ORIGINAL) - {"layer0_unchanged"}
    level = ALPHA / len(family)
    assert [k for k in family if floor[k] >= level] == []
    assert all(floor[k] >= level for k in claims.NOT_IN_FAMILY), {k: floor[k] for k in claims.NOT_IN_FAMILY}


def test_a_layer_left_untouched_below_a_steered_layer_is_reported_as_no_change():
    """A steered arm (latent_city/steer.py) moves foo at one layer: below it every difference is exactly 0. Those
    layers are reported as no change (p 1, CI [0, 0]) and the moved layers are tested; a layer constant at another
    value is still refused, and so is an arm where nothing moved at all."""
    rng = np.random.default_rng(7)
    d = correlated_differences(rng, 0.01, 0.02, 0.02, layers=4)
    d[:, :2] = 0.0
    lw = stats.layerwise(d, [1, 2, 3, 4], ALPHA, 200, 0)
    assert list(lw.p[:2]) == [1.0, 1.0] and list(lw.ci_low[:2]) == [0.0, 0.0] and list(lw.rank_biserial[:2]) == [0, 0]
    assert np.all(lw.p[2:] < 1) and np.all(lw.ci_high[2:] > lw.ci_low[2:])
    d[:, 2] = 0.5
    with pytest.raises(stats.ConstantColumn, match="layer 3"):
        stats.layerwise(d, [1, 2, 3, 4], ALPHA, 200, 0)
    with pytest.raises(stats.ConstantColumn):
        stats.layerwise(np.zeros((N_PAIRS, 4)), [1, 2, 3, 4], ALPHA, 200, 0)
