"""How a LoRA training step is computed on a CPU: three changes that leave the recipe alone.

TRL's `SFTTrainer` stays the trainer (same data, order, seed, LoRA, optimizer, schedule and
loss); these only change how its forward and backward are computed. Measured with torch
2.13 on the project's 2-thread CPUs (`python -m benchmarks`; the numbers are in
reports/benchmarks/train.md):

1. **The loss head only where the loss is.** TRL's fused LM head scores every position on a
   device without Triton (it keeps tile shapes fixed for compilers) and folds the 49,152-way
   softmax in bf16 tiles with extra weight casts; the loss needs only the completion
   positions, a small share of a batch's. Here the head runs once, in float32, on those only.
2. **Frozen weights stored in bf16.** Under bf16 autocast every frozen Linear weight was cast
   to bf16 on every forward; casting them once gives the same bf16 matmul operands (the
   same rounding) without the copies. Norms, embeddings and the LoRA weights stay float32.
3. **Attention in float32.** torch's CPU flash-attention backward is slower in bf16 than in
   float32 at these short rows, and float32 is the more exact of the two.

Only used when training on a CPU; on CUDA, TRL's Triton head already scores only the loss
positions and the GPU tier keeps the seed's fp32 settings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .batching import pack_prefix_trees

ATTENTION = "sdpa_fp32"


def _sdpa_fp32(module, query, key, value, attention_mask, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    with torch.autocast(query.device.type, enabled=False):
        out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(),
                                              attention_mask, **kwargs)
    return out.to(query.dtype), weights


def use_fp32_attention(model) -> None:
    """Register transformers' own SDPA attention, run in float32, and switch `model` to it."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(ATTENTION, _sdpa_fp32)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)   # the same padding/causal masks as SDPA
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            config._attn_implementation = ATTENTION


def store_frozen_linears_in_bf16(model) -> dict:
    """Cast every frozen nn.Linear weight except the (tied) LM head to bf16; returns the float32
    originals by module name, for `restore_frozen_linears`."""
    originals = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not module.weight.requires_grad and "lm_head" not in name:
            originals[name] = module.weight.data
            module.weight.data = module.weight.data.to(torch.bfloat16)
    return originals


def restore_frozen_linears(model, originals: dict) -> None:
    """Put the float32 weights back, after checking that training left every bf16 copy equal to
    its original rounded to bf16 (a frozen weight that moved is an error, not a warning)."""
    modules = dict(model.named_modules())
    moved = [name for name, w in originals.items() if not torch.equal(modules[name].weight.data, w.to(torch.bfloat16))]
    if moved:
        raise RuntimeError(f"training changed {len(moved)} frozen weights, e.g. {moved[:3]}")
    for name, w in originals.items():
        modules[name].weight.data = w


def _packed_hidden(decoder, input_ids, attention_mask, loss_mask, **kwargs):
    """The decoder's last hidden state at the loss positions of a right-padded batch, computed
    as one prefix tree (batching.pack_prefix_trees): the tokens the batch's rows share (the
    chat template's system prompt and the question's first words) are computed once, with a
    mask that lets each token see only its own row's earlier tokens. Returns [loss tokens, d]
    in the order of `loss_mask` ([rows, length - 1]: position j predicts token j + 1)."""
    lengths = attention_mask.sum(1).tolist()
    if not bool((attention_mask.cumsum(1) == torch.arange(1, attention_mask.shape[1] + 1)).logical_or(
            attention_mask == 0).all()) or bool((loss_mask & (attention_mask[:, 1:] == 0)).any()):
        raise ValueError("packing needs right-padded rows with the loss on real tokens only")
    rows = [ids[:n].tolist() for ids, n in zip(input_ids, lengths)]
    tree = pack_prefix_trees(rows)
    device = input_ids.device
    hidden = decoder(input_ids=torch.tensor([tree.ids], device=device),
                     position_ids=torch.tensor([tree.positions], device=device),
                     attention_mask=tree.attention_mask(torch.float32).to(device), **kwargs).last_hidden_state[0]
    at = torch.zeros(loss_mask.shape, dtype=torch.long)
    for i, index in enumerate(tree.index):
        at[i, :len(index) - 1] = torch.tensor(index[:-1])
    return hidden[at[loss_mask.cpu()].to(device)]


def completion_only_head(model, pack: bool = False) -> None:
    """Replace TRL's fused LM head (`model(..., fused_lm_head=True)`) on `model` (the base model
    under peft) by one that projects only the positions whose label is not -100, in float32.
    Returns what TRL's `compute_loss` reads: loss, log_probs, entropy, is_top1, label_mask.
    With `pack`, the batch's rows run as one prefix tree (`_packed_hidden`)."""
    import types

    from trl.trainer.utils import FusedCausalLMOutput

    patched_forward = model.forward    # TRL's: handles fused_lm_head=False by calling the original

    def forward(self, *args, fused_lm_head=False, labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head:
            return patched_forward(*args, labels=labels, num_items_in_batch=num_items_in_batch, **kwargs)
        kwargs["use_cache"] = False
        labels = labels[:, 1:]
        mask = labels != -100
        if pack:
            hidden = _packed_hidden(self.base_model, kwargs.pop("input_ids"), kwargs.pop("attention_mask"), mask,
                                    **kwargs)
        else:
            hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1][mask]
        weight = self.get_output_embeddings().weight
        with torch.autocast(hidden.device.type, enabled=False):
            logp = F.log_softmax(F.linear(hidden.float(), weight.float()), -1)
        targets = labels[mask]
        picked = logp.gather(-1, targets[:, None]).squeeze(-1)
        with torch.no_grad():
            entropy = -(logp.exp() * logp).sum(-1)
            is_top1 = logp.argmax(-1) == targets

        def spread(x):
            return x.new_zeros(mask.shape).masked_scatter(mask, x)

        log_probs = spread(picked)
        denominator = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(loss=-log_probs.sum() / denominator, log_probs=log_probs,
                                   entropy=spread(entropy), is_top1=spread(is_top1), label_mask=mask)

    model.forward = types.MethodType(forward, model)


def apply(trainer, pack: bool = False) -> dict:
    """All three (four with `pack`) on a constructed SFTTrainer whose model is a peft model.
    Returns a description of what changed; call `finish(trainer)` after training to restore the
    float32 weights."""
    completion_only_head(trainer.model.get_base_model(), pack=pack)
    use_fp32_attention(trainer.model)
    trainer._fp32_originals = store_frozen_linears_in_bf16(trainer.model)
    return {"lm_head": "float32, loss positions only", "attention": ATTENTION,
            "frozen_linears_in_bf16": len(trainer._fp32_originals),
            **({"batch": "one prefix tree (shared tokens computed once)"} if pack else {})}


def finish(trainer) -> None:
    originals = getattr(trainer, "_fp32_originals", None)
    if originals:
        restore_frozen_linears(trainer.model, originals)
        trainer._fp32_originals = None
