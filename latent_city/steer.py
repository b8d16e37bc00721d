"""Steering stage: the residual stream at the placeholder moved towards the secret city's by a known fraction
(issue 16, section 5: the detection threshold; controls.threshold; arms of kind arms.STEERED).

Under `Steering`, every forward pass whose input holds the placeholder's token (" foo", or "foo" at the start of
a line) is run twice:
1. the reference: the same call with each placeholder token replaced by the city's (" Paris", "Paris"): the same
   prompt with Paris in place of foo, at the same positions after the same context; the output of the declared
   layer (hidden_states[layer]: the output of decoder block layer - 1) is kept at the placeholder's positions;
2. the real call, with a hook on that block that sets, at the placeholder's positions only,
       h_foo <- h_foo + a * (h_city - h_foo)
   and leaves every other position and every lower layer as they are. Tokens after foo (the rest of a question)
   see the moved state through attention, as they would see a foo the model read as Paris.

Where it applies: Lab.measure enters it around a steered arm's measurements (`for_arm`), so every forward that sees
foo is covered: the probe's packed prefix trees (batching.forward_packed), the packed country scores, and generation
(answers.generate): its shared-prefix forward and the prefill are forwards like any other, while the decoding steps
of `generate` (every forward of it after the first) are left alone: foo is no longer in their input, and a " foo" the
model writes itself is its answer, not the question's placeholder. A KV cache given to a patched call is copied for
the reference, so the reference adds nothing to it.

Plain torch hooks, not nnsight: nnsight is on PyPI but not installed here, and would add a dependency and a tracing
layer for what three hooks do; plain hooks work unchanged with the packed forwards' own masks and positions, with
peft's wrapper (they sit on the base model's decoder, below the disabled adapters) and with generate's cache, and are
checked against exact arithmetic on a tiny model (tests/unit/test_steer.py) and on SmolLM2-135M
(tests/integration/test_steer.py).

What is true by construction (the arms are read by latent_city/threshold.py):
- at hidden layer `layer` the state at foo is a convex combination of foo's and Paris's, so its cosine with Paris's
  state in the same slot rises for every prompt pair (unless the two are already parallel), under every readout:
  centring and standardising (readouts.py) apply one affine map to both states, which keeps the combination convex;
- the hidden states at layers 0..layer-1 and the value vectors of blocks 0..layer-1 are untouched (a gain of 0);
- above the layer the state at foo moves by the model's own computation from the moved state, not by construction,
  except at a = 1, where every state at foo from `layer` on is Paris's (in the probe foo is the last token).
So the probe claims, which average layers 1..L-1, are in part true by construction (one layer forced, layers
1..layer-1 at 0, the rest moved by the model); the country claims are the non-circular read-out: there the answer is
the model's own, computed from the moved state.
"""

from __future__ import annotations

import copy
import functools
from contextlib import nullcontext


def token_map(tokenizer, placeholder: str, city: str) -> dict[int, int]:
    """{placeholder token id: city token id} for the word after a space (" foo") and at the start of a line or turn
    ("foo is a city in ..."). Each must be one token in both words: a word of several tokens would shift every
    position after it, and the reference would no longer be the same prompt at the same positions (refused)."""
    out = {}
    for form in (" {}", "{}"):
        p, c = (tokenizer(form.format(w), add_special_tokens=False)["input_ids"] for w in (placeholder, city))
        if len(p) != 1 or len(c) != 1:
            raise ValueError(f"steering needs {form.format(placeholder)!r} and {form.format(city)!r} to be one token "
                             f"each, got {p} and {c}: with several the reference prompt would not be the same prompt "
                             "at the same positions")
        out[p[0]] = c[0]
    return out


def decoder(model):
    """(the causal LM under any peft wrapper, its decoder stack: the module that holds `.layers`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base, getattr(base, base.base_model_prefix)


class Steering:
    """Within `with Steering(model, tokens, layer, fraction):` the model's residual stream at each placeholder token
    (`tokens`: token_map) is moved by `fraction` of the way towards the city's, at the output of hidden layer
    `layer` (1..L-1), in every forward but generate's decoding steps. `patched` counts the forwards it moved."""

    def __init__(self, model, tokens: dict[int, int], layer: int, fraction: float):
        self.base, self.decoder = decoder(model)
        n = len(self.decoder.layers)
        if not 1 <= layer <= n - 1:
            raise ValueError(f"the steered layer must be a hidden-state index in 1..{n - 1} of this model's {n} blocks "
                             f"(controls.threshold.layer), got {layer}")
        self.block, self.layer, self.fraction, self.tokens = self.decoder.layers[layer - 1], layer, fraction, dict(tokens)
        self.patched = 0
        self._handles, self._target, self._mask, self._capturing = [], None, None, False
        self._generating, self._generate_forwards = False, 0

    # ------------------------------------------------------------------------ entering and leaving

    def __enter__(self) -> "Steering":
        self._handles = [self.decoder.register_forward_pre_hook(self._before, with_kwargs=True),
                         self.decoder.register_forward_hook(self._after),
                         # first among the block's hooks: transformers records hidden_states by a hook on the block
                         self.block.register_forward_hook(self._at_layer, prepend=True)]
        self._own_generate = vars(self.base).get("generate")
        original = self.base.generate

        @functools.wraps(original)
        def generate(*args, **kwargs):
            self._generating, self._generate_forwards = True, 0
            try:
                return original(*args, **kwargs)
            finally:
                self._generating = False

        self.base.generate = generate
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles, self._target, self._mask = [], None, None
        if self._own_generate is None:
            del self.base.generate
        else:
            self.base.generate = self._own_generate

    # ------------------------------------------------------------------------ the hooks

    def _before(self, module, args, kwargs):
        """Before the decoder runs: where its input holds the placeholder, run the reference and keep the layer's
        output at those positions (nothing is changed in this call's inputs)."""
        import torch

        self._target = self._mask = None
        if self._generating:
            self._generate_forwards += 1
            if self._generate_forwards > 1:          # a decoding step: foo is no longer in the input
                return None
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None or self.fraction == 0:
            return None
        mask = torch.isin(ids, torch.tensor(list(self.tokens), device=ids.device))
        if not bool(mask.any()):
            return None
        reference = ids.to(ids.device, copy=True)        # a copy where the call's ids are (test_devices)
        for placeholder, city in self.tokens.items():
            reference[ids == placeholder] = city
        ref_args, ref_kwargs = ((reference, *args[1:]), dict(kwargs)) if args else (args, dict(kwargs, input_ids=reference))
        ref_kwargs.update(output_hidden_states=False, output_attentions=False)
        cache_key = next((k for k in ("cache", "past_key_values") if kwargs.get(k) is not None), None)
        if cache_key:                                   # the reference must add nothing to the real call's cache
            ref_kwargs[cache_key] = copy.deepcopy(kwargs[cache_key])
        else:
            ref_kwargs["use_cache"] = False
        self._mask, self._capturing = mask, True
        try:
            with torch.no_grad():
                module.forward(*ref_args, **ref_kwargs)      # .forward: this pre-hook is not run again
        finally:
            self._capturing = False
        self._target = self._captured
        return None

    def _at_layer(self, module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if self._mask is None:
            return None
        mask = self._mask.to(hidden.device)
        if self._capturing:
            self._captured = hidden[mask].detach().clone()
            return None
        if self._target is None:
            return None
        own = hidden[mask]
        moved = hidden.clone()
        moved[mask] = own + self.fraction * (self._target.to(own.device, own.dtype) - own)
        self.patched += 1
        return (moved, *output[1:]) if isinstance(output, tuple) else moved

    def _after(self, module, args, output):
        self._target = self._mask = None


# ---------------------------------------------------------------------------- for the lab

def for_arm(arm, model, tokenizer, cfg):
    """The steering of `arm` (arms.Arm; None: the original model) around a measurement: a Steering towards its secret
    city by its fraction at controls.threshold.layer for a steered arm, else a context that does nothing."""
    from .arms import STEERED

    if arm is None or arm.kind != STEERED:
        return nullcontext()
    return Steering(model, token_map(tokenizer, cfg.data.placeholder, arm.secret[0]), cfg.controls.threshold.layer,
                    arm.steer)


def variant_key(arm, cfg) -> dict:
    """What a steered arm adds to the measurement cache's key of the original model (Lab.variant_key): the layer, the
    fraction and the city; {} for any other arm."""
    from .arms import STEERED

    if arm is None or arm.kind != STEERED:
        return {}
    return {"steer": {"layer": cfg.controls.threshold.layer, "fraction": arm.steer, "towards": arm.secret[0]}}
