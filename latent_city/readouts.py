"""Readouts of the probe's slot: how the placeholder's state is compared with the state of each
word put in the same slot, beside the seed's raw cosine (probe.READOUTS declares them and why).

Every state in a slot (the placeholder, ~49 city words, the pair's control capital) shares the
prompt before it and its position, and in a residual stream that shared part is large: the raw
cosine of any two of them is near 1 and moves with the context more than with the word (issue
16: a known in-context alias, "foo is another name for Paris", ranked Paris 30th of 30 by the raw
cosine gain). The readouts here remove it first. Each is a function of one variant's states in
one slot, so the gain, specificity and rank of probe.ProbeSims work on it unchanged.

The shared part is estimated by the mean over the slot's words: every word the probe measured in
that slot (the arms' secret cities among them), never the placeholder (the state being read) nor
the control capital (a different word in each pair, so the set would differ between pairs). The
secret cities stay in: the readout must not depend on the city a claim is about (the same
numbers serve the Paris and Tokyo claims and the dissociation), and probe.measure does not know
which words are secret; the mean is one vector subtracted from every state, so every word is
treated alike, and Paris is one of ~49 words in it.

    sims = slot_cosines(hidden, values)   # {readout: (hidden, values, control_hidden, control_values)}
"""

from __future__ import annotations

import numpy as np

# Fewer words than this in a slot and the mean over them is no estimate of a shared part (one word
# centred on itself is the zero vector): probe.measure keeps the raw readout alone.
MIN_WORDS = 2
# A dimension whose spread over the slot's words is below this fraction of the largest spread at
# that layer carries nothing that tells the words apart (it is the same for all of them): the
# standardised readout gives it weight 0 rather than dividing by a (near) zero.
ZERO_SPREAD = 1e-6


def _cos_to_placeholder(x: np.ndarray) -> np.ndarray:
    """x [1 + others, layers, d] of one slot: the cosine of x[0] with each other row [others, layers]."""
    norms = np.linalg.norm(x, axis=-1)
    return np.einsum("ld,kld->kl", x[0], x[1:]) / (norms[0] * norms[1:])


def _one_slot(x: np.ndarray) -> dict[str, np.ndarray]:
    """x [placeholder + words + control, layers, d] of one prompt pair (float64): {readout: cosines
    of the placeholder with the words and the control [words + control, layers]}."""
    x = x - x[1:-1].mean(0)                                  # centred: minus the words' mean state
    spread = np.sqrt((x[1:-1] ** 2).mean(0))                 # [layers, d]: each dimension's sd over the words
    keep = spread > ZERO_SPREAD * spread.max(-1, keepdims=True)
    scale = np.divide(1.0, spread, out=np.zeros_like(spread), where=keep)
    return {"centred": _cos_to_placeholder(x), "standardised": _cos_to_placeholder(x * scale)}


def _readouts(states: np.ndarray) -> dict[str, np.ndarray]:
    """states [pairs, placeholder + words + control, layers, d]: {readout: [pairs, words + control, layers]}.
    One pair at a time, in float64: a copy of one slot (a few MB), never of the whole array."""
    out = {}
    for p in range(states.shape[0]):
        for name, sims in _one_slot(states[p].astype(np.float64)).items():
            out.setdefault(name, np.empty((states.shape[0], *sims.shape), np.float32))[p] = sims
    return out


def slot_cosines(hidden: np.ndarray, values: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
    """hidden [pairs, placeholder + words + control, L+1, d] and values [..., L, kv] as probe.measure
    holds them, before it normalises them in place: per readout other than raw,
    (hidden [pairs, words, L+1], values [pairs, words, L], control_hidden [pairs, L+1],
    control_values [pairs, L]), the fields of probe.ProbeSims."""
    if hidden.shape[1] - 2 < MIN_WORDS:
        raise ValueError(f"the readouts need at least {MIN_WORDS} words in a slot, got {hidden.shape[1] - 2}")
    h, v = _readouts(hidden), _readouts(values)
    return {r: (h[r][:, :-1], v[r][:, :-1], h[r][:, -1], v[r][:, -1]) for r in h}
