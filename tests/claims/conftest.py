"""Claim tests run once per arm (the main adapter and every control, every seed); the
expected verdict comes from expectations.py, and a measured exception becomes a strict xfail
for that model and arm only."""

import pytest

from latent_city.arms import MAIN, arms
from latent_city.config import ExperimentConfig, overrides_from_env

from .expectations import MEASURED_AT, MEASURED_OTHERWISE, expected_to_hold

ARMS = {tier: arms(ExperimentConfig.for_tier(tier)) for tier in ("cpu", "gpu")}
TESTED_ARMS = [name for name, a in ARMS["cpu"].items() if a.kind != "learning-rate"]
DISSOCIATIONS = [(MAIN + ("" if seed == ARMS["cpu"][MAIN].seed else f"-s{seed}"), other)
                 for other, a in ARMS["cpu"].items() if a.kind in ("other-city", "shuffled")
                 for seed in [a.seed]]


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
        run = ExperimentConfig.for_tier(params["cfg"], **overrides_from_env())
        arm = params.get("arm") or "-vs-".join(params.get("pair", ()))
        measured_here = MEASURED_AT.get(run.model) == run.precision
        reason = measured_here and MEASURED_OTHERWISE.get((run.model, marker.args[0], arm))
        if reason:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.fixture
def assert_as_expected(request, lab, cfg, record_claim):
    """Record a claim result and assert it does what expectations.py says for its arm."""
    def _assert_as_expected(result, arm: str):
        expect = expected_to_hold(result.key, ARMS[cfg.tier][arm]) if arm in ARMS[cfg.tier] else True
        record_claim(result, expect)
        if expect:
            assert result.holds, f"expected to hold on {arm}: {result.summary()}"
        else:
            assert not result.holds, f"a control ({arm}) shows the effect, so it is not about {result.about}: {result.summary()}"
        return result
    return _assert_as_expected
