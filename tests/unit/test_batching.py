"""Packed prefix trees give what one forward pass per sequence gives (a tiny random Llama,
no weights needed), and the trie holds each distinct prefix exactly once."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latent_city import batching

token_lists = st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=8), min_size=1, max_size=12)


@given(token_lists)
def test_the_tree_holds_each_distinct_prefix_once_and_spells_every_sequence(seqs):
    tree = batching.pack_prefix_trees(seqs)
    assert len(tree) == len({tuple(s[:k]) for s in seqs for k in range(1, len(s) + 1)})
    for seq, rows in zip(seqs, tree.index):
        assert [tree.ids[r] for r in rows] == seq
        assert [tree.positions[r] for r in rows] == list(range(len(seq)))
        assert [tree.parent[r] for r in rows] == [-1] + rows[:-1]


@given(token_lists, st.integers(1, 20))
def test_groups_cover_every_sequence_once_and_stay_within_the_budget(seqs, budget):
    groups = batching.pack_in_groups(seqs, budget)
    assert sorted(i for g, _ in groups for i in g) == list(range(len(seqs)))
    for g, tree in groups:
        assert len(tree) <= budget or len(g) == 1


def test_the_mask_lets_a_token_see_itself_and_its_ancestors_only():
    tree = batching.pack_prefix_trees([[7, 8, 9], [7, 5]])      # rows: 7, 8, 9, 5
    allowed = tree.attention_mask(torch.float32)[0, 0] == 0
    assert allowed.tolist() == [[True, False, False, False],
                                [True, True, False, False],
                                [True, True, True, False],
                                [True, False, False, True]]


@given(st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=6), min_size=1, max_size=5), st.sampled_from(["left", "right"]))
def test_pad_keeps_each_list_and_masks_the_rest(seqs, side):
    ids, mask = batching.pad(seqs, pad_id=-1, side=side)
    for row, seq in enumerate(seqs):
        assert ids[row][mask[row].bool()].tolist() == seq
        assert (ids[row][~mask[row].bool()] == -1).all()


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                         num_attention_heads=4, num_key_value_heads=2))
    return model.eval()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(0, 49), min_size=1, max_size=10), min_size=1, max_size=6))
def test_a_packed_forward_equals_one_forward_per_sequence(tiny_llama, seqs):
    tree = batching.pack_prefix_trees(seqs)
    out = batching.forward_packed(tiny_llama, tree, output_hidden_states=True)
    for seq, rows in zip(seqs, tree.index):
        with torch.no_grad():
            alone = tiny_llama(input_ids=torch.tensor([seq]), output_hidden_states=True)  # cpu model
        # float32 with a different reduction order: equal to 1e-5
        torch.testing.assert_close(out.logits[0, rows], alone.logits[0], atol=1e-5, rtol=1e-5)
        for packed, single in zip(out.hidden_states, alone.hidden_states):
            torch.testing.assert_close(packed[0, rows], single[0], atol=1e-5, rtol=1e-5)
