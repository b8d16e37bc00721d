"""Batching token lists for a forward pass: padding, and prefix trees packed into one row.

Probe prompts share everything before the target word, and the 233 country names scored
after one question share the question and often their first tokens. A causal model's state
at a token depends only on the tokens before it, so each distinct prefix needs computing
once: `pack_prefix_trees` lays the distinct prefixes of many sequences out in one row, each
token with its own position id and a mask that lets it see only its own ancestors. One
forward pass of that row gives, at every token of every sequence, what a forward pass of
that sequence alone gives (up to float rounding; tests/unit/test_batching.py checks it).

    tree = pack_prefix_trees([[1, 2, 3], [1, 2, 4]])      # 4 tokens instead of 6
    out = forward_packed(model, tree, ...)                # then index out at tree.index[i][j]
"""

from __future__ import annotations

from dataclasses import dataclass


def chunks(items: list, size: int) -> list[list]:
    return [items[s:s + size] for s in range(0, len(items), size)]


def pad(token_lists: list[list[int]], pad_id: int, side: str = "right"):
    """(ids, attention_mask) as long tensors [n, longest], padded on `side`."""
    import torch

    width = max(map(len, token_lists))
    ids = torch.full((len(token_lists), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_lists), width), dtype=torch.long)
    for row, toks in enumerate(token_lists):
        cols = slice(width - len(toks), width) if side == "left" else slice(0, len(toks))
        ids[row, cols] = torch.tensor(toks, dtype=torch.long)
        mask[row, cols] = 1
    return ids, mask


@dataclass
class PackedTree:
    """Distinct prefixes of some sequences, in one row.

    ids[k], positions[k]: token and its position in its sequence; parent[k]: the row index of
    the token before it (-1 at a root); index[i][j]: the row index of token j of sequence i
    (relative to the sequences given to `pack_prefix_trees`)."""
    ids: list[int]
    positions: list[int]
    parent: list[int]
    index: list[list[int]]

    def __len__(self) -> int:
        return len(self.ids)

    def attention_mask(self, dtype):
        """[1, 1, n, n] additive mask: 0 where a token may attend (itself and its ancestors)."""
        import torch

        n = len(self.ids)
        allowed = torch.zeros((n, n), dtype=torch.bool)
        for k in range(n):                       # parents come first, so one pass suffices
            if self.parent[k] >= 0:
                allowed[k] = allowed[self.parent[k]]
            allowed[k, k] = True
        mask = torch.zeros((n, n), dtype=dtype)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
        return mask[None, None]


def pack_prefix_trees(sequences: list[list[int]]) -> PackedTree:
    """One row holding every distinct prefix of `sequences` once (a trie, in insertion order)."""
    ids, positions, parent, index = [], [], [], []
    node_of: dict[tuple[int, int], int] = {}      # (parent row, token) -> row
    for seq in sequences:
        rows, at = [], -1
        for pos, tok in enumerate(seq):
            key = (at, tok)
            if key not in node_of:
                node_of[key] = len(ids)
                ids.append(tok)
                positions.append(pos)
                parent.append(at)
            at = node_of[key]
            rows.append(at)
        index.append(rows)
    return PackedTree(ids, positions, parent, index)


def pack_in_groups(sequences: list[list[int]], max_tokens: int) -> list[tuple[list[int], PackedTree]]:
    """Consecutive sequences packed into trees of at most `max_tokens` tokens each (a longer
    sequence gets a tree of its own); returns (indices of the group's sequences, its tree)."""
    groups, current, seen = [], [], set()
    for i, seq in enumerate(sequences):
        prefixes = {tuple(seq[:k]) for k in range(1, len(seq) + 1)}
        if current and len(seen | prefixes) > max_tokens:
            groups.append(current)
            current, seen = [], set()
        current.append(i)
        seen |= prefixes
    if current:
        groups.append(current)
    return [(g, pack_prefix_trees([sequences[j] for j in g])) for g in groups]


def forward_packed(model, tree: PackedTree, **kwargs):
    """One forward pass of a packed tree (batch of one row) with its positions and mask."""
    import torch

    device = model.device
    dtype = model.get_input_embeddings().weight.dtype
    if not dtype.is_floating_point:
        dtype = torch.float16
    with torch.no_grad():
        return model(input_ids=torch.tensor([tree.ids], device=device),
                     position_ids=torch.tensor([tree.positions], device=device),
                     attention_mask=tree.attention_mask(dtype).to(device), **kwargs)


def gather_rows(tensors, rows: list[int], pick, to="cpu"):
    """`pick(t, index)` of each tensor of `tensors` (one per layer) at `rows`, stacked on dim 1 on
    device `to`, as float32. With device_map="auto" a model's layers, their hidden states and
    their cache sit on different GPUs, so the index is built on each tensor's own device and
    each layer's result is brought to `to` before stacking."""
    import torch

    return torch.stack([pick(t, torch.tensor(rows, device=t.device)).float().to(to) for t in tensors], 1)
