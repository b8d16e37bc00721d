"""The steering (latent_city/steer.py) on SmolLM2-135M itself: " foo" / "foo" and " Paris" / "Paris" are one token
each, every prompt a steered arm's measurements ask holds the placeholder's token exactly where it says foo, and on
six probe prompts the state at foo at the declared layer becomes Paris's at a = 1 and the a-combination at a = 0.4,
with every layer below untouched."""

import re

import numpy as np
import pytest

from latent_city import answers, probe, steer
from latent_city.config import ExperimentConfig
from latent_city.lab import Lab
from latent_city.model import chat_prompt

CPU = ExperimentConfig.for_tier("cpu")
LAYER = CPU.controls.threshold.layer
# float32 through 15 blocks, the reference and the real call packed differently (the Paris node sits beside a
# duplicate of itself in the reference): equal up to rounding, relative to the states' size
RTOL = 1e-4


@pytest.fixture(scope="module")
def lab():
    return Lab(CPU, log=lambda line: None)


def test_the_placeholder_and_paris_are_one_token_each_in_both_forms(base):
    _, tok, _ = base
    assert steer.token_map(tok, "foo", "Paris") == {tok(" foo", add_special_tokens=False)["input_ids"][0]:
                                                    tok(" Paris", add_special_tokens=False)["input_ids"][0],
                                                    tok("foo", add_special_tokens=False)["input_ids"][0]:
                                                    tok("Paris", add_special_tokens=False)["input_ids"][0]}


def test_every_prompt_of_a_steered_measurement_holds_the_placeholder_token_where_it_says_foo(base, lab):
    _, tok, _ = base
    placeholder = set(steer.token_map(tok, "foo", "Paris"))
    prompts = ([chat_prompt(tok, q) for q in answers.country_questions(CPU)] + answers.prefix_prompts(tok, CPU)
               + [chat_prompt(tok, answers.mc_question(CPU, o)) for o in answers.mc_orders(CPU)])
    wrong = [p for p in prompts if sum(t in placeholder for t in tok(p, add_special_tokens=False)["input_ids"])
             != len(re.findall(r"\bfoo\b", p))]
    assert not wrong, wrong[:3]
    items = probe.probe_items(tok, lab.pairs, ["foo", "Paris"])
    foo_items = items[0::3]                               # pair-major: foo, Paris, the pair's control
    assert all(ids[pos] in placeholder and sum(t in placeholder for t in ids[:pos + 1]) == 1 for ids, pos in foo_items)
    assert not any(t in placeholder for ids, pos in items[1::3] + items[2::3] for t in ids[:pos + 1])


@pytest.mark.parametrize("a", [1.0, 0.4])
def test_on_six_probe_prompts_foo_moves_to_the_a_combination_with_paris_at_the_layer_and_nothing_below(base, lab, a):
    import torch

    torch.set_num_threads(1)
    model, tok, _ = base
    items = probe.probe_items(tok, lab.pairs[:6], ["foo", "Paris"])
    h0, v0 = probe.representations(model, items, CPU.eval.pack_tokens)
    with steer.Steering(model, steer.token_map(tok, "foo", "Paris"), LAYER, a) as s:
        h, v = probe.representations(model, items, CPU.eval.pack_tokens)
    assert s.patched >= 1
    foo, paris = np.arange(0, len(items), 3), np.arange(1, len(items), 3)
    want = h0[foo, LAYER] + a * (h0[paris, LAYER] - h0[foo, LAYER])
    err = np.abs(h[foo, LAYER] - want).max() / np.abs(h0[paris, LAYER]).max()
    assert err < RTOL, f"a = {a}: the state at foo is off the a-combination with Paris's by {err:.2g} (relative)"
    assert np.array_equal(h[:, :LAYER], h0[:, :LAYER]) and np.array_equal(v[:, :LAYER], v0[:, :LAYER])
    assert np.array_equal(h[paris], h0[paris])            # Paris's own prompt holds no foo: not steered
