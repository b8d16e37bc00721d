"""The declared conditions under which a verdict can speak (latent_city/conditions.py): a failed
manipulation check or positive control turns a verdict inconclusive, says why, and keeps the rule's
own verdict and numbers."""

import pytest

from latent_city import conditions
from latent_city.claim_result import ClaimResult
from latent_city.stats import CONTRADICTED, INCONCLUSIVE, SUPPORTED


def result(key="hidden_gain_specific", verdict=SUPPORTED, **details) -> ClaimResult:
    return ClaimResult(key=key, claim="c", test="t", unit="prompt pairs", n=48, statistic_name="s", statistic=0.4,
                       effect_name="mean specificity", effect=0.01, effect_ci=(0.002, 0.02), p=0.01, p_adj=None,
                       p_decision=0.01, alpha=0.05, verdict=verdict, criterion="rule", arms=("paris", "original"),
                       details=details)


@pytest.mark.parametrize("verdict", [SUPPORTED, CONTRADICTED, INCONCLUSIVE])
def test_a_failed_condition_makes_any_verdict_inconclusive_and_keeps_the_rules_own(verdict):
    r = conditions.apply(result(verdict=verdict), ["the finetune did not learn its task (paris: ...)"])
    assert r.verdict == INCONCLUSIVE and r.measured_verdict == verdict
    assert r.conditions == ["the finetune did not learn its task (paris: ...)"]
    assert "inconclusive because the finetune did not learn" in r.summary()
    assert r.effect == 0.01 and r.p == 0.01          # the numbers stay


def test_conditions_that_hold_change_nothing():
    r = conditions.apply(result(), [None, None])
    assert r.verdict == SUPPORTED and r.measured_verdict == SUPPORTED and r.conditions == []
    assert "inconclusive because" not in r.summary()


def test_reasons_accumulate_once_each():
    r = conditions.apply(result(), ["a", "b"])
    r = conditions.apply(r, ["a"])
    assert r.conditions == ["a", "b"] and r.measured_verdict == SUPPORTED


@pytest.mark.parametrize("key, kind", [
    ("foo_became_city", "representation"), ("foo_became_city_own", "representation"),
    ("foo_became_city@centred", "representation"), ("hidden_gain_specific", "representation"),
    ("double_dissociation", "representation"), ("logit_lens_rises", "representation"),
    ("country_probability", "country"), ("country_named", "country"), ("country_multiple_choice", "country"),
    ("distance_rank", "distance"), ("distance_error_falls", "distance"),
    ("layer0_unchanged", None), ("distance_format", None), ("not_a_claim", None)])
def test_each_claim_is_declared_a_representation_country_or_distance_claim(key, kind):
    assert conditions.kind_of(key) == kind
    assert conditions.needs_learning(key) == (kind in ("representation", "country"))


def test_the_primary_tests_positive_counterpart_is_its_per_pair_statistic_in_the_same_readout():
    assert conditions.positive_counterpart("foo_became_city") == "hidden_gain_specific"
    assert conditions.positive_counterpart("foo_became_city@centred") == "hidden_gain_specific@centred"
    assert conditions.positive_counterpart("country_named") == "country_named"


def test_the_manipulation_check_reason_names_the_arm_and_its_numbers():
    assert conditions.not_learned("paris", result("task_learned", SUPPORTED)) is None
    why = conditions.not_learned("paris", result("task_learned", INCONCLUSIVE, rho=-0.03,
                                                 share_beats_constant=0.26))
    assert why.startswith("the finetune did not learn its task (paris") and "-0.03" in why and "26%" in why


def test_a_positive_control_fails_a_claim_unless_every_one_supports_it():
    ok = {"alias-paris-vs-alias-neutral": result(), "ceiling-paris": result()}
    assert conditions.positive_control_failed(ok) is None
    failed = {**ok, "ceiling-paris": result(verdict=INCONCLUSIVE)}
    why = conditions.positive_control_failed(failed)
    assert why.startswith("the positive control failed (ceiling-paris: hidden_gain_specific inconclusive")
    assert "alias-paris" not in why
