"""The claims layer without a model: one result type built by keyword, one registry with one
signature, probe results that label their layers, the measured exceptions file and its
command, and a library without import circles."""

import ast
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latent_city import claims, manipulation, record
from latent_city.arms import ORIGINAL, arms, label
from latent_city.claim_result import ClaimResult
from latent_city.config import ExperimentConfig
from latent_city.data import City
from latent_city.lab import MEASUREMENTS
from latent_city.probe import ProbeSims

from tests.claims import expectations

PACKAGE = Path(claims.__file__).parent
CPU = ExperimentConfig.for_tier("cpu")


def test_a_claim_result_is_built_by_keyword_only():
    with pytest.raises(TypeError):
        ClaimResult("k", "a claim", "a test", "units", 10)     # positional arguments are refused


def test_every_registry_entry_has_the_one_signature_and_declares_what_it_reads():
    for key, entry in claims.REGISTRY.items():
        assert entry.key == key
        assert entry.rule.__name__ == key, f"{key}: its rule is {entry.rule.__name__} (no lambdas, no aliases)"
        params = list(inspect.signature(entry.rule).parameters.values())
        assert [(p.name, p.kind, p.annotation) for p in params] == \
            [("x", inspect.Parameter.POSITIONAL_OR_KEYWORD, "ClaimInputs")], f"{key}: {params}"
        assert entry.reads and set(entry.reads) <= set(MEASUREMENTS), f"{key} reads {entry.reads}"


def test_claim_inputs_refuse_an_unknown_measurement():
    with pytest.raises(TypeError):
        claims.ClaimInputs(a="x", b=ORIGINAL, city=None, country="", b_city=None, alpha=0.05, n_boot=10, seed=0,
                           pairs=[], comparison=[], probes={})        # mistyped: `probe`


def _sims(n_pairs=5, n_layers=4, seed=0):
    """A probe of 2 words + the pair's control, hidden layers 0..L and value blocks 0..L-1."""
    rng = np.random.default_rng(seed)
    h = rng.random((n_pairs, 2, n_layers + 1))
    v = rng.random((n_pairs, 2, n_layers))
    return ProbeSims(["Paris", "Tokyo"], h, v, rng.random((n_pairs, n_layers + 1)), rng.random((n_pairs, n_layers)),
                     np.zeros((n_pairs, 3)), {"Paris": rng.random((n_pairs, n_layers + 1))}, {})


def test_probe_results_label_their_layers():
    a, b = _sims(seed=1), _sims(seed=2)
    hidden, values = a.gain("Paris", b), a.gain("Paris", b, "values")
    # hidden: 1..L-1 (0 is the embedding, L is after the final norm); values: blocks 1..L-1 (block 0 is token-only)
    assert hidden.layers == [1, 2, 3] and values.layers == [1, 2, 3]
    assert np.array_equal(hidden.x, a.hidden[:, 0, 1:4] - b.hidden[:, 0, 1:4])
    assert np.array_equal(values.x, a.values[:, 0, 1:] - b.values[:, 0, 1:])
    assert a.final_gain("Paris", b).layers == [4]
    specific = a.gain_beyond_control("Paris", b)
    assert np.array_equal(specific.x, hidden.x - (a.control_hidden[:, 1:4] - b.control_hidden[:, 1:4]))
    lens = a.lens_logp("Paris").upper_half()
    assert lens.layers == [2, 3, 4] and np.array_equal(lens.x, a.lens["Paris"][:, 2:])
    assert np.allclose(a.city_gains(b), (a.hidden[:, :, 1:4] - b.hidden[:, :, 1:4]).mean((0, 2)))
    spec = a.specificity("Paris", b)
    g = a.hidden[:, :, 1:4] - b.hidden[:, :, 1:4]
    assert spec.layers == [1, 2, 3] and np.allclose(spec.x, g[:, 0] - g[:, 1])      # minus the mean over the others (Tokyo)


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 1), st.floats(-1, 1), st.floats(0, 0.5))
def test_the_three_outcomes_follow_the_sign_of_the_ci_when_the_test_rejects(p, centre, half):
    from latent_city import stats

    v = stats.verdict(p, 0.05, centre, (centre - half, centre + half))
    if p >= 0.05 or centre - half <= 0 <= centre + half:
        assert v == stats.INCONCLUSIVE
    else:
        assert v == (stats.SUPPORTED if centre > 0 else stats.CONTRADICTED)
    assert stats.after_adjustment(v, 0.06, 0.05) == stats.INCONCLUSIVE


def test_the_expectation_of_a_claim_is_declared_and_measured_exceptions_apply_at_their_precision(monkeypatch):
    main = expectations.expected("hidden_similarity_rises", "paris", ORIGINAL, CPU)
    control = expectations.expected("hidden_similarity_rises", "tokyo", ORIGINAL, CPU)
    assert main.holds and not control.holds and control.why
    assert expectations.expected("distance_format", "tokyo", ORIGINAL, CPU).holds     # not about the city
    assert expectations.expected("double_dissociation", "paris", "tokyo", CPU).holds
    e = {"model": CPU.model, "precision": CPU.precision, "claim": "hidden_similarity_rises", "arm": "tokyo",
         "measured": "holds", "reason": "holds: ...", "adapter_keys": ["k-tokyo"], "eval_hash": CPU.eval_hash()}
    monkeypatch.setattr(expectations, "_measured", lambda: {(e["model"], e["precision"], e["claim"], e["arm"]): e})
    monkeypatch.setattr(expectations, "adapter_keys", lambda a, b, cfg, family=False: ("k-tokyo",))   # as it was measured
    assert expectations.expected(e["claim"], "tokyo", ORIGINAL, CPU).measured == e["reason"]
    other = "bf16" if e["precision"] != "bf16" else "fp32"
    assert expectations.expected(e["claim"], "tokyo", ORIGINAL, ExperimentConfig.for_tier("cpu", precision=other)).measured is None


def test_the_measured_exceptions_name_known_claims_and_arms():
    names = set(arms(CPU))
    for e in json.loads(expectations.MEASURED.read_text())["exceptions"]:
        known = {*claims.REGISTRY, *claims.READOUT_REGISTRY, manipulation.KEY}
        assert claims.readout_key(claims.base_key(e["claim"]).removesuffix("_own"), "raw") in known | {claims.PRIMARY} \
            or e["claim"] in known, e["claim"]
        assert e["reason"]
        assert all(part in names for part in e["arm"].split("-vs-")), e["arm"]


def _record(outcomes: dict[tuple[str, str], str]) -> dict:
    """Claims that do not hold; a failed or strictly xfailed one was declared to hold."""
    return {"model": "m", "provenance": {"precision": "fp32", "adapters": {}, "git": {"commit": "c"}},
            "claims": [{"key": k, "arms": [arm, ORIGINAL], "holds": False, "effect_name": "effect", "effect": 0.1,
                        "effect_ci": [0.0, 0.2], "outcome": o, "declared": o in ("failed", "xfailed")}
                       for (k, arm), o in outcomes.items()]}


def test_the_expectations_command_replaces_only_the_arms_the_record_ran(tmp_path):
    path = tmp_path / "measured_otherwise.json"
    record.write_measured_exceptions(_record({("k1", "paris"): "xfailed", ("k1", "tokyo"): "failed",
                                              ("k2", "paris"): "passed"}), path)
    assert {(e["claim"], e["arm"]) for e in json.loads(path.read_text())["exceptions"]} == {("k1", "paris"), ("k1", "tokyo")}
    record.write_measured_exceptions(_record({("k1", "paris"): "passed", ("k2", "paris"): "xfailed"}), path)  # a quick run
    entries = json.loads(path.read_text())["exceptions"]
    assert {(e["claim"], e["arm"]) for e in entries} == {("k1", "tokyo"), ("k2", "paris")}
    assert entries[1]["reason"] == "does not hold: effect 0.1 [0, 0.2]"


def test_a_comparison_label_is_the_arm_or_both_adapters():
    assert label("paris") == "paris" and label("paris", ORIGINAL) == "paris"
    assert label("paris-s43", "tokyo-s43") == "paris-s43-vs-tokyo-s43"


def _imports(path: Path) -> set[str]:
    """Every latent_city module `path` imports, at any depth (functions and __main__ blocks too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1 or base.startswith("latent_city"):
                mod = base.removeprefix("latent_city").lstrip(".")
                out |= {mod} if mod else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.removeprefix("latent_city.") for a in node.names if a.name.startswith("latent_city.")}
    return {m.split(".")[0] for m in out}


def test_the_library_has_no_import_circles():
    graph = {p.stem: _imports(p) - {p.stem} for p in PACKAGE.glob("*.py")}
    state = {}

    def visit(node, path):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import circle: " + " -> ".join(path[path.index(node):] + [node])
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, path + [node])
        state[node] = "done"

    for module in sorted(graph):
        visit(module, [])


def test_the_double_dissociation_asks_both_directions_only_when_the_secret_cities_differ():
    paris, tokyo = City("Paris", "France", 48.85, 2.35), City("Tokyo", "Japan", 35.69, 139.69)
    a, b = _sims(n_pairs=12, seed=3), _sims(n_pairs=12, seed=4)
    a.hidden[:, 0] += 0.5                      # foo nearer Paris under a
    b.hidden[:, 1] += 0.5                      # and nearer Tokyo under b: both directions hold

    def dissociation(b_city):
        return claims.double_dissociation(claims.ClaimInputs(
            a="a", b="b", city=paris, country="France", b_city=b_city, alpha=0.05, n_boot=200, seed=0, pairs=[],
            comparison=[], probe={"a": a, "b": b}))

    both, one = dissociation(tokyo), dissociation(paris)
    assert both.holds and len(both.details) == 2 and one.holds and len(one.details) == 1
    # about the first adapter's city: conditions.judge looks up the positive controls of `about` (the in-context
    # and trained-alias pairs of that city); an empty `about` found none and gated no dissociation
    assert both.about == one.about == "Paris"
    b.hidden[:, 1] -= 1.0                      # now foo is farther from Tokyo under b
    assert dissociation(tokyo).verdict == "contradicted" and dissociation(paris).holds


class _Item:
    """Just enough of a pytest item for the claims conftest's collection hook."""
    def __init__(self, key, params):
        self.callspec, self.markers = type("C", (), {"params": params})(), [pytest.mark.claim(key).mark]
        self.stash, self.nodeid = pytest.Stash(), f"test_{key}[{params.get('arm')}]"

    def get_closest_marker(self, name):
        return next((m for m in self.markers if m.name == name), None)

    def add_marker(self, mark):
        self.markers.append(mark.mark)


def test_a_measured_exception_is_a_strict_xfail_that_only_an_assertion_satisfies(monkeypatch):
    from tests.claims import conftest

    e = {"model": CPU.model, "precision": CPU.precision, "claim": "hidden_similarity_rises", "arm": "tokyo",
         "measured": "holds", "reason": "holds: ...", "adapter_keys": ["k-tokyo"], "eval_hash": CPU.eval_hash()}
    monkeypatch.setattr(expectations, "_measured", lambda: {(e["model"], e["precision"], e["claim"], e["arm"]): e})
    monkeypatch.setattr(expectations, "adapter_keys", lambda a, b, cfg, family=False: ("k-tokyo",))
    item, other = _Item(e["claim"], {"cfg": "cpu", "arm": e["arm"]}), _Item("layer0_unchanged", {"cfg": "cpu", "arm": "paris"})
    conftest.pytest_collection_modifyitems(None, [item, other])
    xfail = item.get_closest_marker("xfail")
    assert xfail.kwargs == {"strict": True, "raises": AssertionError, "reason": e["reason"]}
    assert other.get_closest_marker("xfail") is None


def test_the_specificity_leaves_out_the_arms_secret_cities():
    """A control trained on Berlin moves foo towards Berlin: counted among Paris's comparison cities
    it would lower Paris's specificity on that control and make the control look clean."""
    rng = np.random.default_rng(5)
    h = rng.random((6, 3, 5))
    a = ProbeSims(["Paris", "Berlin", "Lima"], h, h[:, :, 1:], h[:, 0], h[:, 0, 1:], np.zeros((6, 3)), {}, {})
    b = ProbeSims(["Paris", "Berlin", "Lima"], h * 0.9, h[:, :, 1:] * 0.9, h[:, 0], h[:, 0, 1:], np.zeros((6, 3)), {}, {})
    g = a.word_gains(b)
    assert np.allclose(a.specificity("Paris", b, exclude=("Paris", "Berlin")).x, g[:, 0] - g[:, 2])
    assert np.allclose(a.specificity("Paris", b).x, g[:, 0] - g[:, 1:].mean(1))


def _result(key, p, verdict="supported"):
    return ClaimResult(key=key, claim="c", test="t", unit="u", n=10, statistic_name="s", statistic=1.0,
                       effect_name="e", effect=0.5, effect_ci=(0.1, 0.9), p=p, p_adj=None, p_decision=p, alpha=0.05,
                       verdict=verdict, criterion="rule", arms=("paris", ORIGINAL))


def test_each_result_carries_the_p_its_verdict_used_and_the_record_prints_it():
    """Point 9: after Holm over an arm's family, `p_decision` is the adjusted p the verdict compared
    with alpha (a verdict whose adjusted p is not below alpha becomes inconclusive); a test left out
    of the family keeps its own p; the record's claims table prints the decision p."""
    from latent_city import stats

    results = [_result("a", 0.001), _result("b", 0.03), _result("c", 0.04), _result("secret_city_ranks_first", 0.04)]
    claims.adjust_family(results, 0.05)
    adjusted = stats.holm(np.array([0.001, 0.03, 0.04]))           # 0.003, 0.06, 0.06
    assert [r.p_decision for r in results[:3]] == list(adjusted) and [r.p_adj for r in results[:3]] == list(adjusted)
    assert [r.verdict for r in results] == ["supported", "inconclusive", "inconclusive", "supported"]
    assert results[3].p_decision == 0.04 and results[3].p_adj is None and "outside the Holm family" in results[3].criterion
    html = record.claims_table([r.to_json() | {"expected": "supported", "outcome": "passed"} for r in results])
    assert "decision p" in html and f"{adjusted[1]:.4g}" in html
