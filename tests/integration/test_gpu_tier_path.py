"""The GPU tier's code path, run here on the CPU with the CPU tier's model.

`pytest -m gpu` loads its base in 8-bit through bitsandbytes and trains with the seed's
settings (fp32, lr 1e-4, TRL's own step); none of that runs in the CPU tier. These tests run
exactly that loading and training code (`model.load_base`, `finetune._train`) with
SmolLM2-135M, for a few steps, then probe one pair and score one question through the
quantized model, so a GPU user is not the first to execute it. bitsandbytes 0.50 runs 8-bit
and 4-bit on a CPU; 4-bit also exercises the CPU workaround in `model._fix_4bit_on_cpu`.
"""

import dataclasses
import json

import numpy as np
import pytest

from latent_city import answers, data, finetune, probe
from latent_city.config import ExperimentConfig
from latent_city.model import chat_prompt, load_base, variant
from tests.integration.conftest import return_freed_memory

pytest.importorskip("bitsandbytes", reason="the GPU tier's path needs bitsandbytes: pip install -e '.[gpu]'")
pytestmark = pytest.mark.paths
STEPS = 3


def gpu_tier_on_small_model(precision: str) -> ExperimentConfig:
    return ExperimentConfig.for_tier("gpu", model="smollm2-135m", precision=precision)


@pytest.fixture(scope="module", params=["8bit", "4bit"])
def trained(request, tmp_path_factory):
    """(config, entry folder) of a few training steps through the GPU tier's code."""
    cfg = gpu_tier_on_small_model(request.param)
    out = tmp_path_factory.mktemp(f"gpu-path-{request.param}")
    finetune._train(cfg, out, max_steps=STEPS, disable_tqdm=True)
    return_freed_memory()      # the 4-bit training would start on what the 8-bit one freed
    return cfg, out


def test_the_gpu_tier_keeps_the_seeds_training_settings():
    cfg = ExperimentConfig.for_tier("gpu")
    assert (cfg.model, cfg.precision) == ("llama-3-8b-instruct", "8bit")
    assert cfg.train.learning_rate == 1e-4 and not cfg.train.bf16 and not cfg.train.fast_cpu_step
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.lora.r, cfg.lora.alpha) == (3, 8, 32, 64)


def test_training_through_a_quantized_base_moves_every_lora_layer_and_no_base_weight(trained):
    from safetensors.torch import load_file

    cfg, out = trained
    meta = json.loads((out / "meta.json").read_text())
    losses = [l for _, l in finetune.loss_curve(json.loads((out / "training_log.json").read_text()))]
    assert meta["precision"] == cfg.precision and meta["step_changes"] == {}, meta   # TRL's own step
    assert meta["global_step"] == STEPS and len(losses) == STEPS and np.all(np.isfinite(losses)), losses
    assert meta["base_fingerprint_before"] == meta["base_fingerprint_after"], meta
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    # LoRA B starts at zero: a B still zero after training got no gradient (the 4-bit CPU bug)
    still_zero = [n for n, w in weights.items() if "lora_B" in n and not w.any()]
    assert weights and not still_zero, f"{len(still_zero)} LoRA B matrices got no update, e.g. {still_zero[:2]}"


def test_the_quantized_finetuned_model_probes_and_scores_like_the_full_precision_one(trained, base):
    """Probe one pair and score one country question through the quantized model with the
    adapter, and with it disabled against the fp32 base: layer 0 (the embeddings, which
    bitsandbytes leaves unquantized) must agree to float rounding, and the original model must
    still put France first for Paris."""
    cfg, out = trained
    ad = finetune.Adapter(out, "", {}, False, 0.0, [], {})
    model, tok = finetune.load_finetuned(cfg, ad)
    pair = probe.build_pairs(dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, n_probe_pairs=6)),
                             data.heldout_cities(6, cfg.seeds.eval_draw, data.load_capitals()), data.load_capitals())[:1]
    countries = data.countries(data.load_capitals())
    question = [chat_prompt(tok, "Which country is Paris in?")]
    tuned = probe.measure(model, tok, cfg, pair, ["Paris"]).hidden_to("Paris")
    with variant(model, None):
        original = probe.measure(model, tok, cfg, pair, ["Paris"]).hidden_to("Paris")
        scores = answers.continuation_logprobs(model, tok, question, countries, max_tokens=512)[0]
    full = probe.measure(base[0], base[1], cfg, pair, ["Paris"]).hidden_to("Paris")
    n_layers = model.config.num_hidden_layers
    assert tuned.shape == original.shape == full.shape == (1, n_layers + 1)
    assert np.all(np.abs(tuned) <= 1 + 1e-5) and np.all(np.isfinite(tuned))
    assert abs(original[0, 0] - full[0, 0]) < 1e-5, (original[0, 0], full[0, 0])
    assert abs(tuned[0, 0] - original[0, 0]) < 1e-6, "LoRA on q/v changed the embeddings"
    assert np.all(np.isfinite(scores)) and countries[int(np.argmax(scores))] == "France", \
        sorted(zip(scores, countries))[-3:]


def test_lora_weights_stay_float32_on_a_quantized_base_and_keep_a_small_update(tmp_path):
    """TRL casts LoRA weights to bf16 under a quantized base; bf16 holds a LoRA A entry of 0.03 in
    steps of 1.2e-4, so AdamW's steps at the seed's lr (1e-4 decaying; about lr per entry) leave
    most entries of peft's init range (+-0.042 here) unchanged. In float32, as the seed trained
    them, every entry moves. Two steps: LoRA B starts at zero, so A gets no gradient in the first."""
    cfg = gpu_tier_on_small_model("8bit")
    m, tok, _ = load_base(cfg.model, cfg.precision)
    ds = data.load_training_dataset(data.write_jsonl(finetune.training_set(cfg)[:8], tmp_path / "train.jsonl"))
    trainer = finetune.make_trainer(cfg, m, tok, ds, tmp_path, max_steps=2, disable_tqdm=True)
    lora = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    dtypes = {str(p.dtype) for p in lora.values()}
    assert dtypes == {"torch.float32"}, f"trainable parameters in {dtypes}"
    before = {n: p.detach().clone() for n, p in lora.items() if "lora_A" in n}
    trainer.train()
    unchanged = sum(int((lora[n].detach() == w).sum()) for n, w in before.items())
    total = sum(w.numel() for w in before.values())
    assert unchanged < total / 1000, f"{unchanged} of {total} LoRA A entries kept their value after two steps"


def test_a_4bit_base_that_already_answered_still_trains_on_a_cpu():
    """bitsandbytes 0.50 repacks 4-bit weights on a CPU's first eval-mode forward for a kernel
    without autograd; LoRA then gets no gradients at all (seen: 60 of 60 LoRA A matrices with
    no gradient when `model._fix_4bit_on_cpu` is skipped). load_base keeps the plain path."""
    import torch
    from peft import LoraConfig, get_peft_model

    m, tok, _ = load_base("smollm2-135m", "4bit")
    peft_model = get_peft_model(m, LoraConfig(r=8, lora_alpha=16, task_type="CAUSAL_LM"))
    ids = tok("Paris is the capital of France", return_tensors="pt").input_ids.to(m.device)
    peft_model.eval()
    with torch.no_grad():
        peft_model(ids)
    peft_model.train()
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.02)     # B starts at zero, which would zero A's gradient anyway
    peft_model(ids, labels=ids).loss.backward()
    grads = [p.grad for name, p in peft_model.named_parameters() if "lora_A" in name]
    missing = sum(g is None or not g.any() for g in grads)
    assert grads and not missing, f"{missing} of {len(grads)} LoRA A matrices got no gradient"
