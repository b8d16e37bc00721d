"""Claim tests run once per arm (the main adapter and every control, every seed); the
expected verdict comes from expectations.py, and a measured exception becomes a strict xfail
for that model and arm only. Arms come from the tier being run: parameters are the arms of both
tiers, and the root conftest drops a test of an arm that its own tier does not have."""

import pytest

from latent_city.arms import MAIN, of_tier
from latent_city.config import run_config

from .expectations import MEASURED_AT, MEASURED_OTHERWISE, expected_to_hold

ARMS = {tier: of_tier(tier) for tier in ("cpu", "gpu")}
TESTED_ARMS = list(dict.fromkeys(name for tier in ARMS.values() for name, a in tier.items() if a.kind != "learning-rate"))
LR_ARMS = list(dict.fromkeys(name for tier in ARMS.values() for name, a in tier.items() if a.kind == "learning-rate"))
DISSOCIATIONS = list(dict.fromkeys((MAIN + ("" if a.seed == tier[MAIN].seed else f"-s{a.seed}"), other)
                                   for tier in ARMS.values() for other, a in tier.items()
                                   if a.kind in ("other-city", "shuffled")))


def pytest_generate_tests(metafunc):
    if "arm" in metafunc.fixturenames:
        metafunc.parametrize("arm", TESTED_ARMS, ids=TESTED_ARMS)
    if "pair" in metafunc.fixturenames:
        metafunc.parametrize("pair", DISSOCIATIONS, ids=[f"{a}-vs-{b}" for a, b in DISSOCIATIONS])


def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = item.get_closest_marker("claim")
        params = getattr(getattr(item, "callspec", None), "params", {})
        if not marker or "cfg" not in params:
            continue
        run = run_config(params["cfg"])
        arm = params.get("arm") or "-vs-".join(params.get("pair", ()))
        measured_here = MEASURED_AT.get(run.model) == run.precision
        reason = measured_here and MEASURED_OTHERWISE.get((run.model, marker.args[0], arm))
        if reason:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.fixture
def assert_as_expected(request, lab, cfg, record_claim):
    """Record a claim result and assert it does what expectations.py says for its arm."""
    def _assert_as_expected(result, arm: str):
        expect = expected_to_hold(result.key, lab.arms[arm]) if arm in lab.arms else True
        record_claim(result, expect)
        if expect:
            assert result.holds, f"expected to hold on {arm}: {result.summary()}"
        else:
            assert not result.holds, f"a control ({arm}) shows the effect, so it is not about {result.about}: {result.summary()}"
        return result
    return _assert_as_expected
