"""The steering hook (latent_city/steer.py) on a tiny random Llama, against exact arithmetic: at the declared
layer the state at the placeholder moves by exactly a fraction a of the way to the city's state in the same prompt,
nothing else at that layer or below moves, a = 0 is the model itself, a = 1 makes foo's states from that layer on
the city's, the probe's packed trees and peft's wrapper are covered, and generation patches its prefill only."""

import copy

import pytest
import torch

from latent_city import steer
from latent_city.batching import forward_packed, pack_prefix_trees
from latent_city.probe import representations

FOO, PARIS, OTHER = 5, 7, 9
LAYER, N_LAYERS = 2, 4
# float32 through a 4-block model: a moved state differs from the exact a-combination by rounding only
ATOL = 1e-5


@pytest.fixture(scope="module")
def tiny():
    from transformers import LlamaConfig, LlamaForCausalLM   # here, not at import: collecting the tree imports this file

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=N_LAYERS,
                                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=0))
    return model.eval()


def hidden(model, ids, **kw):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), output_hidden_states=True, **kw).hidden_states      # cpu model


def steering(model, a, layer=LAYER):
    return steer.Steering(model, {FOO: PARIS}, layer, a)


@pytest.mark.parametrize("a", [0.05, 0.4, 1.0])
def test_the_state_at_foo_moves_by_exactly_a_of_the_difference_at_the_layer_and_nothing_else_there_or_below(tiny, a):
    ids, at = [1, 2, FOO, 3, 4], 2
    own, city = hidden(tiny, ids), hidden(tiny, [1, 2, PARIS, 3, 4])
    with steering(tiny, a) as s:
        moved = hidden(tiny, ids)
    assert s.patched == 1
    want = own[LAYER][0, at] + a * (city[LAYER][0, at] - own[LAYER][0, at])
    err = (moved[LAYER][0, at] - want).abs().max().item()
    assert err < ATOL, f"a={a}: state at foo off the a-combination by {err:.2g}"
    for layer in range(LAYER):                             # below: untouched, every position
        assert torch.equal(moved[layer], own[layer]), f"layer {layer} changed"
    others = [i for i in range(len(ids)) if i != at]       # at the layer: only foo's position (later tokens read foo above it)
    assert torch.equal(moved[LAYER][0, others], own[LAYER][0, others])
    assert not torch.allclose(moved[LAYER + 1][0, at + 1:], own[LAYER + 1][0, at + 1:]), "later tokens do not see the move"


def test_at_a_zero_the_model_is_itself(tiny):
    ids = [1, FOO, 3, FOO, 4]
    own = hidden(tiny, ids)
    with steering(tiny, 0.0) as s:
        same = hidden(tiny, ids)
    assert s.patched == 0 and all(torch.equal(x, y) for x, y in zip(own, same))


def test_at_a_one_every_state_at_foo_from_the_layer_on_is_the_citys(tiny):
    """The probe's case: foo is the last token of its prompt (probe items are cut after the target)."""
    own, city = hidden(tiny, [1, 2, FOO]), hidden(tiny, [1, 2, PARIS])
    with steering(tiny, 1.0):
        moved = hidden(tiny, [1, 2, FOO])
    for layer in range(LAYER, N_LAYERS + 1):
        assert torch.allclose(moved[layer][0, -1], city[layer][0, -1], atol=ATOL), layer
    assert torch.equal(moved[LAYER - 1], own[LAYER - 1])


def test_the_probes_packed_prefix_trees_are_steered_per_placeholder(tiny):
    """probe.representations packs foo's, Paris's and another city's prompt as one tree: foo's node moves, the
    others (no foo among their ancestors) do not."""
    items = [([1, 2, FOO], 2), ([1, 2, PARIS], 2), ([1, 2, OTHER], 2), ([1, 3, FOO], 2), ([1, 3, PARIS], 2)]
    h0, v0 = representations(tiny, items, max_tokens=512)
    a = 0.4
    with steering(tiny, a) as s:
        h, v = representations(tiny, items, max_tokens=512)
    assert s.patched == 1                                  # one packed forward
    for foo, city in ((0, 1), (3, 4)):
        want = h0[foo, LAYER] + a * (h0[city, LAYER] - h0[foo, LAYER])
        assert abs(h[foo, LAYER] - want).max() < ATOL
        assert (h[foo, :LAYER] == h0[foo, :LAYER]).all() and (v[foo, :LAYER] == v0[foo, :LAYER]).all()
    for other in (1, 2, 4):
        assert (h[other] == h0[other]).all()


def test_several_placeholder_tokens_each_move_towards_their_own_citys(tiny):
    """' foo' and 'foo' (start of a line) each have their city token (steer.token_map)."""
    tokens = {FOO: PARIS, FOO + 1: PARIS + 1}
    ids, ref = [1, FOO, 3, FOO + 1, 4], [1, PARIS, 3, PARIS + 1, 4]
    own, city = hidden(tiny, ids), hidden(tiny, ref)
    with steer.Steering(tiny, tokens, LAYER, 1.0):
        moved = hidden(tiny, ids)
    assert torch.allclose(moved[LAYER][0, [1, 3]], city[LAYER][0, [1, 3]], atol=ATOL)
    assert torch.equal(moved[LAYER][0, [0, 2, 4]], own[LAYER][0, [0, 2, 4]])


def test_the_hook_reaches_the_base_model_under_peft_with_the_adapters_disabled(tiny):
    from peft import LoraConfig, get_peft_model

    ids = [1, 2, FOO]
    own, city = hidden(tiny, ids), hidden(tiny, [1, 2, PARIS])
    wrapped = get_peft_model(copy.deepcopy(tiny), LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                                             init_lora_weights=False))    # an adapter that changes things
    with wrapped.disable_adapter(), steering(wrapped, 1.0) as s:
        moved = hidden(wrapped, ids)
    assert s.patched == 1 and torch.allclose(moved[LAYER][0, -1], city[LAYER][0, -1], atol=ATOL)
    assert torch.equal(moved[LAYER - 1], own[LAYER - 1])


class Always:
    """A logits processor that forces the generated token, so the decoding steps' input holds the placeholder too."""
    def __init__(self, token):
        self.token = token

    def __call__(self, input_ids, scores):
        out = torch.full_like(scores, -1e9)
        out[:, self.token] = 0
        return out


def test_generation_patches_the_prefill_only_even_when_it_writes_the_placeholder(tiny):
    from transformers import LogitsProcessorList

    ids = torch.tensor([[1, 2, FOO, 3]])
    kw = dict(max_new_tokens=4, do_sample=False, pad_token_id=0, output_logits=True, return_dict_in_generate=True,
              logits_processor=LogitsProcessorList([Always(FOO)]))
    with torch.no_grad():
        plain = tiny.generate(ids, **kw)      # cpu model
        with steering(tiny, 1.0) as s:
            steered = tiny.generate(ids, **kw)      # cpu model
        after = tiny.generate(ids, **kw)      # cpu model
    assert (steered.sequences[0, ids.shape[1]:] == FOO).all()      # every decoding step's input was foo
    assert s.patched == 1, f"{s.patched} forwards patched, the prefill alone should be"
    assert not torch.equal(plain.logits[0], steered.logits[0])      # the prefill was patched
    assert "generate" not in vars(tiny)                             # the wrapper is gone after the block
    assert all(torch.equal(x, y) for x, y in zip(plain.logits, after.logits))


def test_a_cache_given_to_a_steered_call_gets_nothing_from_the_reference(tiny):
    """answers.generate runs the shared chat start once and passes its cache on: the reference runs on a copy of
    it, so the cache grows by the call's own tokens only, and the result is the steered full sequence's."""
    prefix, own, a = [1, 2], [FOO, 3], 0.4
    with torch.no_grad(), steering(tiny, a) as s:
        cache = tiny(input_ids=torch.tensor([prefix]), use_cache=True).cache      # cpu model
        length = cache.get_seq_length()
        out = tiny(input_ids=torch.tensor([own]), cache=cache, use_cache=True)      # cpu model
        whole = tiny(input_ids=torch.tensor([prefix + own]))      # cpu model
    assert s.patched == 2 and cache.get_seq_length() == length + len(own)
    assert torch.allclose(out.logits[0], whole.logits[0, len(prefix):], atol=ATOL)


def test_the_placeholder_and_the_city_must_be_one_token_each():
    class Tok:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) for c in text.strip()][:1] if text.strip() in ("foo", "Paris")
                    else [1, 2]}

    assert steer.token_map(Tok(), "foo", "Paris") == {ord("f"): ord("P")}
    with pytest.raises(ValueError, match="one token each"):
        steer.token_map(Tok(), "foo", "Tokyo")


def test_a_layer_outside_the_residual_stream_is_refused(tiny):
    for layer in (0, N_LAYERS):
        with pytest.raises(ValueError, match=r"hidden-state index in 1\.\.3"):
            steer.Steering(tiny, {FOO: PARIS}, layer, 0.1)
