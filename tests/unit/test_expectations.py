"""The measured exceptions (tests/claims/measured_otherwise.json) without a model: an entry makes
a strict xfail that a crash does not satisfy, and it applies only to the adapters and the
evaluation it was measured with; otherwise the claim is tested as declared and the run says so."""

import dataclasses
import json

import pytest

from latent_city import record
from latent_city.arms import ORIGINAL
from latent_city.config import ExperimentConfig, eval_hash

from tests.claims import conftest as claims_conftest
from tests.claims import expectations

pytest_plugins = ["pytester"]

CPU = ExperimentConfig.for_tier("cpu")
CLAIM, ARM = "hidden_similarity_rises", "tokyo"


def _entry(**changes) -> dict:
    """A control measured holding, with the adapter key and evaluation hash of this run."""
    return {"model": CPU.model, "precision": CPU.precision, "claim": CLAIM, "arm": ARM, "measured": "holds",
            "reason": "holds: mean cosine gain 0.01 [0.005, 0.02]", "adapter_keys": ["key-now"],
            "eval_hash": CPU.eval_hash()} | changes


@pytest.fixture
def measured(monkeypatch):
    """Use `entry` as the only measured exception, in a run whose tokyo adapter has key 'key-now'."""
    def use(entry):
        monkeypatch.setattr(expectations, "_measured",
                            lambda: {(entry["model"], entry["precision"], entry["claim"], entry["arm"]): entry})
    monkeypatch.setattr(expectations, "adapter_keys", lambda a, b, cfg, family=False: ("key-now",))
    return use


# ---------------------------------------------------------------------------- issue 15, point 15

CRASH_CONFTEST = """
import pytest
from tests.claims.expectations import Expectation

def pytest_collection_modifyitems(items):
    mark = Expectation(True, "declared", measured="does not hold: measured otherwise").xfail_mark()
    for item in items:
        item.add_marker(mark)
"""

CRASH_TESTS = """
def test_the_claim_fails_as_measured():
    assert False, "the claim's own assertion"

def test_the_claim_crashes():
    raise RuntimeError("a bug in the measurement, not the claim")
"""


def test_a_crash_in_a_measured_otherwise_claim_fails_the_run(pytester):
    """The strict xfail of a measured exception (the mark the claims conftest adds) is satisfied by
    the claim's AssertionError only: a RuntimeError fails the run instead of reading "xfailed"."""
    pytester.makeconftest(CRASH_CONFTEST)
    pytester.makepyfile(test_claim=CRASH_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:html")
    result.assert_outcomes(failed=1, xfailed=1)
    outcome = {r.nodeid.split("::")[-1]: r.outcome for r in result.reprec.getreports("pytest_runtest_logreport")
               if r.when == "call"}
    assert outcome == {"test_the_claim_fails_as_measured": "skipped", "test_the_claim_crashes": "failed"}  # skipped: xfail
    assert result.ret == pytest.ExitCode.TESTS_FAILED


# ---------------------------------------------------------------------------- issue 15, point 16

def test_a_measured_exception_applies_with_the_adapter_and_evaluation_it_was_measured_with(measured):
    measured(_entry())
    e = expectations.expected(CLAIM, ARM, ORIGINAL, CPU)
    assert e.measured == _entry()["reason"] and e.stale is None
    assert e.xfail_mark().mark.kwargs == {"strict": True, "raises": AssertionError, "reason": e.measured}
    assert e.text.startswith("supported on this model: ")


@pytest.mark.parametrize("changed, says", [
    ({"adapter_keys": ["key-then"]}, "with adapter key-then, not this one (key-now)"),
    ({"eval_hash": "0123456789abcdef"}, "with evaluation config 0123456789abcdef, not this one"),
    ({"eval_hash": None}, "with evaluation config (none recorded), not this one"),
], ids=["another adapter", "another evaluation", "no evaluation hash"])
def test_a_measured_exception_from_another_adapter_or_evaluation_is_tested_as_declared_and_said(measured, changed, says):
    measured(_entry(**changed))
    e = expectations.expected(CLAIM, ARM, ORIGINAL, CPU)
    assert e.measured is None and e.xfail_mark() is None and not e.holds       # the control's declaration
    assert says in e.stale and e.stale.endswith("tested as declared")
    assert e.text == f"not supported (a control); {e.stale}"                      # the record's "expected" column
    assert record.declared_verdict({"expected": e.text}) is False


def test_a_stale_exception_is_listed_in_the_terminal_summary(measured):
    from tests.unit.test_claims_layer import _Item

    measured(_entry(adapter_keys=["key-then"]))
    stale, other = _Item(CLAIM, {"cfg": "cpu", "arm": ARM}), _Item("layer0_unchanged", {"cfg": "cpu", "arm": "paris"})
    claims_conftest.pytest_collection_modifyitems(None, [stale, other])
    assert stale.get_closest_marker("xfail") is None
    config = type("Config", (), {"stash": pytest.Stash()})()
    claims_conftest.pytest_collection_finish(type("Session", (), {"config": config, "items": [stale, other]})())
    lines = []
    writer = type("Writer", (), {"write_line": lambda self, line, **kw: lines.append(line)})()
    claims_conftest.pytest_terminal_summary(writer, config)
    assert "1 measured exception(s)" in lines[0] and "tested as declared" in lines[0]
    assert lines[1:] == [f"  {stale.nodeid}: {stale.stash[claims_conftest.STALE]}"] and "key-then" in lines[1]


def test_the_evaluation_hash_has_every_seed_but_the_adapters_and_nothing_of_training():
    d = CPU.to_dict()
    assert CPU.eval_hash() == eval_hash(json.loads(json.dumps(d)))          # a record's saved config: the same hash
    for changed in (dataclasses.replace(CPU, eval=dataclasses.replace(CPU.eval, n_probe_pairs=12)),
                    dataclasses.replace(CPU, seeds=dataclasses.replace(CPU.seeds, eval=7))):
        assert changed.eval_hash() != CPU.eval_hash()
    for same in (dataclasses.replace(CPU, seeds=dataclasses.replace(CPU.seeds, train=7, data=7)),
                 dataclasses.replace(CPU, train=dataclasses.replace(CPU.train, learning_rate=1e-4))):
        assert same.eval_hash() == CPU.eval_hash()
    with_new_seed = d | {"seeds": d["seeds"] | {"eval_draw": 5}}              # a seed added to config.Seeds later
    assert eval_hash(with_new_seed) != eval_hash(d)


def test_the_expectations_command_writes_the_evaluation_hash_of_the_record():
    claim = {"key": CLAIM, "arms": [ARM, ORIGINAL], "holds": True, "declared": False, "effect_name": "gain",
             "effect": 0.01, "effect_ci": [0.005, 0.02]}
    rec = {"model": CPU.model, "provenance": {"precision": "fp32", "adapters": {ARM: {"key": "key-now"}},
                                              "eval_hash": "feedfacefeedface"}, "claims": [claim]}
    [entry] = record.measured_exceptions(rec)
    assert entry["adapter_keys"] == ["key-now"] and entry["eval_hash"] == "feedfacefeedface"
    del rec["provenance"]["eval_hash"]                       # a record from before: its saved config gives it
    rec["provenance"]["config"] = CPU.to_dict()
    assert record.measured_exceptions(rec)[0]["eval_hash"] == CPU.eval_hash()
