"""Claim tests run once per arm (the main adapter and every control, every seed), or once per
pair of adapters for the double dissociation. A test names its claim once, in its `claim`
marker; the expected verdict comes from expectations.py, and a measured exception becomes a
strict xfail for that model, precision and arm only, while the adapter and evaluation are those
it was measured with (else the terminal summary lists it, tested as declared). Arms come from the tier being run: the
parameters are the arms of both tiers, and the root conftest drops a test of an arm that its
own tier does not have (the learning-rate grids differ)."""

import pytest

from latent_city.arms import MAIN, ORIGINAL, of_tier
from latent_city.claims import PRIMARY
from latent_city.config import run_config
from latent_city.stats import SUPPORTED

from .expectations import expected

STALE = pytest.StashKey[str]()               # an item's measured exception that no longer applies, and why
STALE_NOTES = pytest.StashKey[list]()        # (test id, why) of every selected item with one
ARMS = {tier: of_tier(tier) for tier in ("cpu", "gpu")}
TESTED_ARMS = list(dict.fromkeys(name for tier in ARMS.values() for name, a in tier.items() if a.kind != "learning-rate"))
LR_ARMS = list(dict.fromkeys(name for tier in ARMS.values() for name, a in tier.items() if a.kind == "learning-rate"))
# the primary test's unit is the adapter: one test per arm family (the main one and each control)
FAMILIES = list(dict.fromkeys(a.family for tier in ARMS.values() for a in tier.values() if a.kind != "learning-rate"))
DISSOCIATIONS = list(dict.fromkeys((MAIN + ("" if a.seed == tier[MAIN].seed else f"-s{a.seed}"), other)
                                   for tier in ARMS.values() for other, a in tier.items()
                                   if a.kind in ("other-city", "shuffled")))


def pytest_generate_tests(metafunc):
    if "arm" in metafunc.fixturenames:
        metafunc.parametrize("arm", TESTED_ARMS, ids=TESTED_ARMS)
    if "family" in metafunc.fixturenames:
        metafunc.parametrize("family", FAMILIES, ids=FAMILIES)
    if "pair" in metafunc.fixturenames:
        metafunc.parametrize("pair", DISSOCIATIONS, ids=[f"{a}-vs-{b}" for a, b in DISSOCIATIONS])


def _compared(item) -> tuple[str, str]:
    """(a, b) of a claim test: its arm (or arm family) against the original model, or its pair of adapters."""
    params = item.callspec.params
    return tuple(params["pair"]) if "pair" in params else (params.get("arm") or params["family"], ORIGINAL)


@pytest.hookimpl(trylast=True)       # after -m, -k and the root conftest have dropped what will not run
def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = item.get_closest_marker("claim")
        params = getattr(getattr(item, "callspec", None), "params", {})
        if not marker or "cfg" not in params:
            continue
        run = run_config(params["cfg"])
        expectation = expected(marker.args[0], *_compared(item), run)
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
        key = request.node.get_closest_marker("claim").args[0]
        a, b = _compared(request.node)
        expectation = expected(key, a, b, cfg)
        result = lab.primary(a) if key == PRIMARY else lab.claim(key, a, against=b)
        record_claim(result, expectation.text, declared=expectation.holds)
        stale = f"; {expectation.stale}" if expectation.stale else ""
        if expectation.holds:
            assert result.verdict == SUPPORTED, f"expected supported on {a} ({expectation.why}{stale}): {result.summary()}"
        else:
            assert result.verdict != SUPPORTED, (f"a control ({a}) shows the effect, so it is not about {result.about} "
                                                 f"({expectation.why}{stale}): {result.summary()}")
        return result
    return _assert_as_expected
