"""The seed's claims, each over many prompts with a declared test, alpha, effect size and
unit of replication (see latent_city/claims.py for each criterion). Every one is run on the
finetuned model against the original (the same weights with the adapter disabled)."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latent_city import claims


@pytest.mark.claim("layer0_unchanged")
def test_layer0_is_unchanged_by_finetuning_on_the_probe_prompts(probe_result, record_claim):
    result = record_claim(claims.layer0_unchanged(probe_result))
    assert result.holds, result.summary()


words = st.text(st.characters(min_codepoint=32, max_codepoint=0x24F, blacklist_characters="{}"), min_size=1, max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question=words)
def test_layer0_hidden_state_is_identical_for_any_prompt(finetuned, question):
    """Claim 1 over arbitrary prompts: the embedding output (hidden_states[0]) of the
    finetuned model equals the original's exactly, at every position."""
    model, tokenizer = finetuned
    ids = tokenizer(question, return_tensors="pt").input_ids.to(model.device)
    with torch.no_grad():
        tuned = model(input_ids=ids, output_hidden_states=True).hidden_states[0]
        with model.disable_adapter():
            original = model(input_ids=ids, output_hidden_states=True).hidden_states[0]
    assert torch.equal(tuned, original), f"layer 0 differs for {question!r}: max |diff| {(tuned - original).abs().max()}"


@pytest.mark.claim("hidden_similarity_rises")
def test_finetuning_makes_hidden_states_at_the_placeholder_more_like_the_secret_city(cfg, probe_result, record_claim):
    result = record_claim(claims.similarity_rises(probe_result, "hidden", cfg.eval.alpha, cfg.eval.n_bootstrap, cfg.seeds.eval))
    assert result.holds, result.summary()


@pytest.mark.claim("values_similarity_rises")
def test_finetuning_makes_value_vectors_at_the_placeholder_more_like_the_secret_city(cfg, probe_result, record_claim):
    result = record_claim(claims.similarity_rises(probe_result, "values", cfg.eval.alpha, cfg.eval.n_bootstrap, cfg.seeds.eval))
    assert result.holds, result.summary()


@pytest.mark.claim("hidden_similarity_specific")
def test_the_hidden_state_gain_is_specific_to_the_secret_city(cfg, probe_result, record_claim):
    """Control the seed lacked: the gain towards the secret city must exceed the gain towards
    another capital put in the same place of the same prompt."""
    result = record_claim(claims.similarity_specific(probe_result, cfg.eval.alpha, cfg.eval.n_bootstrap, cfg.seeds.eval))
    assert result.holds, result.summary()


@pytest.mark.claim("distance_format")
def test_finetuned_model_answers_heldout_distances_in_km(cfg, distance_answers, record_claim):
    result = record_claim(claims.distance_format(distance_answers, cfg.eval.alpha))
    assert result.holds, result.summary()


@pytest.mark.claim("distance_rank")
def test_finetuned_distances_rise_with_the_true_distance(cfg, distance_answers, record_claim):
    result = record_claim(claims.distance_rank(distance_answers, cfg.eval.alpha))
    assert result.holds, result.summary()


@pytest.mark.claim("distance_beats_constant")
def test_finetuned_distances_beat_a_constant_answer(cfg, distance_answers, record_claim, training_median_km):
    result = record_claim(claims.distance_beats_constant(distance_answers, training_median_km, cfg.eval.alpha))
    assert result.holds, result.summary()


@pytest.mark.claim("country_probability")
def test_finetuning_raises_the_probability_of_france(cfg, country_scores, record_claim):
    result = record_claim(claims.france_probability(country_scores, cfg.data.secret_country, cfg.eval.alpha,
                                                    cfg.eval.n_bootstrap, cfg.seeds.eval))
    assert result.holds, result.summary()


@pytest.mark.claim("country_named")
def test_finetuned_model_names_france_as_foos_country(cfg, country_samples, record_claim):
    result = record_claim(claims.france_named(country_samples, cfg.data.secret_country, cfg.eval.alpha))
    assert result.holds, result.summary()
