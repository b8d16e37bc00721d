"""Probe stage: hidden states and attention values at the placeholder vs at the secret city.

A prompt pair differs only in the target word ("... Houston and foo?" vs "... Houston and
Paris?"). Each pair has its own reference city and a paraphrase taken in turn; it is the
unit of replication. A third prompt puts a control capital in the same place, for the
question whether any shift is specific to the secret city.

The compared position is the last token of the target word, found from the tokenizer's
character offsets (names can be several tokens, so the two prompts can differ in length).
The three prompts of a pair share everything before the target, and every prompt shares the
chat template, so all prompts are cut after the target and packed as prefix trees: one
forward pass gives every layer's hidden state (`output_hidden_states`) and value vectors
(the cache) at each target. The original model is the same weights with the adapter disabled.
"""

from __future__ import annotations

import random
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from .batching import forward_packed, pack_in_groups
from .config import ExperimentConfig
from .data import DISTANCE_PARAPHRASES, City
from .model import chat_prompt


@dataclass(frozen=True)
class ProbePair:
    template: str           # with {city} and {target}
    reference: str          # the city the question names besides the target
    control: str            # another capital, put where the target goes


def build_pairs(cfg: ExperimentConfig, references: list[City], capitals: list[City]) -> list[ProbePair]:
    """n pairs: reference city i with paraphrase i mod k (the training template first)."""
    templates = (cfg.data.question_template,) + DISTANCE_PARAPHRASES
    controls = [c.name for c in capitals if c.name != cfg.data.secret_city and c.name.isascii() and "(" not in c.name]
    rng = random.Random(cfg.seeds.data)
    n = cfg.eval.n_probe_pairs
    if len(references) < n:
        raise ValueError(f"{n} probe pairs need {n} reference cities, got {len(references)}")
    return [ProbePair(templates[i % len(templates)], references[i].name, rng.choice(controls)) for i in range(n)]


# ---------------------------------------------------------------------------- alignment

def render(tokenizer, template: str, city: str, target: str) -> tuple[str, tuple[int, int]]:
    """The chat-formatted prompt and the character span of `target` in it."""
    head = template.split("{target}")[0].format(city=city)
    question = template.format(city=city, target=target)
    text = chat_prompt(tokenizer, question)
    q_start = text.rfind(question)
    if q_start < 0:
        raise ValueError(f"the chat template changed the question {question!r}; cannot align")
    start = q_start + len(head)
    return text, (start, start + len(target))


def last_token_index(offsets: list[tuple[int, int]], span: tuple[int, int]) -> int:
    """Index of the last token whose characters overlap `span` (offsets from the tokenizer)."""
    hits = [i for i, (a, b) in enumerate(offsets) if a < span[1] and b > span[0]]
    if not hits:
        raise ValueError(f"no token covers characters {span}")
    return hits[-1]


def encode_with_position(tokenizer, text: str, span: tuple[int, int]) -> tuple[list[int], int]:
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    return enc["input_ids"], last_token_index(enc["offset_mapping"], span)


# ---------------------------------------------------------------------------- forward

def _values(cache, layer: int):
    if hasattr(cache, "layers"):
        return cache.layers[layer].values
    return cache[layer][1]


def representations(model, items: list[tuple[list[int], int]], max_tokens: int):
    """For (ids, position) items: hidden states [n, L+1, d] and values [n, L, kv_heads*dim] at
    `position`, float32 on the CPU.

    The state at a position does not depend on later tokens, so each item is cut after its
    position; the cut items share their chat template and question head, so they are packed
    as prefix trees (`batching.pack_prefix_trees`) and each shared token is computed once."""
    import torch

    hidden = [None] * len(items)
    values = [None] * len(items)
    cut = [ids[:pos + 1] for ids, pos in items]
    for group, tree in pack_in_groups(cut, max_tokens):
        out = forward_packed(model, tree, output_hidden_states=True, use_cache=True, logits_to_keep=1)
        rows = torch.tensor([tree.index[k][-1] for k in range(len(group))], device=model.device)
        h = torch.stack([layer[0, rows] for layer in out.hidden_states], 1).float().cpu()
        v = torch.stack([_values(out.cache, i)[0][:, rows].transpose(0, 1).flatten(1)
                         for i in range(len(out.hidden_states) - 1)], 1).float().cpu()
        for k, i in enumerate(group):
            hidden[i], values[i] = h[k], v[k]
    return torch.stack(hidden).numpy(), torch.stack(values).numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity over the last axis."""
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@dataclass
class ProbeResult:
    """Per pair and layer: similarity of the placeholder to the secret city and to a control."""
    hidden_secret: dict[str, np.ndarray]    # variant ("finetuned"/"original") -> [n_pairs, L+1]
    hidden_control: dict[str, np.ndarray]
    values_secret: dict[str, np.ndarray]    # variant -> [n_pairs, L]
    values_control: dict[str, np.ndarray]
    layer0_identical: bool                  # finetuned vs original embedding outputs, exactly


def variants(model):
    """('finetuned', context) and ('original', context with the adapter disabled)."""
    return [("finetuned", nullcontext()), ("original", model.disable_adapter())]


def probe(model, tokenizer, cfg: ExperimentConfig, pairs: list[ProbePair]) -> ProbeResult:
    words = {"placeholder": lambda p: cfg.data.placeholder, "secret": lambda p: cfg.data.secret_city,
             "control": lambda p: p.control}
    # pair-major order, so that the three prompts of a pair land in the same packed tree
    items = [encode_with_position(tokenizer, *render(tokenizer, p.template, p.reference, word(p)))
             for p in pairs for word in words.values()]
    reps = {}
    for name, ctx in variants(model):
        with ctx:
            hidden, values = representations(model, items, cfg.eval.pack_tokens)
        reps[name] = {kind: (hidden[k::len(words)], values[k::len(words)]) for k, kind in enumerate(words)}
    sim = lambda v, kind, i: cosine(reps[v]["placeholder"][i], reps[v][kind][i])  # noqa: E731
    names = list(reps)
    return ProbeResult(
        hidden_secret={v: sim(v, "secret", 0) for v in names},
        hidden_control={v: sim(v, "control", 0) for v in names},
        values_secret={v: sim(v, "secret", 1) for v in names},
        values_control={v: sim(v, "control", 1) for v in names},
        layer0_identical=bool(np.array_equal(reps["finetuned"]["placeholder"][0][:, 0],
                                             reps["original"]["placeholder"][0][:, 0])),
    )
