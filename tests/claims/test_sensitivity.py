"""The main adapter at the other learning rates of the grid: every claim is measured and put
in the record beside the tier's own rate (reported, not asserted: the suite asserts on the
tier's preset). What is asserted is that the grid measures what it says it does."""

import numpy as np
import pytest

from latent_city.arms import MAIN
from latent_city.claims import AGAINST_ORIGINAL

from .conftest import LR_ARMS


@pytest.mark.controls
@pytest.mark.grid
@pytest.mark.parametrize("lr_arm", LR_ARMS)
def test_the_learning_rate_grid_trains_its_own_adapter_and_records_every_claim(lab, lr_arm, record_claim):
    main, other = lab.adapter(MAIN), lab.adapter(lr_arm)
    assert other.key != main.key and other.key_inputs["config"]["train"]["learning_rate"] == lab.arms[lr_arm].cfg.train.learning_rate
    model = lab.model_with(lr_arm)
    a = {n: p for n, p in model.named_parameters() if f".{MAIN}." in n and "lora_B" in n}
    b = {n.replace(f".{MAIN}.", f".{lr_arm}."): p for n, p in a.items()}
    params = dict(model.named_parameters())
    assert any(not np.array_equal(p.detach().cpu().numpy(), params[n].detach().cpu().numpy()) for n, p in b.items()), \
        f"{lr_arm}'s LoRA weights equal the main adapter's"
    for key in AGAINST_ORIGINAL:
        record_claim(lab.claim(key, lr_arm), expected_text="reported (learning-rate grid)")
