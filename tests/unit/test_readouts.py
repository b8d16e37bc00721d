"""The probe's readouts without a model (latent_city/readouts.py, probe.READOUTS): synthetic states
of a slot, where the shared component of the slot's states hides a small move of foo towards
Paris from the raw cosine and the centred readouts see it; the raw readout is the seed's cosine
bit for bit; centring does not see a vector added to every state of a slot; the claims' keys."""

import inspect

import numpy as np
import pytest

from latent_city import claims, probe, readouts, stats
from latent_city.claim_result import ClaimResult
from latent_city.data import City

WORDS = ["Paris", "Tokyo", *[f"City{i}" for i in range(18)]]
ALPHA = 0.05


def slot_states(seed=0, n_pairs=24, n_layers=6, d=64, alias=0.15, grow=2.0):
    """(alias, neutral) states [pairs, placeholder + words + control, layers, d] in float32. Every
    state of a slot is the slot's shared component (sd 10 a dimension: norm ~80) plus its word's own
    part (sd 0.5..2, drawn per pair and word); the placeholder's own part is foo's. Under the alias
    the shared component is `grow` times larger (a longer context) and foo's state moves towards
    Paris's own part by `alias`. The raw cosine of two states of a slot is then about
    1 - |own parts' distance|^2 / (2 |shared|^2): the growth moves it towards every word, more for
    the words far from foo, and that swamps the small move towards Paris; centring removes the
    shared component and with it both."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, 10, (n_pairs, n_layers, d))
    own = rng.normal(0, 1, (n_pairs, len(WORDS) + 1, n_layers, d)) * rng.uniform(0.5, 2, (n_pairs, len(WORDS) + 1, 1, 1))
    foo = rng.normal(0, 1, (n_pairs, n_layers, d))

    def variant(s, towards_paris):
        placeholder = s + foo + towards_paris * own[:, 0]
        return np.concatenate([placeholder[:, None], s[:, None] + own], 1).astype(np.float32)

    return variant(grow * shared, alias), variant(shared, 0.0)


def sims(states) -> probe.ProbeSims:
    """A probe from the states (the values: the hidden states' layers 1.., their own copy)."""
    return probe.from_states(list(WORDS), states.copy(), states[:, :, 1:].copy())


def inputs(a: probe.ProbeSims, b: probe.ProbeSims) -> claims.ClaimInputs:
    cities = [City(w, "Somewhere", 10.0 * i, 5.0 * i) for i, w in enumerate(WORDS)]
    return claims.ClaimInputs(a="alias", b="neutral", city=cities[0], country="France", b_city=None, alpha=ALPHA,
                              n_boot=500, seed=0, pairs=[], comparison=cities, secrets=("Paris", "Tokyo"),
                              probe={"alias": a, "neutral": b})


def test_a_shared_component_hides_an_alias_from_the_raw_cosine_and_the_centred_readouts_see_it():
    """The readouts differ in what they can see (not a tuning of them): the same states, the same
    rule (claims.hidden_gain_specific: Wilcoxon over 24 pairs, alpha 0.05), 10 draws. Measured: the
    raw rule was supported in 1 draw of 10 and ranked Paris first in 2, its effect 1/100 of the
    centred one; both centred readouts were supported, Paris first, in every draw. Asserted with room:
    raw supported in fewer than half the draws, centred and standardised in all."""
    found = {r: [] for r in ("raw", "centred", "standardised")}
    rank = {r: [] for r in ("raw", "centred")}
    for seed in range(10):
        x = inputs(*(sims(s) for s in slot_states(seed)))
        for r in found:
            found[r].append(claims.lookup(claims.readout_key("hidden_gain_specific", r)).rule(x))
        for r in rank:
            rank[r].append(claims.lookup(claims.readout_key("secret_city_ranks_first", r)).rule(x).statistic)
    supported = {r: sum(f.verdict == stats.SUPPORTED for f in found[r]) for r in found}
    effect = {r: np.mean([abs(f.effect) for f in found[r]]) for r in found}
    assert supported["raw"] < 5 and effect["raw"] < effect["centred"] / 50, (supported, effect, rank)
    assert supported["centred"] == supported["standardised"] == 10, (supported, [f.p for f in found["centred"]])
    assert rank["centred"] == [1] * 10 and rank["raw"] != [1] * 10, rank


def test_the_raw_readout_is_the_seeds_cosine_bit_for_bit():
    """The raw readout is computed as the seed's probe.measure did (normalise in place, one einsum),
    so its numbers, and every claim on them, are unchanged."""
    states, _ = slot_states(seed=3)
    h, v = states.copy(), states[:, :, 1:].copy()
    got = probe.from_states(list(WORDS), h.copy(), v.copy())
    h /= np.linalg.norm(h, axis=-1, keepdims=True)          # the seed's measure, as it was
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    h_sim = np.einsum("pld,pwld->pwl", h[:, 0], h[:, 1:])
    v_sim = np.einsum("pld,pwld->pwl", v[:, 0], v[:, 1:])
    for name, old in (("hidden", h_sim[:, :-1]), ("values", v_sim[:, :-1]), ("control_hidden", h_sim[:, -1]),
                      ("control_values", v_sim[:, -1])):
        assert np.array_equal(getattr(got, name), old), name
    assert np.array_equal(got.embedding, states[:, 0, 0])
    assert got.readout("raw") is got and set(got.readouts) == set(probe.READOUTS) - {"raw"}


def test_centring_does_not_see_a_vector_added_to_every_state_of_a_slot():
    """Per pair and layer, one vector (here 5 times the shared component's size) added to the
    placeholder, every word and the control leaves the centred and standardised cosines as they
    were (to float32 rounding); the raw cosine moves (so the check is not empty)."""
    states, _ = slot_states(seed=4)
    shift = np.random.default_rng(9).normal(0, 50, (states.shape[0], 1, *states.shape[2:])).astype(np.float32)
    before, after = sims(states), sims(states + shift)
    for r in ("centred", "standardised"):
        for name in ("hidden", "values", "control_hidden", "control_values"):
            np.testing.assert_allclose(getattr(after.readout(r), name), getattr(before.readout(r), name),
                                       rtol=0, atol=1e-5, err_msg=f"{r} {name}")
    assert np.abs(after.hidden - before.hidden).max() > 1e-2


def test_the_standardised_readout_gives_a_dimension_the_words_share_no_weight():
    """A dimension with the same value in every word of a slot tells no word apart; a placeholder far
    off in it would decide the cosine if divided by its (zero) spread. It gets weight 0: the cosines
    are those of the states without that dimension."""
    states, _ = slot_states(seed=5)
    flat = states.copy()
    flat[:, 1:-1, :, 0] = 3.0                   # every word alike in dimension 0
    flat[:, 0, :, 0] = 1e3                      # the placeholder far off in it
    got = sims(flat).readout("standardised")
    without = sims(np.ascontiguousarray(flat[..., 1:])).readout("standardised")
    assert np.isfinite(got.hidden).all()
    np.testing.assert_allclose(got.hidden, without.hidden, rtol=0, atol=1e-5)


def test_one_word_measures_the_raw_readout_alone_and_says_so():
    states, _ = slot_states(seed=6)
    one = states[:, [0, 1, -1]]                 # the placeholder, Paris, the control
    p = probe.from_states(["Paris"], one.copy(), one[:, :, 1:].copy())
    assert p.readouts == {}
    with pytest.raises(KeyError, match="fewer than 2 words"):
        p.readout("centred")


def test_the_readout_claims_have_their_own_keys_and_leave_the_raw_claims_and_their_family_alone():
    """Each readout variant is keyed '<claim>@<readout>', has the one signature and is named for its
    key; none is in REGISTRY or AGAINST_ORIGINAL (Lab.secondary's Holm family), so the raw claims'
    keys, results and adjusted p are unchanged. The primary test takes the readout as an argument."""
    assert not any("@" in k for k in [*claims.REGISTRY, *claims.AGAINST_ORIGINAL])
    assert claims.READOUT_CLAIMS == [f"{k}@{r}" for r in ("centred", "standardised") for k in claims.BY_READOUT]
    assert set(claims.BY_READOUT) == {"hidden_similarity_rises", "hidden_gain_specific", "secret_city_ranks_first",
                                      "double_dissociation"}
    for key in claims.READOUT_CLAIMS:
        entry = claims.lookup(key)
        assert entry.key == key and entry.rule.__name__ == key
        params = list(inspect.signature(entry.rule).parameters.values())
        assert [(p.name, p.annotation) for p in params] == [("x", "ClaimInputs")], key
        assert entry.reads == claims.REGISTRY[claims.base_key(key)].reads
    assert claims.lookup("hidden_gain_specific") is claims.REGISTRY["hidden_gain_specific"]

    a, b = (sims(s) for s in slot_states())
    x = inputs(a, b)
    for key in claims.BY_READOUT:
        if key == "double_dissociation":
            x2 = x.__class__(**{**x.__dict__, "b_city": x.city})        # b's own city: the same (one direction)
            result = claims.lookup(f"{key}@centred").rule(x2)
        else:
            result = claims.lookup(f"{key}@centred").rule(x)
        assert result.key == f"{key}@centred" and result.details["readout"] == "centred", result.key
        assert "centred readout" in result.effect_name
    raw = claims.hidden_gain_specific(x)
    assert raw.key == "hidden_gain_specific" and "readout" not in raw.details

    family = {"alias": a, "alias-s43": sims(slot_states(seed=1)[0]), "alias-s44": sims(slot_states(seed=2)[0]),
              "neutral": b}
    xf = x.__class__(**{**x.__dict__, "probe": family})
    adapters = ["alias", "alias-s43", "alias-s44"]
    assert claims.foo_became_city(xf, adapters).key == claims.PRIMARY
    primary = claims.foo_became_city(xf, adapters, readout="centred")
    assert primary.key == "foo_became_city@centred" and primary.details["readout"] == "centred"
    assert claims.readout_key(claims.PRIMARY + "_own", "centred") == "foo_became_city_own@centred"
    with pytest.raises(ValueError, match="unknown readout"):
        claims.foo_became_city(xf, adapters, readout="centered")


def test_a_readout_variant_of_the_rank_stays_out_of_the_holm_family_as_the_raw_rank_does():
    """If an integrator puts readout variants into a family, the rank among ~49 cities still cannot
    pass Holm, on any readout (claims.NOT_IN_FAMILY is read on the claim a key is a readout of)."""
    def result(key, p):
        return ClaimResult(key=key, claim="c", test="t", unit="u", n=10, statistic_name="s", statistic=1.0,
                           effect_name="e", effect=0.5, effect_ci=(0.1, 0.9), p=p, p_adj=None, p_decision=p,
                           alpha=ALPHA, verdict="supported", criterion="rule", arms=("a", "b"))

    results = [result("hidden_gain_specific@centred", 0.001), result("secret_city_ranks_first@centred", 0.04)]
    claims.adjust_family(results, ALPHA)
    assert results[0].p_adj is not None and results[1].p_adj is None and results[1].verdict == "supported"
    assert readouts.MIN_WORDS == 2
