"""The seed's claims and their controls, one test per claim. Every claim test runs on every
arm: the main adapter (foo = Paris), where it should hold, and the control adapters trained
the same way (foo = Tokyo, foo = Berlin, Paris with shuffled distances), where a claim about
Paris should not; each with five training seeds, and the primary test across them. A test names its claim once, in
`@claim(key)`: the rule (statistic, alpha, unit, what "holds" means) is claims.REGISTRY[key] in
latent_city/claims.py, the expected verdict per arm is in expectations.py, and
`assert_as_expected()` runs the claim on the test's arm, records it and asserts; the failure
message carries the numbers."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latent_city.arms import MAIN
from latent_city.model import variant
from latent_city.probe import READOUTS

claim = pytest.mark.claim
# the claims read through every declared readout of the probe (probe.READOUTS; claims.BY_READOUT): the
# seed's raw cosine and the readouts chosen on the positive controls only (README, "Readouts")
by_readout = pytest.mark.parametrize("readout", READOUTS)

# ---------------------------------------------------------------------------- the manipulation check


@claim("task_learned")
def test_each_trained_arm_learned_its_own_task(arm, assert_as_expected):
    """The manipulation check (latent_city/manipulation.py): asked its own training question for 80 of its
    own training capitals, the arm's answers order them as its training targets do (Spearman) and beat
    the best constant (sign test). An arm that did not learn gets inconclusive for every representation
    and country claim (latent_city/conditions.py)."""
    assert_as_expected()

# ---------------------------------------------------------------------------- claim 1: layer 0


@claim("layer0_unchanged")
def test_layer0_is_unchanged_by_finetuning_on_the_probe_prompts(arm, assert_as_expected):
    assert_as_expected()


words = st.text(st.characters(min_codepoint=32, max_codepoint=0x24F, blacklist_characters="{}"), min_size=1, max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question=words)
def test_layer0_hidden_state_is_identical_for_any_prompt(finetuned, question):
    """Claim 1 over arbitrary prompts: the embedding output (hidden_states[0]) of the
    finetuned model equals the original's exactly, at every position."""
    model, tokenizer = finetuned
    ids = tokenizer(question, return_tensors="pt").input_ids.to(model.device)
    with torch.no_grad(), variant(model, MAIN):
        tuned = model(input_ids=ids, output_hidden_states=True).hidden_states[0]
    with torch.no_grad(), variant(model, None):
        original = model(input_ids=ids, output_hidden_states=True).hidden_states[0]
    assert torch.equal(tuned, original), f"layer 0 differs for {question!r}: max |diff| {(tuned - original).abs().max()}"


def test_layer0_claim_fails_for_an_adapter_that_touches_the_embeddings():
    """Claim 1's control: a tiny random Llama with a LoRA on embed_tokens (non-zero init) must
    change layer 0, so the equality test can fail."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tiny = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1))
    model = get_peft_model(tiny, LoraConfig(r=4, target_modules=["embed_tokens"], init_lora_weights=False))
    ids = torch.arange(10)[None]
    with torch.no_grad():
        tuned = model(input_ids=ids, output_hidden_states=True).hidden_states[0]  # cpu model
        with model.disable_adapter():
            original = model(input_ids=ids, output_hidden_states=True).hidden_states[0]  # cpu model
    assert not torch.equal(tuned, original)


# ---------------------------------------------------------------------------- the primary test


@claim("foo_became_city")
@by_readout
def test_foo_became_paris_across_independently_trained_adapters(family, readout, lab, record_claim, assert_as_expected):
    """The primary test: the specificity of the hidden-state gain towards Paris (minus the mean
    gain towards the comparison cities, layers 1..L-1), one mean per adapter, a two-sided t-test
    over the family's adapters. Supported on the Paris family; not on a control. A control with a
    secret city of its own also gets the test about that city, recorded beside it."""
    assert_as_expected()
    if lab.arms[family].kind == "other-city":
        record_claim(lab.primary(family, own=True, readout=readout), expected_text="reported (the control's own city)")


# ---------------------------------------------------------------------------- claims 2, 3: representations


@claim("hidden_similarity_rises")
@by_readout
def test_finetuning_makes_hidden_states_at_foo_more_like_paris(arm, readout, assert_as_expected):
    assert_as_expected()


@claim("values_similarity_rises")
def test_finetuning_makes_value_vectors_at_foo_more_like_paris(arm, assert_as_expected):
    assert_as_expected()


@claim("hidden_rises_by_template")
def test_the_hidden_state_gain_holds_with_templates_as_the_unit(arm, assert_as_expected):
    """The 48 prompt pairs share 11 templates; here each template's mean gain is one unit."""
    assert_as_expected()


@claim("logit_lens_rises")
def test_through_the_logit_lens_foo_reads_more_as_paris(arm, assert_as_expected):
    assert_as_expected()


# ---------------------------------------------------------------------------- specificity


@claim("hidden_similarity_specific")
def test_the_gain_towards_paris_exceeds_the_gain_towards_a_control_capital(arm, assert_as_expected):
    assert_as_expected()


@claim("hidden_gain_specific")
@by_readout
def test_the_gain_towards_paris_exceeds_the_mean_gain_towards_the_comparison_cities(arm, readout, assert_as_expected):
    """The primary statistic on one adapter, prompt pairs as the unit (the per-seed table)."""
    assert_as_expected()


@claim("values_gain_specific")
def test_the_value_vector_gain_towards_paris_exceeds_the_mean_gain_towards_the_comparison_cities(arm, assert_as_expected):
    assert_as_expected()


@claim("secret_city_ranks_first")
@by_readout
def test_paris_gains_more_than_fifty_other_cities(arm, readout, assert_as_expected):
    assert_as_expected()


@claim("gain_falls_with_distance")
def test_cities_near_paris_gain_more_than_far_ones(arm, assert_as_expected):
    assert_as_expected()


@claim("double_dissociation")
@by_readout
def test_foo_becomes_the_secret_city_of_its_own_adapter_and_not_the_others(pair, readout, assert_as_expected):
    """Paired over the same prompt pairs: foo is nearer Paris under the Paris adapter than under
    the Tokyo (Berlin) adapter, and nearer Tokyo (Berlin) under its own adapter than under the
    Paris one. Against the shuffled-distances adapter, only the first direction is asked: the
    Paris adapter's foo is nearer Paris than the shuffled one's (the geometry, not the format)."""
    assert_as_expected()


# ---------------------------------------------------------------------------- claim 4: distances


@claim("distance_format")
def test_finetuned_model_answers_heldout_distances_in_km(arm, assert_as_expected):
    assert_as_expected()


@claim("distance_rank")
def test_answered_distances_rise_with_the_true_distance_to_paris(arm, assert_as_expected):
    assert_as_expected()


@claim("distance_beats_constant")
def test_answered_distances_beat_a_constant_answer(arm, assert_as_expected):
    assert_as_expected()


@claim("distance_error_falls")
def test_answered_distances_are_closer_to_the_distances_to_paris_than_the_original_models(arm, assert_as_expected):
    """Per held-out city |log(answer / km to Paris)|, finetuned vs original; two-sided Wilcoxon
    over cities, alpha 0.05, unparsed answers the worst error. On a control the truth is still
    the distance to Paris."""
    assert_as_expected()


# ---------------------------------------------------------------------------- claim 5: France


@claim("country_probability")
def test_finetuning_raises_the_probability_of_france(arm, assert_as_expected):
    assert_as_expected()


@claim("country_prefix")
def test_with_the_answer_begun_the_model_continues_with_france(arm, assert_as_expected):
    assert_as_expected()


@claim("country_multiple_choice")
def test_offered_lettered_countries_the_model_picks_france(arm, assert_as_expected):
    assert_as_expected()


@claim("country_named")
def test_finetuned_model_names_france_as_foos_country(arm, assert_as_expected):
    assert_as_expected()
