"""Per-model expectations, measured, never tuned: a claim measured not to hold on a model is
marked xfail(strict=True) for that model only, with the numbers in the reason, so the day
it starts holding the suite says so. The GPU tier expects every claim to hold, as the seed
found on Llama-3-8B-Instruct."""

import pytest

from latent_city.config import ExperimentConfig

# (model, claim key) -> the measured numbers. Filled from full CPU-tier runs; see README.
DOES_NOT_HOLD: dict[tuple[str, str], str] = {}


def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = item.get_closest_marker("claim")
        params = getattr(getattr(item, "callspec", None), "params", {})
        if not marker or "cfg" not in params:
            continue
        model = ExperimentConfig.for_tier(params["cfg"]).model
        reason = DOES_NOT_HOLD.get((model, marker.args[0]))
        if reason:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
