"""The declared conditions under which a verdict can speak (latent_city/conditions.py): a failed
manipulation check or positive control turns a verdict inconclusive, says why, and keeps the rule's
own verdict and numbers."""

import pytest

from latent_city import conditions
from latent_city.claim_result import ClaimResult
from latent_city.stats import CONTRADICTED, INCONCLUSIVE, SUPPORTED


def result(key="hidden_gain_specific", verdict=SUPPORTED, p=0.01, **details) -> ClaimResult:
    return ClaimResult(key=key, claim="c", test="t", unit="prompt pairs", n=48, statistic_name="s", statistic=0.4,
                       effect_name="mean specificity", effect=0.01, effect_ci=(0.002, 0.02), p=p, p_adj=None,
                       p_decision=p, alpha=0.05, verdict=verdict, criterion="rule", arms=("paris", "original"),
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
    assert why.startswith("the finetune did not learn its task (manipulation check") and "paris" in why
    assert "-0.03" in why and "26%" in why


def test_a_positive_control_fails_a_claim_unless_every_one_supports_it():
    ok = {"alias-paris-vs-alias-neutral": result(), "ceiling-paris": result()}
    assert conditions.positive_control_failed(ok) is None
    failed = {**ok, "ceiling-paris": result(verdict=INCONCLUSIVE)}
    why = conditions.positive_control_failed(failed)
    assert why.startswith("the positive control failed (ceiling-paris: hidden_gain_specific inconclusive")
    assert "alias-paris" not in why


# ---------------------------------------------------------------------------- applied by the lab (no model)

from latent_city.config import ExperimentConfig  # noqa: E402
from latent_city.lab import Lab  # noqa: E402


@pytest.fixture
def lab(monkeypatch):
    """A lab whose rules are faked: every claim is supported unless `lab.fail` names (key, arm); every
    manipulation check is supported unless the arm is in `lab.unlearned`."""
    lab = Lab(ExperimentConfig.for_tier("cpu"), log=lambda line: None)
    lab.fail, lab.unlearned = set(), set()

    def fake(key, arm, against="original", own=False):
        r = result(key, INCONCLUSIVE if (key, arm) in lab.fail else SUPPORTED, p=1e-9)     # passes Holm
        r.arms, r.about = (arm, against), lab.target(arm, own)[0].name
        return r

    def reset():
        lab._secondary.clear()
        lab.__dict__.pop("_positive_memo", None)
        lab.__dict__.pop("_manipulation_memo", None)

    lab.reset = reset
    monkeypatch.setattr(lab, "_claim", fake)
    monkeypatch.setattr(lab, "manipulation", lambda arm: result("task_learned", INCONCLUSIVE if arm in lab.unlearned
                                                                  else SUPPORTED, rho=0.1, share_beats_constant=0.3))
    return lab


def test_a_claim_on_an_arm_that_did_not_learn_its_task_is_inconclusive_and_says_why(lab):
    lab.unlearned = {"paris"}
    r = lab.claim("hidden_gain_specific", "paris")
    assert r.verdict == INCONCLUSIVE and r.measured_verdict == SUPPORTED
    assert r.conditions and r.conditions[0].startswith("the finetune did not learn its task (manipulation check")
    assert "paris:" in r.conditions[0]
    assert lab.claim("hidden_gain_specific", "paris-s43").verdict == SUPPORTED        # another seed that learned
    assert lab.claim("distance_rank", "paris").verdict == SUPPORTED                   # not a representation claim
    assert lab.claim("double_dissociation", "paris-s43", against="tokyo").verdict == SUPPORTED
    assert lab.claim("double_dissociation", "paris", against="tokyo").verdict == INCONCLUSIVE


def test_a_claim_the_positive_control_fails_is_inconclusive_where_the_hypothesis_predicts_it(lab):
    lab.fail = {("country_named", "alias-paris")}
    for arm in ("paris", "paris-s44"):
        r = lab.claim("country_named", arm)
        assert r.verdict == INCONCLUSIVE, arm
        assert r.conditions == [next(c for c in r.conditions if c.startswith("the positive control failed (alias-paris"))]
    assert lab.claim("country_named", "alias-paris").conditions == []      # the positive control itself: as measured
    assert lab.claim("country_probability", "paris").verdict == SUPPORTED


def test_a_negative_controls_verdict_about_the_main_city_is_kept_whatever_it_learned(lab):
    """On tokyo or shuffled a supported claim about Paris is evidence against the hypothesis: no condition
    may turn it inconclusive (the control's assertion, not supported, must be able to fail)."""
    lab.fail = {("country_named", "alias-paris")}
    lab.unlearned = {"tokyo", "shuffled-s44"}
    for arm in ("tokyo", "shuffled-s44"):
        r = lab.claim("country_named", arm)
        assert r.verdict == SUPPORTED and r.conditions == [], arm
        assert r.details["manipulation_check"].startswith("the finetune did not learn its task")
    assert lab.claim("hidden_gain_specific", "tokyo", own=True).verdict == INCONCLUSIVE   # about its own city: judged


def test_the_distance_claims_are_judged_by_no_positive_control(lab):
    """A positive control asks the original model for distances zero-shot: the base model's knowledge, not the
    instrument's. The ceiling's distance claims are reported."""
    lab.fail = {("distance_rank", "ceiling-paris"), ("distance_rank", "alias-paris")}
    lab.unlearned = {"paris"}
    r = lab.claim("distance_rank", "paris")
    assert r.verdict == SUPPORTED and r.conditions == []


def test_a_judged_result_is_a_copy_the_labs_own_stays_the_rules(lab):
    lab.unlearned = {"paris"}
    first = lab.claim("hidden_gain_specific", "paris")
    second = lab.claim("hidden_gain_specific", "paris")
    assert first is not second and first.criterion == second.criterion
    assert lab.secondary("paris")["hidden_gain_specific"].verdict == SUPPORTED


def test_the_primary_test_needs_every_adapter_of_its_family_to_have_learned_and_its_per_pair_control(lab, monkeypatch):
    import latent_city.claims as claims_module

    monkeypatch.setattr(lab, "measure", lambda what, arm: None)
    def primary(x, adapters, readout="raw"):
        r = result("foo_became_city")
        r.about = x.city.name
        return r

    monkeypatch.setattr(claims_module, "foo_became_city", primary)
    assert lab.primary("paris").verdict == SUPPORTED
    lab.unlearned = {"paris-s45"}
    lab.reset()
    r = lab.primary("paris")
    assert r.verdict == INCONCLUSIVE and "paris-s45" in r.conditions[0]
    assert "1 of 5 adapters failed the manipulation check" in r.conditions[0]
    lab.unlearned = set()
    lab.reset()
    lab.fail = {("hidden_gain_specific", "alias-paris")}
    assert "alias-paris" in lab.primary("paris").conditions[0]
    lab.fail = {("hidden_gain_specific", "alias-tokyo")}        # Tokyo's own alias answers for Tokyo's own city
    lab.reset()
    assert lab.primary("paris").verdict == SUPPORTED
    assert "alias-tokyo" in lab.primary("tokyo", own=True).conditions[0]


def test_the_dissociation_is_read_through_the_alias_arms_own(lab):
    lab.fail = {("double_dissociation", "alias-paris")}
    r = lab.claim("double_dissociation", "paris", against="tokyo")
    assert r.verdict == INCONCLUSIVE and "alias-paris-vs-alias-tokyo" in r.conditions[0]


def test_the_records_tables_print_an_undefined_effect_as_a_dash():
    """A NaN effect (a rho of one answer) is null in the JSON record: every table and sentence prints '-'
    (a cold run of the suite crashed at its very end on one, and wrote no record)."""
    from latent_city import findings, record

    c = result("country_named", INCONCLUSIVE).to_json()
    c.update(effect=None, effect_ci=None, arms=["alias-paris", "alias-neutral"], families=["alias-paris", "alias-neutral"])
    primary = result("foo_became_city").to_json()
    primary.update(effect=None, arms=["paris", "original"], families=["paris", "original"],
                   details={"per_adapter_mean": [0.1], "adapters": ["paris"]})
    head, rows = findings.positive_control_table([c])
    assert rows == [["country_named", "inconclusive (-)"]]
    assert findings.primary_table([primary])[1][0][4].startswith("- [")
    findings.sentences([primary, c])
    record.measured_exceptions({"model": "m", "provenance": {"precision": "fp32", "eval_hash": "e"}, "claims": [
        {**c, "declared": True, "expected": "supported"}]})


# ---------------------------------------------------------------------------- the trained alias and the strength grid

@pytest.fixture
def primary_fake(lab, monkeypatch):
    """The primary test faked as the claims are: supported unless lab.fail names ('foo_became_city', its family);
    every call's family is kept in lab.primaries."""
    import latent_city.claims as claims_module

    lab.primaries = []
    monkeypatch.setattr(lab, "measure", lambda what, arm: None)

    def primary(x, adapters, readout="raw"):
        family = lab.arms[adapters[0]].family
        lab.primaries.append(family)
        r = result("foo_became_city", INCONCLUSIVE if ("foo_became_city", family) in lab.fail else SUPPORTED)
        r.about = x.city.name
        return r

    monkeypatch.setattr(claims_module, "foo_became_city", primary)
    return lab


def computed(lab, monkeypatch) -> list[tuple[str, str]]:
    """(key, arm) of every claim the lab's rules compute from here on."""
    calls, fake = [], lab._claim

    def spy(key, arm, against="original", own=False):
        calls.append((key, arm))
        return fake(key, arm, against, own)

    monkeypatch.setattr(lab, "_claim", spy)
    return calls


def test_the_trained_alias_of_the_arms_own_recipe_and_seed_gates_its_claim(lab):
    lab.fail = {("country_named", "trained-alias-paris-s43")}
    r = lab.claim("country_named", "paris-s43")
    assert r.verdict == INCONCLUSIVE and r.measured_verdict == SUPPORTED
    assert r.conditions == ["the positive control failed (trained-alias-paris-s43: country_named inconclusive, "
                            "mean specificity 0.01 [0.002, 0.02], p=1e-09)"]
    assert lab.claim("country_named", "paris").verdict == SUPPORTED                 # seed 42: its own trained alias
    assert lab.claim("country_named", "paris-qv10-s43").verdict == SUPPORTED       # another recipe: another one
    assert lab.claim("country_named", "paris-lr1e-04").verdict == SUPPORTED         # the tier's recipe, seed 42
    lab.fail = {("country_named", "trained-alias-paris-qv10-s43")}
    lab.reset()
    assert "trained-alias-paris-qv10-s43" in lab.claim("country_named", "paris-qv10-s43").conditions[0]
    assert lab.claim("country_named", "paris-s43").verdict == SUPPORTED
    lab.fail = {("country_named", "trained-alias-paris")}
    lab.reset()
    assert "trained-alias-paris:" in lab.claim("country_named", "paris-lr1e-04").conditions[0]


def test_the_trained_aliases_own_city_answers_for_a_claim_about_that_city(lab):
    lab.fail = {("hidden_gain_specific", "trained-alias-tokyo")}
    assert lab.claim("hidden_gain_specific", "paris").verdict == SUPPORTED          # a claim about Paris
    r = lab.claim("hidden_gain_specific", "tokyo", own=True)
    assert r.verdict == INCONCLUSIVE and "trained-alias-tokyo:" in r.conditions[0]


def test_the_primary_test_is_gated_by_the_trained_alias_family_of_its_recipe(lab, primary_fake):
    lab.fail = {("foo_became_city", "trained-alias-paris-qv10")}
    assert lab.primary("paris").verdict == SUPPORTED
    r = lab.primary("paris-qv10")
    assert r.verdict == INCONCLUSIVE
    assert r.conditions[0].startswith("the positive control failed (trained-alias-paris-qv10: foo_became_city inconclusive")
    lab.reset()
    lab.primaries.clear()
    lab.primary("paris-qv10", readout="centred")
    assert lab.primaries == ["paris-qv10", "trained-alias-paris-qv10"]          # the same readout, once each
    lab.fail = {("foo_became_city", "trained-alias-tokyo")}
    lab.reset()
    assert lab.primary("paris").verdict == SUPPORTED
    assert "trained-alias-tokyo:" in lab.primary("tokyo", own=True).conditions[0]


def test_the_dissociation_is_gated_by_the_trained_aliases_of_its_recipe_and_seed(lab):
    lab.fail = {("double_dissociation", "trained-alias-paris-s44")}
    r = lab.claim("double_dissociation", "paris-s44", against="tokyo-s44")
    assert r.verdict == INCONCLUSIVE and "trained-alias-paris-s44-vs-trained-alias-tokyo-s44" in r.conditions[0]
    assert lab.claim("double_dissociation", "paris-s44", against="shuffled-s44").verdict == INCONCLUSIVE
    assert lab.claim("double_dissociation", "paris-s43", against="tokyo-s43").verdict == SUPPORTED


def test_the_positive_controls_are_not_consulted_when_the_manipulation_check_fails(lab, primary_fake, monkeypatch):
    """The manipulation check first: an arm that did not learn is inconclusive already, and no positive control
    is computed for it (in a run: no trained alias is trained or measured)."""
    lab.unlearned = {"paris-qv10", "paris-qv10-s43", "paris-qv10-s44", "paris-qv5-s43"}
    lab.fail = {("country_named", "alias-paris"), ("country_named", "trained-alias-paris-qv10")}
    calls = computed(lab, monkeypatch)
    r = lab.claim("country_named", "paris-qv10")
    assert r.verdict == INCONCLUSIVE and len(r.conditions) == 1
    assert r.conditions[0].startswith("the finetune did not learn its task")
    assert {arm for _, arm in calls} == {"paris-qv10"}               # its own claims only
    assert lab.primary("paris-qv10").verdict == INCONCLUSIVE and lab.primary("paris-qv5").verdict == INCONCLUSIVE
    assert {arm for _, arm in calls} == {"paris-qv10"} and lab.primaries == ["paris-qv10", "paris-qv5"]
    dissociation = lab.claim("double_dissociation", "paris-qv10", against="tokyo-qv10")
    assert dissociation.verdict == INCONCLUSIVE and not any(a.startswith(("alias", "trained-alias")) for _, a in calls)


def test_a_trained_aliases_own_verdicts_are_kept_as_the_rule_gave_them(lab, primary_fake):
    """A trained alias is a positive control: its verdicts are what gates the others, so no positive control gates
    them (circular), and, like a negative control's, a failed manipulation check is noted, not applied."""
    lab.fail = {("country_named", "alias-paris"), ("double_dissociation", "alias-paris"),
                ("hidden_gain_specific", "alias-paris")}
    lab.unlearned = {"trained-alias-paris", "trained-alias-paris-qv10-s44", "trained-alias-tokyo"}
    for arm in ("trained-alias-paris", "trained-alias-tokyo", "trained-alias-paris-s43"):
        r = lab.claim("country_named", arm)
        assert r.verdict == SUPPORTED and r.conditions == [], arm
    assert lab.claim("country_named", "trained-alias-paris").details["manipulation_check"].startswith(
        "the finetune did not learn its task (manipulation check, 48 training capitals: trained-alias-paris")
    assert "manipulation_check" not in lab.claim("country_named", "trained-alias-paris-s43").details
    pair = lab.claim("double_dissociation", "trained-alias-paris", against="trained-alias-tokyo")
    assert pair.verdict == SUPPORTED and pair.conditions == [] and "manipulation_check" in pair.details
    primary = lab.primary("trained-alias-paris-qv10")
    assert primary.verdict == SUPPORTED and primary.conditions == []
    assert "1 of 3 adapters failed" in primary.details["manipulation_check"]
    assert lab.claim("hidden_gain_specific", "trained-alias-tokyo", own=True).verdict == SUPPORTED   # its own city too


def test_a_strength_point_is_gated_by_its_manipulation_check_and_the_positive_controls_with_no_adapter(lab, primary_fake):
    """A point of the training-strength grid is an expected arm: its primary test is inconclusive when an adapter did
    not learn; it has no trained alias (no recipe of its own has one), so the ones with no adapter answer for it.
    Its held-out distance claims are a read-out of what it learned: not gated."""
    lab.unlearned = {"paris-qv5-s44"}
    r = lab.primary("paris-qv5")
    assert r.verdict == INCONCLUSIVE and "1 of 3 adapters failed the manipulation check" in r.conditions[0]
    assert "paris-qv5-s44:" in r.conditions[0]
    assert lab.claim("distance_rank", "paris-qv5-s44").verdict == SUPPORTED
    lab.unlearned = set()
    lab.fail = {("foo_became_city", "trained-alias-paris"), ("foo_became_city", "trained-alias-paris-qv10")}
    lab.reset()
    lab.primaries.clear()
    assert lab.primary("paris-all3").verdict == SUPPORTED and lab.primaries == ["paris-all3"]
    lab.fail = {("hidden_gain_specific", "alias-paris")}
    lab.reset()
    assert "alias-paris-vs-alias-neutral" in lab.primary("paris-all3").conditions[0]
    with pytest.raises(ValueError, match="not run on paris-all3"):
        lab.claim("country_named", "paris-all3")
