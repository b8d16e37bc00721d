"""The training-strength grid's declared rule for the second main arm (latent_city/strength.py), on real data.

Declared before the data (config.ControlsConfig.strength's help): the second main arm (controls.learned) is the
lightest point of the grid (TrainingPoint.weight: epochs, then the number of LoRA modules) whose every adapter
passes its manipulation check. controls.learned was chosen from issue 16's measurement before the grid was
trained; this test says whether the grid agrees. It needs every grid adapter (about 20, none in the CI subset):
marked `full`, run by the experiment command. Alone it trains the adapters it lacks one after another; in the
experiment the claim tests that name the grid's arms train them up front, side by side.
"""

import pytest

from latent_city import strength
from latent_city.arms import MAIN, family_members, strength_points


@pytest.mark.full
@pytest.mark.controls
def test_the_second_main_arm_is_the_lightest_point_that_learned(cfg, lab):
    """Each grid point's manipulation checks (Lab.manipulation: Spearman rho of the answers with the training
    targets and the share beating the constant, training capitals as the unit, raw alpha), lightest point first;
    the lightest point whose every adapter is supported must be controls.learned."""
    learned = cfg.controls.learned
    if not learned.seeds or not cfg.controls.strength:
        pytest.skip(f"the {cfg.tier} tier runs no training-strength grid (controls.strength, controls.learned.seeds)")
    found = strength.lightest_learned(lab)
    checks = []
    for family, point in strength_points(cfg):
        results = [lab.manipulation(a) for a in family_members(lab.arms, family)]
        checks.append(f"{family} ({strength.recipe_name(point)}, weight {point.weight}): "
                      f"{sum(r.verdict == 'supported' for r in results)} of {len(results)} learned, rho "
                      + " ".join("undefined" if r.details.get("rho") != r.details.get("rho") else f"{r.details['rho']:.2f}"
                                 for r in results)
                      + ", beats the constant " + " ".join(f"{r.details['share_beats_constant']:.0%}" for r in results))
    assert found == f"{MAIN}-{learned.name}", (
        f"the lightest grid point whose every adapter learned its task is {found}, but controls.learned is "
        f"{MAIN}-{learned.name}: " + "; ".join(checks))
