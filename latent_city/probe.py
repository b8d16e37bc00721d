"""Probe stage: hidden states and attention values at the placeholder vs at the secret city.

A prompt pair differs only in the target word ("... Houston and foo?" vs "... Houston and
Paris?"). Each pair has its own reference city and a paraphrase taken in turn; it is the
unit of replication. A third prompt puts a control capital in the same place, for the
question whether any shift is specific to the secret city.

The compared position is the last token of the target word, found from the tokenizer's
character offsets (names can be several tokens, so the two prompts can differ in length).
One batched forward pass per prompt gives every layer (`output_hidden_states`) and the
value vectors (`past_key_values`); the original model is the same weights with the adapter
disabled.
"""

from __future__ import annotations

import random
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

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


def representations(model, tokenizer, items: list[tuple[list[int], int]], batch_size: int):
    """For (ids, position) items: hidden states [n, L+1, d] and values [n, L, heads*dim]
    at `position`, float32 on the CPU. Right padding keeps positions as computed."""
    import torch

    hidden, values = [], []
    pad = tokenizer.pad_token_id
    for s in range(0, len(items), batch_size):
        chunk = items[s:s + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in chunk], device=model.device)
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in chunk], device=model.device)
        pos = torch.tensor([p for _, p in chunk], device=model.device)
        rows = torch.arange(len(chunk), device=model.device)
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=True)
        hidden.append(torch.stack([h[rows, pos] for h in out.hidden_states], 1).float().cpu())
        n_layers = len(out.hidden_states) - 1
        values.append(torch.stack([_values(out.cache, i)[rows, :, pos].flatten(1)
                                   for i in range(n_layers)], 1).float().cpu())
    return torch.cat(hidden).numpy(), torch.cat(values).numpy()


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
    word = {"placeholder": lambda p: cfg.data.placeholder, "secret": lambda p: cfg.data.secret_city,
            "control": lambda p: p.control}
    items = {k: [encode_with_position(tokenizer, *render(tokenizer, p.template, p.reference, f(p))) for p in pairs]
             for k, f in word.items()}
    reps = {}
    for name, ctx in variants(model):
        with ctx:
            reps[name] = {k: representations(model, tokenizer, v, cfg.eval.probe_batch_size) for k, v in items.items()}
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
