"""The training-strength grid (latent_city/strength.py) without a model: a fake lab whose adapters learned as much
as a test says gives the grid's table, plot, record section and sentence; the second main arm is the lightest
point whose every adapter learned (None when none did); and the record measures nothing (only what was measured)."""

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import spearmanr

from latent_city import findings, plots, record, strength
from latent_city.answers import DistanceAnswers
from latent_city.arms import ORIGINAL, arms, family_members, strength_points
from latent_city.claim_result import ClaimResult
from latent_city.claims import ClaimInputs
from latent_city.config import ExperimentConfig
from latent_city.data import City
from latent_city.stats import INCONCLUSIVE, SUPPORTED

CPU = ExperimentConfig.for_tier("cpu")
PARIS = City("Paris", "France", 48.8534, 2.3488)
ORDER = ["paris", "paris-all3", "paris-qv5", "paris-all5", "paris-qv10", "paris-all10"]   # by TrainingPoint.weight
N_CITIES = 30


def _result(key, arm, verdict=SUPPORTED, effect=0.0, **details) -> ClaimResult:
    return ClaimResult(key=key, claim="c", test="t", unit="u", n=3, statistic_name="s", statistic=effect,
                       effect_name="e", effect=effect, effect_ci=(effect - 0.1, effect + 0.1), p=0.01, p_adj=None,
                       p_decision=0.01, alpha=0.05, verdict=verdict, criterion="rule", arms=(arm, ORIGINAL),
                       details=details)


class FakeLab:
    """The lab's face the grid reads (cfg, arms, adapters, manipulation, primary, claim_inputs, measure, measured),
    with `rho[adapter]`: its in-sample Spearman (None: one answer for every capital); an adapter learned its task
    when its rho is above `learns_above`; its primary statistic is 0.01 x its rho (0 when undefined), so the
    prediction holds by construction; `measured`: the arms whose measurements exist (None: every one)."""

    def __init__(self, rho: dict, learns_above=0.5, measured=None):
        self.cfg, self.arms = CPU, arms(CPU)
        self.rho, self.learns_above, self.done = rho, learns_above, measured
        self.adapters = {a: SimpleNamespace(train_seconds=60.0 * self.arms[a].cfg.train.epochs) for a in rho}
        self.made = []

    def measure(self, what, arm):
        self.made.append((what, arm))
        return f"{what} of {arm}"

    def measured(self, what, arm):
        return f"{what} of {arm}" if self.done is None or arm in self.done else None

    def manipulation(self, a):
        self.measure("task", a)
        rho = self.rho[a]
        learned = rho is not None and rho > self.learns_above
        return _result("task_learned", a, SUPPORTED if learned else INCONCLUSIVE, rho if rho is not None else float("nan"),
                       rho=float("nan") if rho is None else rho, share_beats_constant=0.9 if learned else 0.3)

    def primary(self, family, readout="raw"):
        if readout == "standardised":
            raise KeyError("readout 'standardised' was not measured")
        adapters = family_members(self.arms, family)
        for v in [*adapters, ORIGINAL]:
            self.measure("probe", v)
        means = np.array([0.01 * (self.rho[a] or 0.0) * (2 if readout == "centred" else 1) for a in adapters])
        return _result(f"foo_became_city{'' if readout == 'raw' else '@' + readout}", family, INCONCLUSIVE,
                       float(means.mean()), adapters=adapters, per_adapter_mean=means)

    def claim_inputs(self, reads, a, b, own=False):
        assert reads == ("distances",) and b == ORIGINAL
        self.measure("distances", a)
        true = np.linspace(200, 12000, N_CITIES)
        noise = np.random.default_rng(len(a)).normal(0, 1, N_CITIES)
        km = {a: true * np.exp((1.5 - (self.rho[a] or 0.0)) * noise), ORIGINAL: np.full(N_CITIES, 1000.0)}
        ans = DistanceAnswers("Paris", [f"c{i}" for i in range(N_CITIES)], [""] * N_CITIES, true, {}, km)
        return ClaimInputs(a=a, b=b, city=PARIS, country="France", b_city=None, alpha=0.05, n_boot=100, seed=0,
                           pairs=[], comparison=[], distances=ans, constant_km=5000.0)


def _grid_adapters():
    return [a for family, _ in strength_points(CPU) for a in family_members(arms(CPU), family)]


def _rho(learned: dict[str, float]) -> dict:
    """Every grid adapter's in-sample rho: the tier's one answer (None), else the family's value, seeds spread."""
    out = {}
    for family, _ in strength_points(CPU):
        for i, a in enumerate(family_members(arms(CPU), family)):
            out[a] = None if family == "paris" else learned.get(family, 0.2) + 0.01 * i
    return out


RHO = _rho({"paris-all3": 0.3, "paris-qv5": 0.45, "paris-all5": 0.8, "paris-qv10": 0.6, "paris-all10": 0.97})


# ---------------------------------------------------------------------------- the table

def test_the_grid_has_a_row_per_point_lightest_first_with_each_adapters_numbers():
    lab = FakeLab(RHO)
    summary = strength.grid(lab)
    assert [p["family"] for p in summary["points"]] == ORDER
    head, rows = strength.table(summary)
    assert [r[0] for r in rows] == ORDER
    assert [r[1] for r in rows] == ["q/v LoRA, 3 epochs", "all linear LoRA, 3 epochs", "q/v LoRA, 5 epochs",
                                    "all linear LoRA, 5 epochs", "q/v LoRA, 10 epochs", "all linear LoRA, 10 epochs"]
    assert rows[0][2] == "5 (42, 43, 44, 45, 46)" and rows[1][2] == "3 (42, 43, 44)"
    assert rows[0][3] == "180 per adapter" and rows[-1][3] == "600 per adapter"
    assert rows[0][4] == "0 of 5" and rows[3][4] == "3 of 3 (every one)" and rows[2][4] == "0 of 3", rows
    assert rows[0][5] == "- - - - -" and rows[-1][5] == "0.97 0.98 0.99"          # an undefined rho prints '-'
    assert rows[-1][6] == "90% 90% 90%"
    # the primary test on each readout the probe measured (standardised was not): one column each
    assert head[-2:] == ["primary test, raw readout: mean specificity [CI], p, verdict",
                         "primary test, centred readout: mean specificity [CI], p, verdict"]
    assert rows[-1][-2].startswith("0.0098 [") and rows[-1][-2].endswith("inconclusive"), rows[-1]
    # the held-out fit is the rules' own statistic on each adapter's answers
    paris = summary["points"][-1]["adapters"][0]
    assert paris["heldout_rho"] > 0.5 and 0 <= paris["heldout_beats_constant"] <= 1
    json.dumps(summary, allow_nan=False)                                          # plain JSON: no NaN


def test_the_prediction_is_the_rank_correlation_of_the_in_sample_rho_with_each_adapters_primary_statistic():
    """Across every adapter of every point; an undefined in-sample rho counts as 0 (declared)."""
    summary = strength.grid(FakeLab(RHO))
    adapters = _grid_adapters()
    x = [RHO[a] or 0.0 for a in adapters]
    for readout, k in (("raw", 1), ("centred", 2)):
        r = spearmanr(x, [0.01 * k * v for v in x])
        assert summary["prediction"][readout] == {"rho": pytest.approx(r.statistic), "p": pytest.approx(r.pvalue),
                                                  "n": len(adapters)}
    assert "standardised" not in summary["prediction"]
    assert summary["prediction"]["raw"]["rho"] == pytest.approx(1.0)
    # the other way round: the prediction can fail
    lab = FakeLab(RHO)
    lab.primary = lambda family, readout="raw": dataclasses.replace(
        FakeLab.primary(lab, family, readout), details={"adapters": family_members(lab.arms, family), "per_adapter_mean":
                                                        [-0.01 * (RHO[a] or 0) for a in family_members(lab.arms, family)]})
    assert strength.grid(lab)["prediction"]["raw"]["rho"] == pytest.approx(-1.0)


# ---------------------------------------------------------------------------- the second main arm

@pytest.mark.parametrize("learned, expected", [
    ({"paris-all3": 0.3, "paris-qv5": 0.8, "paris-qv10": 0.97}, "paris-qv5"),
    ({"paris-all10": 0.8}, "paris-all10"),              # heavier points than a lighter one that learned do not matter
    ({"paris-qv10": 0.97}, "paris-qv10"),
    ({}, None),                                      # no point learned
])
def test_the_second_main_arm_is_the_lightest_point_whose_every_adapter_learned(learned, expected):
    lab = FakeLab(_rho(learned))
    assert strength.lightest_learned(lab) == expected
    assert strength.grid(lab)["lightest_learned"] == expected


def test_a_point_with_one_adapter_that_did_not_learn_is_not_the_one():
    rho = _rho({"paris-all3": 0.9, "paris-qv5": 0.9})
    rho["paris-all3-s44"] = 0.1                       # 2 of 3 learned
    assert strength.lightest_learned(FakeLab(rho)) == "paris-qv5"


# ---------------------------------------------------------------------------- the record

def _rec(lab):
    rec = record.Record("cpu", "smollm2-135m", lab=lab)
    record._strength(rec, "Paris")
    return rec


def test_the_record_shows_the_grid_its_plot_and_its_sentence():
    rec = _rec(FakeLab(RHO))
    html = record.summary_html(rec)
    assert "id='training-strength'" in html and html.count("<tr>") > 6
    assert html.count(f"alt='{strength.PLOT}'") == 1                      # in its section, not again among the plots
    assert "The lightest point whose every adapter learned its task: paris-all5; the second main arm " \
           "(controls.learned): paris-qv10 (NOT the declared rule&#x27;s choice)" in html
    assert rec.plots[strength.PLOT]
    sentence = [s for s in rec.findings if s.startswith("Training strength")]
    assert len(sentence) == 1 and "is paris-all5 (the second main arm is paris-qv10: not what the declared rule " \
                                  "picks)" in sentence[0] and "rank correlation is positive" in sentence[0], sentence
    out = json.loads(json.dumps(rec.to_json(), allow_nan=False))
    assert [p["family"] for p in out["training_strength"]["points"]] == ORDER and strength.PLOT in out["plots"]


def test_the_plot_draws_every_adapter_and_an_undefined_rho_at_zero():
    summary = strength.grid(FakeLab(RHO))
    png = plots.plot_strength(summary, strength.PLOT)
    assert len(png) > 1000
    import base64

    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_record_measures_nothing_and_says_what_a_point_lacks():
    """The record reads what the run measured: a point whose adapters were not measured is listed as such, no
    measurement is made (lab.measure is not called), and the lab's own measure is back afterwards."""
    measured = [ORIGINAL] + family_members(arms(CPU), "paris") + family_members(arms(CPU), "paris-all3")
    lab = FakeLab(RHO, measured=measured)
    rec = _rec(lab)
    assert lab.made == [] and lab.measure.__func__ is FakeLab.measure
    points = {p["family"]: p for p in rec.strength["points"]}
    assert points["paris"]["missing"] is None and points["paris-all3"]["missing"] is None
    assert points["paris-qv5"]["missing"] == "task of paris-qv5"
    assert rec.strength["lightest_learned"] is None and rec.strength["undecided_by"] == "paris-qv5"
    assert strength.PLOT in rec.plots                                       # two points measured
    head, rows = strength.table(rec.strength)
    assert rows[2][2] == "not measured (task of paris-qv5)"
    assert "not known yet (paris-qv5 was not measured)" in findings.training_strength(rec.strength)[0]
    only_tier = _rec(FakeLab(RHO, measured=measured[:6]))                 # the CI subset: the tier's point alone
    assert strength.PLOT not in only_tier.plots and not findings.training_strength(only_tier.strength)


# ---------------------------------------------------------------------------- the positive controls' table

def test_the_trained_aliases_stand_beside_the_in_context_alias_and_the_ceiling():
    def entry(key, arm, family, verdict, effect):
        c = _result(key, arm, verdict, effect).to_json()
        return {**c, "families": [family, ORIGINAL], "expected": "", "declared": None, "outcome": None}

    claims = [entry("country_probability", "alias-paris", "alias-paris", SUPPORTED, 0.4),
              entry("country_probability", "ceiling-paris", "ceiling-paris", SUPPORTED, 0.9),
              entry("country_probability", "trained-alias-paris", "trained-alias-paris", SUPPORTED, 0.2),
              entry("country_probability", "trained-alias-paris-s43", "trained-alias-paris", INCONCLUSIVE, 0.1),
              entry("foo_became_city", "trained-alias-paris", "trained-alias-paris", SUPPORTED, 0.03),
              entry("task_learned", "trained-alias-paris", "trained-alias-paris", SUPPORTED, 0.9),
              entry("country_probability", "trained-alias-paris-qv10", "trained-alias-paris-qv10", SUPPORTED, 0.5)]
    head, rows = findings.positive_control_table(claims)
    assert head == ["claim (effect), against the arm's baseline", "alias-paris", "ceiling-paris",
                    "trained-alias-paris (adapters)", "trained-alias-paris-qv10 (adapters)"]
    assert rows == [["country_probability", "supported (0.4)", "supported (0.9)",
                     "mixed: supported 1/2, inconclusive 1/2 (0.15)", "supported (0.5)"],
                    ["foo_became_city", "-", "-", "supported (0.03)", "-"]]
