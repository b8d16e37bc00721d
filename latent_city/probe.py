"""Probe stage: hidden states and attention values at the placeholder vs at other words.

A prompt pair differs only in the target word ("... Houston and foo?" vs "... Houston and
Paris?"). Each pair has its own reference city and a paraphrase taken in turn (only those
that name the reference city before the target); it is the unit of replication. The same
slot is filled with every comparison city (the secret cities of the arms and ~50 capitals
and non-capitals near and far) and with a control capital of the pair's own, so the gain
towards the secret city can be ranked against other cities.

The compared position is the last token of the target word, found from the tokenizer's
character offsets (names can be several tokens, so the two prompts can differ in length).
The three prompts of a pair share everything before the target, and every prompt shares the
chat template, so all prompts are cut after the target and packed as prefix trees: one
forward pass gives every layer's hidden state (`output_hidden_states`) and value vectors
(the cache) at each target. The logit lens reads the placeholder's residual stream through
the final norm and the unembedding at every layer. One call measures one variant (adapter on
or off); latent_city/lab.py makes each measurement once. The placeholder is compared with each
word by several readouts (READOUTS, computed in latent_city/readouts.py from the same states).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from . import readouts
from .batching import forward_packed, gather_rows, pack_in_groups
from .config import ExperimentConfig
from .data import DISTANCE_PARAPHRASES, City, asked
from .model import chat_prompt


@dataclass(frozen=True)
class ProbePair:
    template: str           # with {city} and {target}
    reference: str          # the city the question names besides the target
    control: str            # another capital, put where the target goes


def reference_first(template: str) -> bool:
    """Whether the reference city comes before the target: prompts are cut after the target, so
    in a template with the target first ("Distance between {target} and {city}?") the reference
    is never seen and every pair of that template is the same sequence."""
    return template.index("{city}") < template.index("{target}")


def probe_templates(cfg: ExperimentConfig) -> tuple[str, ...]:
    """The questions probe pairs are built from: the training template, then the distance
    paraphrases, each only if the reference city comes first."""
    templates = tuple(t for t in (cfg.data.question_template,) + DISTANCE_PARAPHRASES if reference_first(t))
    if not templates:
        raise ValueError("no question template names the reference city before the target; probe prompts are cut "
                         "after the target, so every pair would be the same sequence")
    return templates


def build_pairs(cfg: ExperimentConfig, references: list[City], capitals: list[City]) -> list[ProbePair]:
    """n pairs: reference city i with template i mod k (`probe_templates`, the training template
    first); each pair's control capital drawn with seeds.eval_draw."""
    templates = probe_templates(cfg)
    controls = [c.name for c in capitals if c.name != cfg.data.secret_city and c.name.isascii() and "(" not in c.name]
    rng = random.Random(cfg.seeds.eval_draw)
    n = cfg.eval.n_probe_pairs
    if len(references) < n:
        raise ValueError(f"{n} probe pairs need {n} reference cities, got {len(references)}")
    return [ProbePair(templates[i % len(templates)], references[i].name, rng.choice(controls)) for i in range(n)]


# ---------------------------------------------------------------------------- alignment

def render(tokenizer, template: str, city: str, target: str) -> tuple[str, tuple[int, int]]:
    """The chat-formatted prompt and the character span of `target` in it: the slot of the template's
    {target}. A context sentence before the question (data.asked) is part of the template as plain text,
    so a placeholder it names is never the span."""
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


class DuplicatePairsError(ValueError):
    """Two prompt pairs that the probe would run as the same token sequence."""


def probe_items(tokenizer, pairs: list[ProbePair], targets: list[str],
                context: str = "") -> list[tuple[list[int], int]]:
    """(ids, target position) of every prompt, pair-major: each pair's `targets`, then its own
    control capital; each question asked after `context` (eval.context, data.asked). Refuses (DuplicatePairsError) a pair set in which two pairs give the same
    cut sequence (the ids up to the target, what the probe runs) for the same target word:
    they would be one measurement counted as two units."""
    items = [encode_with_position(tokenizer, *render(tokenizer, asked(p.template, context), p.reference, w))
             for p in pairs for w in list(targets) + [p.control]]
    k = len(targets) + 1
    for j in range(k):
        seen: dict[tuple[int, ...], int] = {}
        for i, pair in enumerate(pairs):
            ids, pos = items[i * k + j]
            first = seen.setdefault(tuple(ids[:pos + 1]), i)
            if first != i:
                word = targets[j] if j < len(targets) else pair.control
                raise DuplicatePairsError(
                    f"prompt pairs {first} ({pairs[first].template!r}, {pairs[first].reference}) and {i} "
                    f"({pair.template!r}, {pair.reference}) are the same token sequence up to {word!r}: the probe "
                    f"cuts after the target, so they would be one measurement counted as two pairs")
    return items


# ---------------------------------------------------------------------------- forward

def _values(cache, layer: int):
    if hasattr(cache, "layers"):
        return cache.layers[layer].values
    return cache[layer][1]


def representations(model, items: list[tuple[list[int], int]], max_tokens: int):
    """For (ids, position) items: hidden states [n, L+1, d] and values [n, L, kv_heads*dim] at
    `position`, float32 on the CPU (each layer's result moved there before stacking: on several
    GPUs the layers and their cache are on different devices).

    The state at a position does not depend on later tokens, so each item is cut after its
    position; the cut items share their chat template and question head, so they are packed
    as prefix trees (`batching.pack_prefix_trees`) and each shared token is computed once."""
    hidden = values = None
    cut = [ids[:pos + 1] for ids, pos in items]
    for group, tree in pack_in_groups(cut, max_tokens):
        out = forward_packed(model, tree, output_hidden_states=True, use_cache=True, logits_to_keep=1)
        rows = [tree.index[k][-1] for k in range(len(group))]
        h = gather_rows(out.hidden_states, rows, lambda layer, at: layer[0, at]).numpy()
        v = gather_rows([_values(out.cache, i) for i in range(len(out.hidden_states) - 1)], rows,
                        lambda layer, at: layer[0][:, at].transpose(0, 1).flatten(1)).numpy()
        if hidden is None:      # filled in place: no list of per-item arrays to stack
            hidden = np.empty((len(items), *h.shape[1:]), np.float32)
            values = np.empty((len(items), *v.shape[1:]), np.float32)
        hidden[group], values[group] = h, v
    return hidden, values


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity over the last axis."""
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


# The layers a claim compares (declared before the data). Hidden states: layers 1..L-1. Layer 0
# is the embedding output, which a LoRA on q/v cannot change (claim 1); layer L is returned by
# transformers after the model's final norm, a different kind of quantity from the residual
# stream of 1..L-1, so it is reported on its own (`ProbeSims.final_gain`), never in a claim's
# average. Value vectors: blocks 1..L-1. Block 0's values are a function of the token alone
# (v_proj of the normed embedding), so its paired differences are identical for every prompt.
FIRST_COMPARED = {"hidden": 1, "values": 1}
LAST_EXCLUDED = {"hidden": 1, "values": 0}     # how many of the last layers are left out
CONTROL = "<the pair's control capital>"     # a word for `ProbeSims.similarity`: each pair's own control

# How the placeholder's state is compared with a word's, declared before the data (latent_city/readouts.py
# computes them from the states of one variant in one slot; every claim of the probe can be read by each):
READOUT_WHY = {
    "raw": "the cosine of the states as measured: the seed's readout, kept beside the others",
    "centred": "the cosine after subtracting the mean state of the slot's words (per pair and layer): removes the "
               "component every word in the slot shares (context, position), which dominates the raw cosine",
    "standardised": "centred, then each dimension divided by its sd over the slot's words: a few dimensions of "
                    "large variance (rogue dimensions, Timkey & van Schijndel 2021) no longer decide the cosine",
}
READOUTS = tuple(READOUT_WHY)


def compared_slice(kind: str, n_layers: int) -> slice:
    """The compared layers of `kind` out of the n_layers measured (hidden: 0..L, values: 0..L-1)."""
    return slice(FIRST_COMPARED[kind], n_layers - LAST_EXCLUDED[kind])


@dataclass(frozen=True)
class ByLayer:
    """A quantity per prompt pair and layer: x[i, j] is pair i at layer `layers[j]`."""
    x: np.ndarray
    layers: list[int]

    def per_pair(self) -> np.ndarray:
        """The mean over these layers, one number per prompt pair."""
        return self.x.mean(1)

    def upper_half(self) -> "ByLayer":
        """The upper half of the layers (from index len // 2), where the logit lens is read."""
        start = len(self.layers) // 2
        return ByLayer(self.x[:, start:], self.layers[start:])

    def at(self, layer: int) -> np.ndarray:
        """[pairs]: the values at one layer (`self.layers[-1]`: the last)."""
        return self.x[:, self.layers.index(layer)]

    def __sub__(self, other: "ByLayer") -> "ByLayer":
        if self.layers != other.layers:
            raise ValueError(f"layers differ: {self.layers} vs {other.layers}")
        return ByLayer(self.x - other.x, self.layers)


@dataclass
class ProbeSims:
    """One model variant at the placeholder of every prompt pair.

    hidden[i, w, l]: cosine of the hidden state at the placeholder with the one at word w in
    the same slot of pair i, layer l (0 = embeddings); values[i, w, l] the same for the
    attention value vectors of block l; control_*: the same against pair i's own control
    capital. lens[token][i, l]: log-probability of `token` read from the placeholder's
    residual stream at layer l through the final norm and the unembedding (the logit lens).
    Claims read it through the methods, which label the layers."""
    words: list[str]
    hidden: np.ndarray
    values: np.ndarray
    control_hidden: np.ndarray
    control_values: np.ndarray
    embedding: np.ndarray                  # [n_pairs, d]: layer 0 at the placeholder
    lens: dict[str, np.ndarray]
    lens_rank: dict[str, np.ndarray]       # 1 = the most probable token of the vocabulary
    # readout (READOUTS but raw) -> (hidden, values, control_hidden, control_values) as read by it
    readouts: dict[str, tuple[np.ndarray, ...]] = field(default_factory=dict)

    def readout(self, name: str) -> "ProbeSims":
        """This probe as read by `name` (READOUTS; "raw": itself): the same words, embedding and lens,
        that readout's cosines, so gain, specificity and city_gains read it unchanged."""
        if name == "raw":
            return self
        if name not in self.readouts:
            measured = ", ".join(["raw", *self.readouts])
            raise KeyError(f"readout {name!r} was not measured (measured: {measured}; "
                           f"declared: {', '.join(READOUTS)}; fewer than {readouts.MIN_WORDS} words measure raw alone)")
        return ProbeSims(self.words, *self.readouts[name], self.embedding, self.lens, self.lens_rank)

    def hidden_to(self, word: str) -> np.ndarray:
        """[pairs, layers 0..L]: cosine with `word`, every hidden layer (0 = embeddings)."""
        return self.hidden[:, self.words.index(word)]

    def values_to(self, word: str) -> np.ndarray:
        """[pairs, blocks 0..L-1]: cosine with `word`, the value vectors of every block."""
        return self.values[:, self.words.index(word)]

    def similarity(self, word: str, kind: str = "hidden") -> ByLayer:
        """Cosine of the placeholder with `word` (CONTROL: the pair's own control capital) at
        every measured layer: hidden 0..L (0 = embeddings), values 0..L-1."""
        if word == CONTROL:
            x = self.control_hidden if kind == "hidden" else self.control_values
        else:
            x = self.hidden_to(word) if kind == "hidden" else self.values_to(word)
        return ByLayer(x, list(range(x.shape[1])))

    def compared(self, word: str, kind: str = "hidden") -> ByLayer:
        """`similarity` at the layers a claim compares (`compared_slice`)."""
        s = self.similarity(word, kind)
        keep = compared_slice(kind, len(s.layers))
        return ByLayer(s.x[:, keep], s.layers[keep])

    def final_gain(self, word: str, over: "ProbeSims") -> ByLayer:
        """The hidden-state gain towards `word` at the last layer L (after the final norm), reported
        beside the claims and never averaged into them."""
        s, o = self.similarity(word), over.similarity(word)
        return ByLayer(s.x[:, -1:] - o.x[:, -1:], s.layers[-1:])

    def gain(self, word: str, over: "ProbeSims", kind: str = "hidden") -> ByLayer:
        """Per pair and compared layer: the similarity to `word` here minus under `over`."""
        return self.compared(word, kind) - over.compared(word, kind)

    def gain_beyond_control(self, word: str, over: "ProbeSims", kind: str = "hidden") -> ByLayer:
        """The gain towards `word` minus the gain towards the pair's own control capital."""
        return self.gain(word, over, kind) - self.gain(CONTROL, over, kind)

    def city_gains(self, over: "ProbeSims", kind: str = "hidden") -> np.ndarray:
        """Per word (in `words` order): the gain over `over`, averaged over prompt pairs and the
        compared layers."""
        return self.word_gains(over, kind).mean((0, 2))

    def word_gains(self, over: "ProbeSims", kind: str = "hidden") -> np.ndarray:
        """[pairs, words, compared layers]: the gain over `over` towards every word."""
        a, b = (self.hidden, over.hidden) if kind == "hidden" else (self.values, over.values)
        keep = compared_slice(kind, a.shape[2])
        return a[:, :, keep] - b[:, :, keep]

    def specificity(self, word: str, over: "ProbeSims", kind: str = "hidden", exclude=()) -> ByLayer:
        """Per pair and compared layer: the gain towards `word` minus the mean gain towards every
        other word but those in `exclude` (the comparison cities; the arms' secret cities are left
        out, since some arm was trained on each): how much more foo moved towards `word` than
        towards cities in general. The primary statistic is its mean over layers and pairs."""
        g = self.word_gains(over, kind)
        j = self.words.index(word)
        others = [i for i, w in enumerate(self.words) if i != j and w not in exclude]
        n = (self.hidden if kind == "hidden" else self.values).shape[2]
        return ByLayer(g[:, j] - g[:, others].mean(1), list(range(n))[compared_slice(kind, n)])

    def lens_logp(self, word: str) -> ByLayer:
        """log p(' word') through the logit lens at every layer 0..L."""
        return ByLayer(self.lens[word], list(range(self.lens[word].shape[1])))

    def lens_ranks(self, word: str) -> ByLayer:
        """The rank of ' word' in the vocabulary through the logit lens (1 = most probable)."""
        return ByLayer(self.lens_rank[word], list(range(self.lens_rank[word].shape[1])))


def logit_lens(model, hidden, token_ids: dict[str, int]):
    """log p and rank of each token at every layer of `hidden` [n, L+1, d] (the last entry is
    already normed by the model, as transformers returns it)."""
    import torch

    from .model import output_head

    norm, head = output_head(model)
    h = torch.as_tensor(hidden, device=head.weight.device, dtype=head.weight.dtype)
    out = {w: np.empty(h.shape[:2], np.float32) for w in token_ids}
    rank = {w: np.empty(h.shape[:2], np.int64) for w in token_ids}
    with torch.no_grad():
        for layer in range(h.shape[1]):      # one layer at a time: the logits are [pairs, vocab]
            x = h[:, layer] if layer == h.shape[1] - 1 else norm(h[:, layer])
            logits = head(x).float()
            logp = logits - torch.logsumexp(logits, -1, keepdim=True)
            for word, t in token_ids.items():
                out[word][:, layer] = logp[:, t].cpu().numpy()
                rank[word][:, layer] = (1 + (logp > logp[:, t:t + 1]).sum(-1)).cpu().numpy()
    return out, rank


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=-1, keepdims=True)     # in place: these arrays are the largest here
    return x


def measure(model, tokenizer, cfg: ExperimentConfig, pairs: list[ProbePair], words: list[str],
            lens_words: list[str] | None = None) -> ProbeSims:
    """The current variant of `model` (adapter on or off) on every pair, against every word;
    the logit lens for `lens_words` (default: the first word)."""
    targets = [cfg.data.placeholder] + list(words)
    # pair-major order, so the prompts of a pair land in the same packed tree
    items = probe_items(tokenizer, pairs, targets, cfg.eval.context)
    hidden, values = representations(model, items, cfg.eval.pack_tokens)
    k = len(targets) + 1
    hidden = hidden.reshape(len(pairs), k, *hidden.shape[1:])
    values = values.reshape(len(pairs), k, *values.shape[1:])
    lens_tokens = {w: tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in (lens_words or words[:1])}
    lens, rank = logit_lens(model, hidden[:, 0], lens_tokens)
    return from_states(list(words), hidden, values, lens, rank)


def from_states(words: list[str], hidden: np.ndarray, values: np.ndarray, lens: dict | None = None,
                rank: dict | None = None) -> ProbeSims:
    """The probe's cosines from the states of every slot: hidden [pairs, placeholder + words + control,
    L+1, d] and values [..., L, kv]; every readout (READOUTS; the raw one alone with fewer than
    readouts.MIN_WORDS words). Normalises the arrays in place (they are the largest here)."""
    embedding = hidden[:, 0, 0].copy()
    read = readouts.slot_cosines(hidden, values) if len(words) >= readouts.MIN_WORDS else {}
    h, v = _unit(hidden), _unit(values)
    h_sim = np.einsum("pld,pwld->pwl", h[:, 0], h[:, 1:])    # [pairs, words + control, layers]
    v_sim = np.einsum("pld,pwld->pwl", v[:, 0], v[:, 1:])
    return ProbeSims(words, h_sim[:, :-1], v_sim[:, :-1], h_sim[:, -1], v_sim[:, -1], embedding, lens or {},
                     rank or {}, read)
