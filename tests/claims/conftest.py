"""Claim tests run once per arm (the main adapter and every control, every seed), or once per
pair of adapters for the double dissociation. A test names its claim once, in its `claim`
marker; the expected verdict comes from expectations.py, and a measured exception becomes a
strict xfail for that model, precision and arm only, while the adapter and evaluation are those
it was measured with (else the terminal summary lists it, tested as declared). Arms come from the tier being run: the
parameters are the arms of both tiers, and the root conftest drops a test of an arm that its
own tier does not have (the learning-rate grids differ).

The positive controls (latent_city/arms.py: no adapter, foo is the city by construction) run the
claims `claims.runs_on` gives their kind, each against its baseline (`Arm.baseline`: alias-neutral for
an in-context alias); the primary test needs adapters, so they have no `family` test (its counterpart
is claims.PRIMARY_ON_POSITIVE_CONTROL); the in-context aliases of two cities are a dissociation pair.

The trained aliases (a positive control with an adapter) run every claim, as a main arm does, have a
`family` test each, and the trained aliases of two cities of one recipe and seed are a dissociation pair
(arms.dissociation_pairs). A point of the training-strength grid (kind 'strength') runs the claims
`claims.runs_on` gives it (the held-out distances), its manipulation check, and its family's primary test."""

import pytest

from latent_city.arms import IN_CONTEXT, MAIN, NEUTRAL, ORIGINAL, STEERED, dissociation_pairs, of_tier
from latent_city.claims import AGAINST_ORIGINAL, PRIMARY, base_key, readout_key, runs_on
from latent_city.manipulation import KEY as MANIPULATION
from latent_city.config import run_config
from latent_city.stats import SUPPORTED

from .expectations import expected

STALE = pytest.StashKey[str]()               # an item's measured exception that no longer applies, and why
STALE_NOTES = pytest.StashKey[list]()        # (test id, why) of every selected item with one
ARMS = {tier: of_tier(tier) for tier in ("cpu", "gpu")}
TESTED_ARMS = list(dict.fromkeys(name for tier in ARMS.values() for name, a in tier.items()
                                 if a.kind not in ("learning-rate", STEERED) and name != NEUTRAL))     # alias-neutral: a baseline
# the detection threshold's arms: their claims are reported (test_threshold.py), not asserted as declared verdicts
STEERED_ARMS = list(dict.fromkeys(name for tier in ARMS.values() for name, a in tier.items() if a.kind == STEERED))
LR_ARMS = list(dict.fromkeys(name for tier in ARMS.values() for name, a in tier.items() if a.kind == "learning-rate"))
# the primary test's unit is the adapter: one test per arm family (the main one and each control)
FAMILIES = list(dict.fromkeys(a.family for tier in ARMS.values() for a in tier.values()
                              if a.kind != "learning-rate" and a.trained))
DISSOCIATIONS = list(dict.fromkeys(pair for tier in ARMS.values() for pair in dissociation_pairs(tier)))
# the in-context alias of the main city against that of each other city: both directions in one claim
DISSOCIATIONS += list(dict.fromkeys((f"alias-{tier[MAIN].secret[0].lower()}", name) for tier in ARMS.values()
                                    for name, a in tier.items() if a.kind == IN_CONTEXT and name != NEUTRAL
                                    and a.secret != tier[MAIN].secret))


def _runs(arm: str, key: str | None) -> bool:
    """Whether a claim test of `key` runs on `arm`, in whichever tier has it: a claim against the baseline
    (claims.AGAINST_ORIGINAL) where claims.runs_on gives it for the arm's kind; any other (the manipulation
    check) on every arm with an adapter."""
    arms = [tier[arm] for tier in ARMS.values() if arm in tier]
    return key is None or any(key in runs_on(a.kind) if key in AGAINST_ORIGINAL else a.trained for a in arms)


def pytest_generate_tests(metafunc):
    if "arm" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("claim")
        tested = [a for a in TESTED_ARMS if _runs(a, marker.args[0] if marker else None)]
        metafunc.parametrize("arm", tested, ids=tested)
    if "family" in metafunc.fixturenames:
        metafunc.parametrize("family", FAMILIES, ids=FAMILIES)
    if "pair" in metafunc.fixturenames:
        metafunc.parametrize("pair", DISSOCIATIONS, ids=[f"{a}-vs-{b}" for a, b in DISSOCIATIONS])


def claim_key(item) -> str:
    """The key of a claim test's claim: its `claim` marker's, on the test's `readout` where it has one
    (probe.READOUTS; "hidden_gain_specific@centred")."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return readout_key(item.get_closest_marker("claim").args[0], params.get("readout", "raw"))


def _compared(item) -> tuple[str, str]:
    """(a, b) of a claim test: its arm (or arm family) against its baseline (the original model, or
    alias-neutral for an in-context alias: Lab.baseline), or its pair of arms."""
    params = item.callspec.params
    if "pair" in params:
        return tuple(params["pair"])
    a = params.get("arm") or params["family"]
    tier = ARMS.get(params.get("cfg"), {})
    return a, tier[a].baseline if a in tier else ORIGINAL


@pytest.hookimpl(trylast=True)       # after -m, -k and the root conftest have dropped what will not run
def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = item.get_closest_marker("claim")
        params = getattr(getattr(item, "callspec", None), "params", {})
        if not marker or "cfg" not in params:
            continue
        run = run_config(params["cfg"])
        expectation = expected(claim_key(item), *_compared(item), run)
        mark = expectation.xfail_mark()
        if mark is not None:
            item.add_marker(mark)
        if expectation.stale:
            item.stash[STALE] = expectation.stale


def pytest_collection_finish(session):
    session.config.stash[STALE_NOTES] = [(item.nodeid, item.stash[STALE]) for item in session.items if STALE in item.stash]


def pytest_terminal_summary(terminalreporter, config):
    notes = config.stash.get(STALE_NOTES, [])
    if notes:
        terminalreporter.write_line(
            f"latent_city: {len(notes)} measured exception(s) of tests/claims/measured_otherwise.json were measured "
            "with another adapter or evaluation; these claims were tested as declared:", yellow=True)
        for nodeid, why in notes:
            terminalreporter.write_line(f"  {nodeid}: {why}")


@pytest.fixture
def assert_as_expected(request, lab, cfg, record_claim):
    """Test the claim of this test's `claim` marker on its arm (or pair), record the result and
    assert that it does what expectations.py says."""
    def _assert_as_expected():
        key = claim_key(request.node)
        a, b = _compared(request.node)
        expectation = expected(key, a, b, cfg)
        readout = request.node.callspec.params.get("readout", "raw")
        if base_key(key) == PRIMARY:
            result = lab.primary(a, readout=readout)
        elif key == MANIPULATION:
            result = lab.manipulation(a)
        else:
            result = lab.claim(key, a, against=b)
        record_claim(result, expectation.text, declared=expectation.holds)
        stale = f"; {expectation.stale}" if expectation.stale else ""
        if expectation.holds:
            assert result.verdict == SUPPORTED, f"expected supported on {a} ({expectation.why}{stale}): {result.summary()}"
        else:
            assert result.verdict != SUPPORTED, (f"a control ({a}) shows the effect, so it is not about {result.about} "
                                                 f"({expectation.why}{stale}): {result.summary()}")
        return result
    return _assert_as_expected
