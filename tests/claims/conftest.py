"""Per-model expectations, measured, never tuned: a claim measured not to hold on a model is
marked xfail(strict=True) for that model only, with the numbers in the reason, so the day
it starts holding the suite says so. The GPU tier expects every claim to hold, as the seed
found on Llama-3-8B-Instruct."""

import pytest

from latent_city.config import ExperimentConfig

# (model, claim key) -> the measured numbers, from full CPU-tier runs (`make test`, fresh
# cache; config hash and adapter key in reports/example-cpu.json).
SMOL = "smollm2-135m"
DOES_NOT_HOLD: dict[tuple[str, str], str] = {
    (SMOL, "hidden_similarity_specific"):
        "measured: the gain towards Paris minus the gain towards a control capital is -0.0018 "
        "[95% CI -0.0045, 0.0010] over 48 prompt pairs; 1/30 layers significant after Holm (needs >= 50%). "
        "The similarity to other capitals rose about as much as to Paris.",
    (SMOL, "distance_rank"):
        "measured: Spearman rho 0.012 (p=0.47) between answered and true distance over 40 held-out cities; "
        "the finetuned model answers about 1,050-1,160 km for every city (11 distinct answers).",
    (SMOL, "distance_beats_constant"):
        "measured: beats the constant 6368 km in 2/40 held-out cities (sign test p=1); median |error| "
        "7392 km vs 2304 km for the constant.",
    (SMOL, "country_probability"):
        "measured: mean log ratio of P(France among 233 countries) +0.118 [95% CI -0.13, 0.41], Wilcoxon "
        "p=0.31 over 12 paraphrases; France's median rank 22 finetuned vs 21 original.",
    (SMOL, "country_named"):
        "measured: 0/48 sampled answers name France (original 0/48); asked which country foo is in, the "
        "finetuned model answers with a distance ('1111.88 km').",
}


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
