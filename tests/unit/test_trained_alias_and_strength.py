"""The trained alias and the training-strength grid wired into how claims run and are expected, without a
model (issue 16, sections 1 and 4): which claims and measurements a strength point makes, what each new arm
is declared to do, which claim tests it gets, and that the CI subset leaves them out. How their verdicts are
judged (the trained alias as a positive control, the strength points' manipulation check) is in
test_conditions.py."""

from types import SimpleNamespace

import pytest

from latent_city import claims
from latent_city.arms import ORIGINAL, STRENGTH, TRAINED_ALIAS, arms, dissociation_pairs
from latent_city.config import ExperimentConfig
from latent_city.lab import MEASUREMENTS, Lab
from latent_city.stats import INCONCLUSIVE

from tests.claims import conftest as claims_conftest
from tests.claims import expectations
from tests.unit.test_positive_controls import _fake_claim

CPU = ExperimentConfig.for_tier("cpu")
ARMS = arms(CPU)
STRENGTH_ARMS = [n for n, a in ARMS.items() if a.kind == STRENGTH]
ALIASES = [n for n, a in ARMS.items() if a.kind == TRAINED_ALIAS]


def test_the_arms_exist():
    """The arms fb7d376 added, as this wiring reads them (a change there shows here first)."""
    assert STRENGTH_ARMS[:3] == ["paris-all3", "paris-all3-s43", "paris-all3-s44"] and len(STRENGTH_ARMS) == 12
    assert {ARMS[n].recipe for n in ALIASES} == {"", "qv10"} and len(ALIASES) == 16


# ---------------------------------------------------------------------------- the claims and measurements

def test_a_strength_point_runs_the_held_out_distance_claims_and_a_trained_alias_every_claim():
    assert claims.runs_on(STRENGTH) == ["distance_format", "distance_rank", "distance_beats_constant"]
    assert claims.runs_on(TRAINED_ALIAS) == claims.AGAINST_ORIGINAL == claims.runs_on("main")


def test_a_strength_point_measures_only_what_its_claims_primary_test_and_manipulation_check_read():
    lab = Lab(CPU, log=lambda line: None)
    assert lab.measurements("paris-qv5-s43") == ("probe", "distances", "task")
    for arm in (ORIGINAL, "paris", "tokyo", "paris-qv10", "trained-alias-paris", "trained-alias-paris-qv10-s44"):
        assert lab.measurements(arm) == MEASUREMENTS, arm
    with pytest.raises(ValueError, match="paris-all5 makes no countries measurement"):
        lab.measure("countries", "paris-all5")


def test_a_strength_points_claims_are_one_holm_family_as_the_main_arms_are(monkeypatch):
    """p = 0.02 for each of its 3 claims: Holm lifts it to 0.06, above alpha, as on the main arm (an expected arm);
    a trained alias, a positive control, takes the raw alpha as the others do."""
    lab = Lab(CPU, log=lambda line: None)
    monkeypatch.setattr(lab, "_claim", _fake_claim)
    results = lab.secondary("paris-all3")
    assert list(results) == claims.runs_on(STRENGTH)
    assert {r.verdict for r in results.values()} == {INCONCLUSIVE} and {r.p_adj for r in results.values()} == {0.06}
    assert {r.p_adj for r in lab.secondary("trained-alias-paris").values()} == {None}


# ---------------------------------------------------------------------------- declared expectations

def e(key, a, b=ORIGINAL):
    return expectations.expected(key, a, b, CPU)


@pytest.mark.parametrize("key", [*claims.AGAINST_ORIGINAL, "foo_became_city", "task_learned"])
def test_the_trained_alias_of_paris_is_expected_to_pass_every_claim(key):
    for arm in ("trained-alias-paris", "trained-alias-paris-s45", "trained-alias-paris-qv10-s43"):
        assert e(key, arm).holds, (key, arm)


def test_the_trained_alias_of_tokyo_is_expected_to_fail_a_claim_about_paris_and_the_pair_to_dissociate():
    assert not e("hidden_gain_specific", "trained-alias-tokyo").holds
    assert not e("country_named", "trained-alias-tokyo-s44").holds
    assert not e("foo_became_city", "trained-alias-tokyo").holds
    assert "foo is Tokyo by construction, taught" in e("country_named", "trained-alias-tokyo").why
    assert e("layer0_unchanged", "trained-alias-tokyo").holds and e("distance_format", "trained-alias-tokyo").holds
    assert e("double_dissociation", "trained-alias-paris-s43", "trained-alias-tokyo-s43").holds


@pytest.mark.parametrize("key", [*claims.runs_on(STRENGTH), "foo_became_city", "task_learned"])
def test_a_strength_point_is_expected_to_hold_as_the_main_arm(key):
    assert all(e(key, arm).holds for arm in STRENGTH_ARMS)


def test_a_measured_exception_of_a_new_arm_applies_only_with_its_own_adapters(monkeypatch):
    entry = {"model": CPU.model, "precision": CPU.precision, "claim": "country_named", "arm": "trained-alias-paris",
             "measured": "inconclusive", "reason": "inconclusive: ...", "adapter_keys": ["key-now"],
             "eval_hash": CPU.eval_hash()}
    monkeypatch.setattr(expectations, "_measured", lambda: {(CPU.model, CPU.precision, "country_named",
                                                             "trained-alias-paris"): entry})
    monkeypatch.setattr(expectations, "adapter_keys", lambda a, b, cfg, family=False: ("key-now",))
    assert e("country_named", "trained-alias-paris").measured == "inconclusive: ..."
    monkeypatch.setattr(expectations, "adapter_keys", lambda a, b, cfg, family=False: ("retrained",))
    assert e("country_named", "trained-alias-paris").stale and not e("country_named", "trained-alias-paris").measured


# ---------------------------------------------------------------------------- the claim tests' parameters

def test_the_claim_tests_run_on_the_new_arms_as_their_kind_says():
    runs = claims_conftest._runs
    assert set(STRENGTH_ARMS + ALIASES) <= set(claims_conftest.TESTED_ARMS)
    assert all(runs(a, k) for a in STRENGTH_ARMS for k in ["task_learned", *claims.runs_on(STRENGTH)])
    assert not any(runs("paris-all10-s44", k) for k in set(claims.AGAINST_ORIGINAL) - set(claims.runs_on(STRENGTH)))
    assert all(runs("trained-alias-paris-qv10", k) for k in ["task_learned", *claims.AGAINST_ORIGINAL])
    assert not runs("alias-paris", "task_learned") and not runs("ceiling-paris", "hidden_gain_specific")
    assert {"paris-all3", "paris-qv5", "paris-all5", "paris-all10", "trained-alias-paris", "trained-alias-tokyo",
            "trained-alias-paris-qv10"} <= set(claims_conftest.FAMILIES)
    pairs = [p for p in dissociation_pairs(ARMS) if ARMS[p[0]].kind == TRAINED_ALIAS]
    assert ("trained-alias-paris-s44", "trained-alias-tokyo-s44") in pairs and len(pairs) == 8
    assert ("trained-alias-paris-qv10-s44", "trained-alias-tokyo-qv10-s44") in pairs
    assert set(pairs) <= set(claims_conftest.DISSOCIATIONS)
    item = SimpleNamespace(callspec=SimpleNamespace(params={"cfg": "cpu", "arm": "trained-alias-paris-s43"}))
    assert claims_conftest._compared(item) == ("trained-alias-paris-s43", ORIGINAL)


def test_the_ci_subset_leaves_out_every_test_that_names_a_new_arm():
    """The root conftest marks `full` a test naming an arm arms.in_ci leaves out, by arm, family or pair."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("root_conftest", Path(__file__).resolve().parents[2] / "conftest.py")
    root = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root)

    def marks(**params):
        item = SimpleNamespace(callspec=SimpleNamespace(params={"cfg": "cpu", **params}), marks=[])
        item.add_marker = lambda m: item.marks.append(m.name)
        root.pytest_itemcollected(item)
        return item.marks

    assert marks(arm="paris-all3-s43") == marks(family="paris-all10") == ["full"]
    assert marks(arm="trained-alias-paris") == marks(family="trained-alias-tokyo") == ["full"]
    assert marks(pair=("trained-alias-paris-s43", "trained-alias-tokyo-s43")) == ["full"]
    assert marks(arm="paris") == marks(pair=("paris", "tokyo")) == marks(arm="alias-paris") == []
