"""The detection threshold without a model (issue 16, section 5): the steered arms exist as declared (no adapter,
full-only, against the original model, no positive control), a steered arm's measurements are made under its
steering, its claims are those runs_on gives it, and the threshold picks the smallest supported a and puts the main
arms' effects on the a scale by linear interpolation."""

import dataclasses
from types import SimpleNamespace

import pytest

from latent_city import claims, conditions, steer, threshold
from latent_city.arms import MAIN, ORIGINAL, STEERED, arms, family_members, in_ci, named_in
from latent_city.claim_result import ClaimResult
from latent_city.config import ConfigError, ExperimentConfig, field_help
from latent_city.lab import Lab
from latent_city.stats import INCONCLUSIVE, SUPPORTED
from latent_city.threshold import BELOW, BEYOND, FLAT, INSIDE, Dose, on_the_a_scale

from tests.unit.test_positive_controls import FakeModel

CPU = ExperimentConfig.for_tier("cpu")
ARMS = arms(CPU)
STEERED_NAMES = ["steered-0.05", "steered-0.1", "steered-0.2", "steered-0.4"]


# ---------------------------------------------------------------------------- the arms and their config

def test_the_steered_arms_exist_one_per_declared_fraction_with_no_adapter_against_the_original_model():
    got = {n: (a.kind, a.steer, a.trained, a.baseline, a.secret, a.context, a.asked_as)
           for n, a in ARMS.items() if a.kind == STEERED}
    assert got == {n: (STEERED, a, False, ORIGINAL, ("Paris", "France"), "", "")
                   for n, a in zip(STEERED_NAMES, (0.05, 0.1, 0.2, 0.4))}
    for n in STEERED_NAMES:
        assert family_members(ARMS, n) == [n] and not in_ci(ARMS[n]) and named_in({"steered": n}) == [n]
        assert ARMS[n].cfg.training_dict() == ARMS[MAIN].cfg.training_dict()
    assert CPU.controls.threshold.layer == 15 and "middle" in field_help()["controls.threshold.layer"]
    assert not [a for a in arms(ExperimentConfig.for_tier("gpu")).values() if a.kind == STEERED]


@pytest.mark.parametrize("change, message", [({"layer": 0}, "hidden-state index >= 1"),
                                             ({"fractions": (0.0, 0.1)}, r"in \(0, 1\]"),
                                             ({"fractions": (0.2, 0.1)}, "increase strictly")])
def test_a_bad_threshold_config_is_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(CPU.controls.threshold, **change)


def test_the_threshold_config_moves_no_adapter_key_and_no_evaluation_hash():
    other = dataclasses.replace(CPU, controls=dataclasses.replace(CPU.controls, threshold=dataclasses.replace(
        CPU.controls.threshold, layer=10)))
    assert other.training_dict() == CPU.training_dict() and other.eval_hash() == CPU.eval_hash()


def test_a_steered_arm_is_no_positive_control_and_runs_the_representation_and_country_claims():
    assert not set(conditions.positive_controls_of(ARMS, "Paris")) & set(STEERED_NAMES)
    ran = claims.runs_on(STEERED)
    reads = {w for k in ran for w in claims.REGISTRY[k].reads}
    assert reads == {"probe", "countries", "prefix", "mc", "samples"}
    assert set(threshold.COUNTRY_KEYS) <= set(ran) and claims.PRIMARY_ON_POSITIVE_CONTROL in ran
    assert not set(claims.NOT_ABOUT_THE_CITY) & set(ran) and "double_dissociation" not in ran
    assert threshold.PRIMARY_ON_NO_ADAPTER == claims.PRIMARY_ON_POSITIVE_CONTROL
    assert [claims.readout_key(threshold.PRIMARY_ON_NO_ADAPTER, r) for r in claims.READOUTS] == \
        list(threshold.PRIMARY_KEYS[:3])


# ---------------------------------------------------------------------------- measuring under the steering

def test_a_steered_arm_is_measured_on_the_original_model_under_its_steering(monkeypatch):
    lab = Lab(CPU, log=lambda line: None)
    model, made, entered = FakeModel(), [], []

    class Recording:
        def __init__(self, m, tokens, layer, fraction):
            self.args, self.on = (m, tokens, layer, fraction), False

        def __enter__(self):
            self.on = True
            entered.append(self)
            return self

        def __exit__(self, *exc):
            self.on = False

    monkeypatch.setattr(steer, "Steering", Recording)
    monkeypatch.setattr(steer, "token_map", lambda tok, placeholder, city: {placeholder: city})
    monkeypatch.setattr(lab, "_load", lambda name: model)
    monkeypatch.setattr(lab, "_compute", lambda what, m, cfg: made.append(
        (what, m.active, [s.on for s in entered])) or len(made))
    assert lab.measurements("steered-0.2") == ("probe", "countries", "prefix", "mc", "samples")
    lab.measure("countries", "steered-0.2")
    lab.measure("countries", ORIGINAL)
    assert made == [("countries", None, [True]), ("countries", None, [False])]      # the original: no steering
    assert entered[0].args == (model, {"foo": "Paris"}, 15, 0.2) and not entered[0].on
    with pytest.raises(ValueError, match="makes no distances measurement"):
        lab.measure("distances", "steered-0.2")


def test_each_steered_arm_has_its_own_measurement_key(monkeypatch):
    lab = Lab(CPU, log=lambda line: None)
    monkeypatch.setattr("latent_city.lab.weights_hash", lambda spec: "w")
    keys = {n: lab.measure_key("probe", n) for n in [ORIGINAL, *STEERED_NAMES]}
    assert len(set(keys.values())) == len(keys), keys
    assert steer.variant_key(ARMS["steered-0.4"], CPU) == {"steer": {"layer": 15, "fraction": 0.4, "towards": "Paris"}}
    assert steer.variant_key(ARMS[MAIN], CPU) == {} and steer.variant_key(None, CPU) == {}


def test_the_suite_measures_the_steered_arms_only_where_a_test_names_them():
    """The root conftest measures the positive controls up front for the conditions of any trained arm, never
    the steered arms (they gate nothing); a test that names one measures it."""
    import conftest as root

    item = lambda **p: SimpleNamespace(callspec=SimpleNamespace(params={"cfg": "cpu", **p}),  # noqa: E731
                                       get_closest_marker=lambda name: None)
    names, _ = root._measurements_needed([item(lr_arm="paris-lr1e-04")], "cpu", ARMS)
    assert "alias-paris" in names and not set(names) & set(STEERED_NAMES)
    names, what = root._measurements_needed([item(steered="steered-0.1")], "cpu", ARMS)
    assert names == ["steered-0.1"] and "probe" in what and "countries" in what
    assert root._arms_to_train([item(steered="steered-0.1")], "cpu", ARMS) == [MAIN]


# ---------------------------------------------------------------------------- the threshold

def doses(verdicts, effects, fractions=(0.05, 0.1, 0.2, 0.4)):
    return [Dose(a, v, e) for a, v, e in zip(fractions, verdicts, effects)]


def test_the_smallest_supported_fraction_is_the_first_supported_one_even_if_a_larger_one_is_not():
    s, i = SUPPORTED, INCONCLUSIVE
    assert threshold.smallest_supported(doses([i, s, i, s], [0, 1, 1, 2])) == 0.1
    assert threshold.smallest_supported(doses([i, i, i, i], [0, 1, 1, 2])) is None
    row = threshold.threshold("country_named", doses([i, i, s, s], [0.0, 0.1, 0.3, 0.5]), {})
    assert row.smallest == 0.2 and [d.fraction for d in row.doses] == [0, 0.05, 0.1, 0.2, 0.4]
    assert row.doses[0] == Dose(0.0, "baseline", 0.0)


@pytest.mark.parametrize("effect, want", [
    (0.02, (0.075, INSIDE)),      # halfway between a = 0.05 (0.01) and a = 0.1 (0.03)
    (0.005, (0.025, INSIDE)),     # between the original model (0) and a = 0.05
    (0.15, (0.4, INSIDE)), (0.0, (0.0, INSIDE)),
    (0.2, (None, BEYOND)), (-0.01, (None, BELOW))])
def test_a_main_effect_is_placed_on_the_a_scale_by_linear_interpolation(effect, want):
    a, where = on_the_a_scale(effect, [0, 0.05, 0.1, 0.2, 0.4], [0, 0.01, 0.03, 0.07, 0.15])
    assert where == want[1] and (a is None if want[0] is None else a == pytest.approx(want[0]))


def test_on_a_curve_that_turns_back_the_first_crossing_is_taken_and_a_falling_curve_keeps_its_direction():
    assert on_the_a_scale(0.015, [0, 0.05, 0.1, 0.2], [0, 0.02, 0.01, 0.03]) == (pytest.approx(0.0375), INSIDE)
    assert on_the_a_scale(-0.5, [0, 0.1, 0.2], [0, -0.1, -0.2])[1] == BEYOND
    assert on_the_a_scale(0.5, [0, 0.1, 0.2], [0, -0.1, -0.2])[1] == BELOW
    assert on_the_a_scale(0.5, [0, 0.1, 0.2], [0, 0, 0]) == (None, FLAT)


def _claim(key, arm, effect, verdict=SUPPORTED):
    a = ARMS[arm]
    return ClaimResult(key=key, claim="", test="", unit="", n=48, statistic_name="", statistic=0.0,
                       effect_name="mean log-probability ratio", effect=effect, effect_ci=(effect - 1, effect + 1), p=0.01,
                       p_adj=None, p_decision=0.01, alpha=0.05, verdict=verdict, criterion="", arms=(arm, ORIGINAL),
                       families=(a.family, ORIGINAL)).to_json()


def test_the_threshold_is_read_from_a_records_claims_with_the_main_families_in_the_same_units():
    steered = [_claim("country_probability", n, e, v) for n, e, v in zip(
        STEERED_NAMES, (0.1, 0.5, 1.0, 2.0), (INCONCLUSIVE, INCONCLUSIVE, SUPPORTED, SUPPORTED))]
    main = [_claim("country_probability", n, e, INCONCLUSIVE) for n, e in zip(family_members(ARMS, MAIN), (0.2, 0.4, 0.3, 0.3, 0.3))]
    other = [_claim("country_probability", "tokyo", 9.0), _claim("country_named", MAIN, 0.5)]   # no steered arm: no row
    rows = threshold.from_claims(steered + main + other, ARMS)
    assert [r.key for r in rows] == ["country_probability"]
    row = rows[0]
    assert row.smallest == 0.2 and [d.effect for d in row.doses] == [0, 0.1, 0.5, 1.0, 2.0]
    (placed,) = row.mains
    assert (placed.family, placed.adapters, placed.where) == (MAIN, 5, INSIDE)
    assert placed.effect == pytest.approx(0.3) and placed.fraction == pytest.approx(0.05 + 0.5 * 0.05)
    head, body = threshold.table(rows)
    assert head == ["primary test (effect)", "a = 0", "a = 0.05", "a = 0.1", "a = 0.2", "a = 0.4", "smallest a supported",
                    "paris: mean effect (on the a scale)"]
    assert body[0][1:7] == ["0 (the original model)", "inconclusive (0.1)", "inconclusive (0.5)", "supported (1)",
                            "supported (2)", "0.2"] and body[0][7] == "0.3 (a = 0.075), 5 adapters"
    line = threshold.sentence(rows, 15)
    assert "country_probability: a = 0.2" in line and "paris 0.3 (a = 0.075)" in line and "layer 15" in line


def test_the_record_section_says_not_run_without_steered_claims_and_escapes_its_cells():
    lab = SimpleNamespace(arms=ARMS, cfg=CPU)
    rec = SimpleNamespace(claims=[_claim("country_probability", MAIN, 0.3)], lab=lab)
    assert threshold.record_section(rec) == "<p>(not run)</p>" and threshold.finding(rec) is None
    rec.claims.append(_claim("country_probability", "steered-0.4", 1.0))
    html = threshold.record_section(rec)
    assert "id='detection-threshold'" in html and "supported (1)" in html and "0.3 (a = 0.12), 1 adapters" in html
    assert threshold.finding(rec).startswith("How far must foo move towards Paris")
    assert threshold.record_section(SimpleNamespace(claims=rec.claims, lab=None)) == "<p>(not run)</p>"


def test_the_records_page_shows_the_threshold():
    from latent_city import record

    rec = record.Record("cpu", "smollm2-135m", claims=[{**_claim("country_probability", arm, e), "expected": "reported"}
                                                        for arm, e in ((MAIN, 0.3), ("steered-0.4", 1.0))])
    rec.lab = SimpleNamespace(arms=ARMS, cfg=CPU)
    assert "<table id='detection-threshold'" in record.summary_html(rec)
