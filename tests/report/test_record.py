"""The record stage without a model: JSON round trip and the comparison command."""

import dataclasses
import json

import numpy as np

from latent_city import plots, record
from latent_city.answers import CountryScores
from latent_city.claim_result import ClaimResult


def _claim(p):
    return ClaimResult(key="k", claim="a claim", test="a test", unit="units", n=10, statistic_name="a statistic",
                       statistic=1.0, effect_name="effect", effect=0.5, effect_ci=(0.1, 0.9), p=p, p_adj=None,
                       p_decision=p, alpha=0.05, verdict="supported" if p < 0.05 else "inconclusive", criterion="p < 0.05", arms=("finetuned", "original"),
                       details={"x": np.arange(3)})


def _rec(p):
    r = record.Record("cpu", "m", provenance={"config_hash": "c", "data_hash": "d", "weights_hash": "w",
                                              "adapter_key": "a"})
    r.add_claim(_claim(p), "holds")
    return r


def test_compare_shows_no_change_for_identical_runs(tmp_path):
    a = record.write_json(_rec(0.01), tmp_path / "a.json")
    b = record.write_json(_rec(0.01), tmp_path / "b.json")
    assert record.main(["compare", str(a), str(b)]) == 0


def test_compare_names_what_changed(tmp_path, capsys):
    a = record.write_json(_rec(0.01), tmp_path / "a.json")
    b = record.write_json(_rec(0.2), tmp_path / "b.json")
    assert record.main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "claim k (finetuned vs original).verdict: supported -> inconclusive" in out and ".p: 0.01 -> 0.2" in out


def test_claims_table_escapes_and_lists_every_claim():
    html = record.claims_table([_claim(0.01).to_json() | {"expected": "holds <b>", "outcome": "passed"}])
    assert "claims-table" in html and "holds &lt;b&gt;" in html and html.count("claim-row") == 1


def test_the_claims_table_shows_a_repeated_criterion_and_test_once_per_claim_key():
    c = _claim(0.01).to_json() | {"expected": "holds", "outcome": "passed"}
    html = record.claims_table([c, c | {"arms": ["other", "original"]}, c | {"key": "k2"}])
    assert html.count("claim-row") == 3
    assert html.count("p &lt; 0.05") == 2 and html.count("(criterion as in the first k row above)") == 1
    assert html.count("a test (") == 2 and html.count("(test as in the first k row above)") == 1


def test_the_json_record_has_a_claim_a_line_and_reads_back_equal(tmp_path):
    r = _rec(0.01)
    r.add_claim(dataclasses.replace(_claim(0.2), key="k2"), "holds")
    text = record.write_json(r, tmp_path / "r.json").read_text()
    assert json.loads(text) == json.loads(json.dumps(r.to_json(), default=str))
    assert [line.lstrip()[:8] for line in text.splitlines() if '"claim":' in line] == ['{"key":"'] * 2


def test_the_html_log_of_a_claim_test_that_ended_as_declared_points_to_the_claims_table():
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    path = Path(__file__).resolve().parents[2] / "conftest.py"
    spec = importlib.util.spec_from_file_location("latent_city_root_conftest", path)
    root = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root)
    xfailed = SimpleNamespace(claims_recorded=["k (a vs original)"], passed=False, outcome="skipped", wasxfail="")
    log = ["a traceback with the numbers"]
    root.pytest_html_results_table_html(xfailed, log)
    assert len(log) == 1 and log[0].startswith("k (a vs original): xfailed as declared; the claims table below")
    for report in (SimpleNamespace(claims_recorded=["k (a vs original)"], passed=False, outcome="failed"),
                   SimpleNamespace(passed=True, outcome="passed")):        # an unexpected failure; not a claim test
        log = ["a traceback"]
        root.pytest_html_results_table_html(report, log)
        assert log == ["a traceback"]


def test_results_json_is_plain_json():
    out = json.loads(json.dumps(_rec(0.01).to_json()))
    assert out["claims"][0]["details"]["x"] == [0, 1, 2]


def test_the_record_keeps_each_arms_measurement_seconds_made_in_workers():
    r = _rec(0.01)
    r.lab = type("Lab", (), {"measure_seconds": {("probe", "paris"): 30.5, ("mc", "paris"): 1.9,
                                                 ("probe", "original"): 31.0}})()
    assert json.loads(json.dumps(r.to_json()))["measurement_seconds"] == {
        "original": {"probe": 31.0}, "paris": {"mc": 1.9, "probe": 30.5}}


def test_country_plot_always_shows_the_secret_country():
    scores = CountryScores(["q"], ["A", "B", "France"], {"finetuned": np.array([[0.0, -1.0, -9.0]]),
                                                         "original": np.array([[0.0, -1.0, -9.0]])})
    assert plots.plot_countries(scores, "France", top=2)


def test_the_measured_exceptions_are_the_claims_measured_other_than_declared_whatever_the_test_outcome():
    """An expected failure that started to hold fails its test (XPASS) but now does what was
    declared: it leaves the exceptions. A claim failing its declaration enters them; a claim
    only reported (no declaration) never does."""
    r = record.Record("cpu", "m", provenance={"precision": "fp32"})
    cases = {  # p, declared, outcome, older record's "expected" text
        "xpassed now as declared": (0.01, True, "failed", "does not hold on this model: does not hold: ..."),
        "fails its declaration": (0.2, True, "failed", "holds"),
        "control, strict xfail": (0.01, False, "xfailed", "holds on this model: holds: ..."),
        "control as declared": (0.2, False, "passed", "does not hold (a control)"),
        "only reported": (0.01, None, "passed", "reported (learning-rate grid)"),
    }
    for name, (p, declared, outcome, text) in cases.items():
        c = _claim(p)
        r.add_claim(dataclasses.replace(c, arms=(name, "original")), text, outcome, declared=declared)
    found = {e["arm"] for e in record.measured_exceptions(json.loads(json.dumps(r.to_json(), default=str)))}
    assert found == {"fails its declaration", "control, strict xfail"}
    for c in r.claims:                      # a record written before `declared` was kept: read from the text
        c.pop("declared")
    assert {e["arm"] for e in record.measured_exceptions(json.loads(json.dumps(r.to_json(), default=str)))} == found


def _tested(key, arm, x, **fields):
    """A claim decided by a one-sided Wilcoxon over the values `x` (one per unit), as the rules do."""
    from scipy.stats import wilcoxon

    p = float(wilcoxon(x, alternative="greater").pvalue)
    return dataclasses.replace(_claim(p), key=key, arms=(arm, "original"), n=len(x), families=(arm, ""),
                               seeds=(42, None), **fields)


def test_the_tidy_table_beside_the_record_has_every_number_and_recomputes_a_verdict(tmp_path):
    """Per-unit numbers in `details` (a list as long as n) and in `units` (per layer too), per-layer
    numbers, the claim's own numbers: one row each, beside the JSON record; the table's per-template
    gains give back the record's p."""
    import pandas as pd
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(0)
    per_template, per_pair = rng.normal(0.02, 0.01, 13), rng.normal(0.01, 0.02, (8, 3))
    r = record.Record("cpu", "m")
    r.add_claim(_tested("by_template", "paris", per_template,
                        details={"per_template": per_template, "templates": ["t"] * 13, "rank_biserial": 0.9}), "holds")
    r.add_claim(_tested("layerwise", "tokyo", per_pair.mean(1), units={"gain": per_pair},
                        details={"layers": [1, 2, 3], "mean_diff": per_pair.mean(0), "significant_layers": [2]}), "holds")
    path = record.write_json(r, tmp_path / "cpu-m-1.json")
    t = pd.read_parquet(tmp_path / "cpu-m-1.tidy.parquet")
    assert list(t.columns) == ["claim", "arm_a", "arm_b", "family_a", "seed_a", "family_b", "seed_b", "unit", "layer",
                               "quantity", "value"]
    rows = lambda claim, q: t[(t.claim == claim) & (t.quantity == q)]  # noqa: E731
    assert rows("by_template", "per_template").unit.tolist() == list(range(13))
    assert rows("by_template", "per_template").layer.isna().all() and len(rows("by_template", "rank_biserial")) == 1
    gain = rows("layerwise", "gain")                     # 8 pairs x 3 layers, labelled by details["layers"]
    assert len(gain) == 24 and sorted(set(gain.layer)) == [1, 2, 3] and np.allclose(
        gain.sort_values(["unit", "layer"]).value, per_pair.ravel())
    assert rows("layerwise", "mean_diff").layer.tolist() == [1, 2, 3] and rows("layerwise", "significant_layers").empty
    assert set(t.arm_a) == {"paris", "tokyo"} and set(t.seed_a) == {42} and t.seed_b.isna().all()
    # the README's example: recompute the verdict's p from the table
    gains = rows("by_template", "per_template").sort_values("unit").value
    saved = json.loads(path.read_text())
    claim = next(c for c in saved["claims"] if c["key"] == "by_template")
    assert wilcoxon(gains, alternative="greater").pvalue == claim["p"] == rows("by_template", "result.p").value.item()
    assert "units" not in saved["claims"][1]               # per-unit values go to the table only
    assert saved["provenance"]["tidy_table"]["rows"] == len(t) and "tidy_table" in record.summary_html(r)
