"""The detection threshold on the real model (issue 16, section 5): the original model with the residual stream at
foo moved towards Paris's by a fraction a at one declared layer (controls.threshold; latent_city/steer.py), and the
smallest a at which each primary test sees it (latent_city/threshold.py).

Asserted: what is true by construction, which checks the steering itself: on every steered arm the hidden states
and value vectors at foo below the patched layer are the original model's, and at the patched layer the cosine of
foo's state with Paris's rises for every prompt pair under every readout (a convex combination of the two states);
and that the threshold is computed for every primary test with the main arms placed on its scale.

Reported, not asserted: every claim a steered arm runs (claims.runs_on) and the threshold itself. No verdict per a
was declared before the data: declaring one would be choosing the fractions to make a test pass, and what the
threshold is for is to be read, beside the main arms' effects, not to pass."""

import numpy as np
import pytest

from latent_city import claims, threshold
from latent_city.arms import MAIN, ORIGINAL, STEERED
from latent_city.probe import READOUTS

from .conftest import STEERED_ARMS

pytestmark = pytest.mark.controls
# the states below the patched layer are computed by the same forward as the original model's: equal up to float
# rounding between processes (bit-identical in one), far below the smallest move at the layer (a = 0.05)
UNCHANGED_ATOL = 1e-6
REPORTED = ("reported (detection threshold: foo's residual stream moved towards {city}'s by a = {a:g} at hidden layer "
            "{layer}; no verdict declared per a)")


@pytest.mark.parametrize("steered", STEERED_ARMS)
def test_a_steered_arm_moves_foo_towards_paris_at_its_layer_and_nowhere_below_and_its_claims_are_recorded(
        lab, steered, record_claim):
    layer, a, city = lab.cfg.controls.threshold.layer, lab.arms[steered].steer, lab.target(MAIN)[0].name
    moved, original = lab.measure("probe", steered), lab.measure("probe", ORIGINAL)
    problems = []
    for readout in READOUTS:
        gain = moved.readout(readout).similarity(city).x - original.readout(readout).similarity(city).x
        below = float(np.abs(gain[:, :layer]).max())
        if below > UNCHANGED_ATOL:
            problems.append(f"{readout}: the cosine with {city} moved below layer {layer} (max |change| {below:.3g})")
        at = gain[:, layer]
        if not (at > 0).all():
            problems.append(f"{readout}: at layer {layer} the cosine with {city} did not rise for {(at <= 0).sum()} of "
                            f"{len(at)} prompt pairs (smallest change {at.min():.3g})")
    values = float(np.abs(moved.values[:, :, :layer] - original.values[:, :, :layer]).max())
    if values > UNCHANGED_ATOL:
        problems.append(f"value vectors of blocks 0..{layer - 1} moved (max |change| {values:.3g})")
    keys = claims.runs_on(STEERED) + [claims.readout_key(claims.PRIMARY_ON_POSITIVE_CONTROL, r) for r in READOUTS[1:]]
    for key in keys:
        record_claim(lab.claim(key, steered), expected_text=REPORTED.format(city=city, a=a, layer=layer))
    assert not problems, f"{steered} (a = {a:g}): " + "; ".join(problems)


@pytest.mark.full
def test_the_detection_threshold_is_computed_for_every_primary_test_with_the_main_arms_on_its_scale(lab, cfg):
    steered = [n for n, a in lab.arms.items() if a.kind == STEERED]
    if not steered:
        pytest.skip(f"no steered arms on the {cfg.tier} tier: its preset leaves controls.threshold.fractions empty")
    mains = [n for n, a in lab.arms.items() if a.kind == "main"]
    recorded = [lab.claim(key, n).to_json() for key in threshold.PRIMARY_KEYS for n in steered + mains]
    rows = threshold.from_claims(recorded, lab.arms)
    head, body = threshold.table(rows)
    print("\n".join(" | ".join(r) for r in [head, *body]))
    print(threshold.sentence(rows, cfg.controls.threshold.layer, lab.target(MAIN)[0].name))
    assert [r.key for r in rows] == list(threshold.PRIMARY_KEYS)
    missing = [(r.key, d.fraction) for r in rows for d in r.doses if d.effect is None or not np.isfinite(d.effect)]
    assert not missing, f"no effect at {missing}"
    families = {lab.arms[n].family for n in mains}
    assert all({p.family for p in r.mains} == families for r in rows), [(r.key, r.mains) for r in rows]
