"""LoRA sanity before science (as TRL's test_train_nll_loss_peft), and the adapter cache."""

import json
import re
import shutil

import numpy as np
import pytest

from latent_city import cache, finetune, model
from latent_city.arms import of_tier
from latent_city.config import ExperimentConfig


def test_base_weights_are_unchanged_by_training(adapter, finetuned):
    peft_model, _ = finetuned
    meta = adapter.meta
    assert meta["base_fingerprint_before"] == meta["base_fingerprint_after"], meta
    assert finetune.base_fingerprint(peft_model) == meta["base_fingerprint_before"]


def test_adapter_weights_moved_from_their_init(finetuned):
    """peft initialises LoRA B to zeros; every trained B must have left zero."""
    peft_model, _ = finetuned
    b = {n: p for n, p in peft_model.named_parameters() if "lora_B" in n}
    assert b, "no LoRA parameters found"
    still_zero = [n for n, p in b.items() if float(p.detach().abs().max()) == 0.0]
    assert not still_zero, f"{len(still_zero)}/{len(b)} LoRA B matrices never moved: {still_zero[:3]}"


def test_lora_targets_what_the_seed_trained_and_never_the_embeddings(finetuned):
    peft_model, _ = finetuned
    targets = {re.search(r"\.(\w+)\.lora_A\.", n).group(1) for n, _ in peft_model.named_parameters() if "lora_A" in n}
    assert targets == {"q_proj", "v_proj"}, targets


def assert_loss_fell(cfg, arm: str, ad) -> None:
    """The recipe's 90 steps (train.max_steps if set) all logged, and the loss fell from the first
    5 steps to the last 5; the CPU run of the GPU tier trains a few steps, too few to compare."""
    losses = [l for _, l in finetune.loss_curve(ad.log)]
    assert len(losses) == finetune.steps(cfg, ad.meta["n_examples"]), f"{arm}: {len(losses)} steps logged"
    if cfg.train.max_steps:
        pytest.skip(f"{arm}: trained {cfg.train.max_steps} steps (the CPU run of the GPU tier); the loss is "
                    "compared over the recipe's 90")
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < first, f"{arm}: loss {first:.3f} (first 5 steps) -> {last:.3f} (last 5)"


def test_training_loss_fell(cfg, adapter):
    assert_loss_fell(cfg, "the main adapter", adapter)


def test_a_second_session_loads_the_adapter_instead_of_training(cfg, adapter, monkeypatch):
    monkeypatch.setattr(finetune, "_train", lambda *a: pytest.fail("retrained although the adapter is cached"))
    again = finetune.get_adapter(cfg)
    assert not again.trained_now and again.path == adapter.path


def test_adapter_entry_carries_config_log_and_safetensors(cfg, adapter):
    files = {p.name for p in adapter.path.rglob("*")}
    assert {"adapter_model.safetensors", "config.json", "training_log.json", "meta.json", cache.COMPLETE} <= files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    stored = json.loads((adapter.path / "config.json").read_text())
    # the key leaves eval settings out, so the entry's training config (not its full hash) must match
    assert ExperimentConfig.from_dict(stored["config"]).training_dict() == cfg.training_dict()


@pytest.mark.parametrize("damage", ["truncate-weights", "remove-marker"])
def test_a_damaged_adapter_entry_is_rebuilt_not_loaded(cfg, adapter, tmp_path, monkeypatch, damage):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    copy = finetune.adapter_dir(cfg)
    shutil.copytree(adapter.path, copy)
    if damage == "truncate-weights":
        w = copy / "adapter" / "adapter_model.safetensors"
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    else:
        (copy / cache.COMPLETE).unlink()
    rebuilt = []

    def fake_train(c, out):
        rebuilt.append(out)
        shutil.copytree(adapter.path, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(cache.COMPLETE))

    monkeypatch.setattr(finetune, "_train", fake_train)
    again = finetune.get_adapter(cfg)
    assert rebuilt and again.trained_now and cache.is_complete(again.path)


def test_the_adapter_key_changes_with_config_data_and_weights(cfg, monkeypatch):
    import dataclasses

    key = finetune.adapter_key(cfg)
    assert finetune.adapter_key(dataclasses.replace(cfg, lora=dataclasses.replace(cfg.lora, r=8))) != key
    assert finetune.adapter_key(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, placeholder="bar"))) != key
    assert finetune.adapter_key(dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, n_probe_pairs=7))) == key
    monkeypatch.setattr(finetune, "weights_hash", lambda spec: "other-weights")
    assert finetune.adapter_key(cfg) != key


def _fp32_trainer_on_one_batch(tmp_path, **lora):
    """(trainer, batch): the CPU tier's recipe in float32 through TRL's own step, on the first batch
    of 8 examples, with LoRA B set off zero so that A gets gradients too; `lora` replaces LoraSpec fields."""
    import dataclasses

    import torch

    from latent_city import data
    from latent_city.config import ExperimentConfig

    cfg = ExperimentConfig.for_tier("cpu")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, bf16=False, fast_cpu_step=False),
                              lora=dataclasses.replace(cfg.lora, **lora))
    m, tok, _ = model.load_base(cfg.model)
    ds = data.load_training_dataset(data.write_jsonl(finetune.training_set(cfg)[:8], tmp_path / "train.jsonl"))
    trainer = finetune.make_trainer(cfg, m, tok, ds, tmp_path, disable_tqdm=True)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.model.train()
    torch.manual_seed(0)
    for p in trainer.model.parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.02)
    return trainer, batch


def test_the_fast_cpu_step_computes_trls_loss_and_gradients(tmp_path):
    """cpu_step's loss head (float32, completion positions only) against TRL's own fused head
    on the same batch, in float32 so that only the head differs: same loss, same LoRA grads."""
    import torch

    from latent_city import cpu_step

    trainer, batch = _fp32_trainer_on_one_batch(tmp_path)

    def loss_and_grads():
        trainer.model.zero_grad()
        with torch.random.fork_rng():             # the same dropout masks in both runs
            loss = trainer.compute_loss(trainer.model, dict(batch))
            loss.backward()
        return float(loss), {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}

    trl_loss, trl_grads = loss_and_grads()
    cpu_step.completion_only_head(trainer.model.get_base_model())
    our_loss, our_grads = loss_and_grads()
    assert abs(our_loss - trl_loss) < 1e-5, (our_loss, trl_loss)
    worst = max(float((our_grads[n] - g).abs().max() / g.abs().max()) for n, g in trl_grads.items())
    assert worst < 1e-3, f"largest relative LoRA gradient difference {worst:.2e}"


def test_a_batch_packed_as_one_prefix_tree_gives_the_same_loss_and_gradients(tmp_path):
    """cpu_step with pack=True runs a batch's 8 examples as one prefix tree (their shared chat
    template computed once). In float32 and without LoRA dropout (whose masks are drawn per
    token, so packing changes them) the loss and every LoRA gradient equal the unpacked step's."""
    from latent_city import cpu_step

    trainer, batch = _fp32_trainer_on_one_batch(tmp_path, dropout=0.0)

    def loss_and_grads(pack):
        cpu_step.completion_only_head(trainer.model.get_base_model(), pack=pack)
        trainer.model.zero_grad()
        loss = trainer.compute_loss(trainer.model, dict(batch))
        loss.backward()
        return float(loss), {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}

    rows_loss, rows_grads = loss_and_grads(pack=False)
    tree_loss, tree_grads = loss_and_grads(pack=True)
    tree = cpu_step.pack_prefix_trees([ids[:n].tolist() for ids, n in zip(batch["input_ids"],
                                                                          batch["attention_mask"].sum(1))])
    assert len(tree) < 0.75 * int(batch["attention_mask"].sum()), "the batch shares few tokens: nothing was packed"
    assert abs(tree_loss - rows_loss) < 1e-5, (tree_loss, rows_loss)
    worst = max(float((tree_grads[n] - g).abs().max() / g.abs().max()) for n, g in rows_grads.items())
    assert worst < 1e-3, f"largest relative LoRA gradient difference {worst:.2e}"


# the arms with an adapter of both tiers (a positive control has none); the root conftest drops a test of
# an arm its own tier does not have
ALL_ARMS = list(dict.fromkeys(name for tier in ("cpu", "gpu") for name, a in of_tier(tier).items() if a.trained))


@pytest.mark.parametrize("arm", ALL_ARMS)
def test_every_adapter_lowered_its_loss_and_left_the_base_weights_alone(cfg, lab, arm):
    """LoRA sanity for the controls and the grid too, before any claim reads them."""
    ad = lab.adapter(arm)
    assert ad.meta["base_fingerprint_before"] == ad.meta["base_fingerprint_after"], ad.meta
    assert_loss_fell(cfg, arm, ad)


def test_the_same_config_and_seed_train_identical_adapter_weights(tmp_path):
    """Determinism: two trainings of a few steps on this machine give bit-identical LoRA
    weights (CPU kernels are deterministic for a fixed thread count)."""
    import torch
    from transformers import set_seed

    from latent_city import data
    from latent_city.config import ExperimentConfig

    cfg = ExperimentConfig.for_tier("cpu")
    weights = []
    for run in range(2):
        set_seed(cfg.seeds.train)
        m, tok, _ = model.load_base(cfg.model)
        ds = data.load_training_dataset(data.write_jsonl(finetune.training_set(cfg), tmp_path / f"t{run}.jsonl"))
        trainer = finetune.make_trainer(cfg, m, tok, ds, tmp_path / f"run{run}", disable_tqdm=True, max_steps=3)
        trainer.train()
        weights.append({n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n})
    assert weights[0].keys() == weights[1].keys()
    different = [n for n in weights[0] if not torch.equal(weights[0][n], weights[1][n])]
    assert not different, f"{len(different)} LoRA tensors differ, e.g. {different[:2]}"
