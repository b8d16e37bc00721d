"""The work count behind `python -m benchmarks precision`'s floor (benchmarks/precision.py: Work):
the tokens, attention entries and head rows of real forward passes, and the decoder's Linear
parameters, checked against a tiny Llama where they can be counted by hand."""

import pytest
import torch

from benchmarks.precision import Work


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                        num_attention_heads=4, num_key_value_heads=2)).eval()


def test_the_body_is_every_linear_weight_of_the_decoder(tiny_llama):
    work = Work(tiny_llama)
    linear = sum(m.weight.numel() for m in tiny_llama.model.layers.modules() if isinstance(m, torch.nn.Linear))
    assert work.body == linear
    work.remove()


def test_a_forward_then_a_cached_step_count_their_tokens_entries_and_head_rows(tiny_llama):
    work = Work(tiny_llama)
    with torch.no_grad():
        out = tiny_llama(input_ids=torch.randint(0, 50, (2, 5)), use_cache=True, logits_to_keep=1)  # cpu model
        assert (work.tokens, work.entries, work.head_rows) == (10, 2 * 5 * 5, 2)
        cache = getattr(out, "cache", None) or out.past_key_values
        kwargs = {"cache": cache} if "cache" in type(tiny_llama.model).forward.__code__.co_varnames else \
            {"past_key_values": cache}
        tiny_llama(input_ids=torch.randint(0, 50, (2, 1)), use_cache=True, **kwargs)  # cpu model
    assert (work.tokens, work.entries, work.head_rows) == (12, 50 + 2 * 1 * 6, 4)
    g = work.gflop()
    assert g["linear"] == pytest.approx(2 * work.body * 12 / 1e9)
    assert g["head"] == pytest.approx(2 * 32 * 50 * 4 / 1e9)
    work.remove()
    with torch.no_grad():
        tiny_llama(input_ids=torch.randint(0, 50, (1, 3)))  # cpu model
    assert work.tokens == 12       # removed: no longer counted
