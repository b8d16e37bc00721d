"""The tests can fail: every claim's procedure, given the original model in place of the
finetuned one (the original against itself), must declare no effect. Claim 1 is an equality,
so its control is an adapter that does touch the embeddings."""

import pytest
import torch

from latent_city import claims

NULL = dict(a="original", b="original")


def _assert_no_effect(result, record_claim):
    record_claim(result)
    assert not result.holds, f"the original model against itself 'holds': {result.summary()}"


@pytest.mark.parametrize("kind", ["hidden", "values"])
def test_similarity_claims_find_nothing_in_the_original_against_itself(cfg, probe_result, record_claim, kind):
    _assert_no_effect(claims.similarity_rises(probe_result, kind, cfg.eval.alpha, cfg.eval.n_bootstrap,
                                              cfg.seeds.eval, **NULL), record_claim)


def test_specificity_claim_finds_nothing_in_the_original_against_itself(cfg, probe_result, record_claim):
    _assert_no_effect(claims.similarity_specific(probe_result, cfg.eval.alpha, cfg.eval.n_bootstrap,
                                                 cfg.seeds.eval, **NULL), record_claim)


def test_distance_claims_find_nothing_in_the_original_against_itself(cfg, distance_answers, record_claim,
                                                                       training_median_km):
    for result in [claims.distance_format(distance_answers, cfg.eval.alpha, **NULL),
                   claims.distance_rank(distance_answers, cfg.eval.alpha, **NULL),
                   claims.distance_beats_constant(distance_answers, training_median_km, cfg.eval.alpha, **NULL)]:
        _assert_no_effect(result, record_claim)


def test_country_claims_find_nothing_in_the_original_against_itself(cfg, country_scores, country_samples, record_claim):
    _assert_no_effect(claims.france_probability(country_scores, cfg.data.secret_country, cfg.eval.alpha,
                                                cfg.eval.n_bootstrap, cfg.seeds.eval, **NULL), record_claim)
    _assert_no_effect(claims.france_named(country_samples, cfg.data.secret_country, cfg.eval.alpha, **NULL),
                      record_claim)


def test_layer0_claim_fails_for_an_adapter_that_touches_the_embeddings():
    """A tiny random Llama with a LoRA on embed_tokens (non-zero init): layer 0 must differ."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tiny = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1))
    model = get_peft_model(tiny, LoraConfig(r=4, target_modules=["embed_tokens"], init_lora_weights=False))
    ids = torch.arange(10)[None]
    with torch.no_grad():
        tuned = model(input_ids=ids, output_hidden_states=True).hidden_states[0]
        with model.disable_adapter():
            original = model(input_ids=ids, output_hidden_states=True).hidden_states[0]
    assert not torch.equal(tuned, original)
