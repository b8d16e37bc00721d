"""Training benchmarks: how fast a step of the seed's recipe is computed, and whether the
faster step trains the same curve.

    python -m benchmarks train   # the first steps under three step computations, side by side
    python -m benchmarks noise   # full 90-step runs, 3 seeds each: the loss-curve noise

FLOPs a step must do are counted from each batch as it is trained, over real (unpadded)
tokens only: 4 * (decoder Linear parameters) per token (forward plus the input gradients of
the backward; frozen weights need no weight gradient), 6 * r * (d_in + d_out) per LoRA
module per token (forward, input and weight gradients), 12 * n^2 * d per layer and sequence
for attention, and 4 * d * vocab per loss token for the LM head (forward and input
gradient). The floor is those FLOPs at the matmul peak measured in the same run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

from . import machine

CONFIGS = {   # name -> (bf16 autocast, fast_cpu_step)
    "TRL defaults (fp32)": (False, False),
    "TRL, bf16 autocast (before)": (True, False),
    "project: bf16 + cpu_step": (True, True),
}


def _cfg(bf16: bool, fast: bool, seed: int = 42):
    from latent_city.config import ExperimentConfig

    cfg = ExperimentConfig.for_tier("cpu")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, bf16=bf16, fast_cpu_step=fast),
                               seeds=dataclasses.replace(cfg.seeds, train=seed))


def must_do_flops(model_config, lora_r: int, lora_modules: int, lengths: list[int], loss_tokens: int,
                  linear_params: int, lora_dims: int) -> float:
    d, layers, vocab = model_config.hidden_size, model_config.num_hidden_layers, model_config.vocab_size
    tokens = sum(lengths)
    return (4 * linear_params * tokens + 6 * lora_r * lora_dims * tokens
            + 12 * d * layers * sum(n * n for n in lengths) + 4 * d * vocab * loss_tokens)


def run(cfg, steps: int | None, data_seed: int = 42) -> dict:
    """Train `steps` steps (None = the whole recipe) and return per-step times, losses and FLOPs."""
    import torch
    from transformers import TrainerCallback, set_seed

    from latent_city import data, finetune
    from latent_city.model import load_base

    set_seed(cfg.seeds.train)
    model, tokenizer, _ = load_base(cfg.model, cfg.precision)
    linear_params = sum(m.weight.numel() for n, m in model.named_modules()
                        if isinstance(m, torch.nn.Linear) and "lm_head" not in n)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        dataset = data.load_training_dataset(data.write_jsonl(finetune.training_set(cfg), out / "train.jsonl"))
        trainer = finetune.make_trainer(cfg, model, tokenizer, dataset, out, disable_tqdm=True, logging_steps=1,
                                        data_seed=data_seed)
        lora = [m for m in trainer.model.modules() if hasattr(m, "lora_A") and "default" in m.lora_A]
        lora_dims = sum(m.in_features + m.out_features for m in lora)
        batches, times = [], []
        compute_loss = trainer.compute_loss

        def recording_loss(model, inputs, *a, **k):
            mask, labels = inputs["attention_mask"], inputs["labels"]
            batches.append({"lengths": mask.sum(1).tolist(), "loss_tokens": int((labels[:, 1:] != -100).sum()),
                            "padded": int(mask.numel()),
                            "hash": hashlib.sha256(inputs["input_ids"].cpu().numpy().tobytes()).hexdigest()[:12]})
            return compute_loss(model, inputs, *a, **k)

        trainer.compute_loss = recording_loss

        class Clock(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                self.start = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                times.append(time.perf_counter() - self.start)
                if steps and state.global_step >= steps:
                    control.should_training_stop = True

        trainer.add_callback(Clock())
        trainer.train()
        if trainer.step_changes:
            from latent_city import cpu_step

            cpu_step.finish(trainer)
    flops = [must_do_flops(model.config, cfg.lora.r, len(lora), b["lengths"], b["loss_tokens"], linear_params,
                           lora_dims) for b in batches]
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"times": times, "flops": flops, "batches": batches, "losses": losses}


def bench_train(steps: int = 20, warmup: int = 3) -> None:
    m = machine.describe()
    rows, runs = [], {}
    for name, (bf16, fast) in CONFIGS.items():
        r = runs[name] = run(_cfg(bf16, fast), steps)
        t = r["times"][warmup:]
        secs = statistics.median(t)
        flops = statistics.mean(r["flops"][warmup:])
        tokens = statistics.mean(sum(b["lengths"]) for b in r["batches"][warmup:])
        peak = m["peak_gflops_bf16"] if bf16 else m["peak_gflops_fp32"]
        rows.append({"step computation": name, "s/step (median)": round(secs, 3),
                     "real tokens/s": round(tokens / secs), "must-do GFLOP/step": round(flops / 1e9, 1),
                     "achieved GFLOP/s": round(flops / secs / 1e9), "peak used (GFLOP/s)": peak,
                     "x floor": round(secs / (flops / peak / 1e9), 2),
                     "x bf16 floor": round(secs / (flops / m["peak_gflops_bf16"] / 1e9), 2),
                     "90-step estimate (s)": round(90 * secs)})
    same = len({tuple(b["hash"] for b in r["batches"]) for r in runs.values()}) == 1
    padded = statistics.mean(b["padded"] for b in runs[name]["batches"]) / tokens
    machine.write("train", f"Training step of the seed's recipe, steps {warmup + 1}-{steps} of the same run", rows, [
        f"The same {steps} batches in every configuration (input hashes {'equal' if same else 'DIFFER'}); "
        f"batch 8, about {tokens:.0f} real tokens a step, padding adds {100 * (padded - 1):.0f}%.",
        "x floor = seconds per step / (must-do FLOPs / the measured peak of the dtype the matmuls run in); "
        "x bf16 floor uses the bf16 peak for every row. " + __doc__.split("\n\n")[2].replace("\n", " ")],
        {"runs": {k: {kk: vv for kk, vv in v.items() if kk != "batches"} for k, v in runs.items()}})


def bench_noise(seeds=(42, 43, 44)) -> None:
    """Full runs of the recipe: TRL's bf16 step (before) and the project's, each with 3 seeds
    (LoRA init and dropout) on the same data order (data_seed 42)."""
    import numpy as np

    curves = {}
    for name in ("TRL, bf16 autocast (before)", "project: bf16 + cpu_step"):
        bf16, fast = CONFIGS[name]
        for seed in seeds:
            r = run(_cfg(bf16, fast, seed), None)
            curves[(name, seed)] = (np.array(r["losses"]), sum(r["times"]))
    again = np.array(run(_cfg(*CONFIGS["project: bf16 + cpu_step"], seeds[0]), None)["losses"])
    repeat = float(np.abs(again - curves[("project: bf16 + cpu_step", seeds[0])][0]).max())
    before = [curves[("TRL, bf16 autocast (before)", s)][0] for s in seeds]
    noise = [float(np.abs(a - b).mean()) for i, a in enumerate(before) for b in before[i + 1:]]
    rows = []
    for (name, seed), (loss, secs) in curves.items():
        ref = curves[("TRL, bf16 autocast (before)", seed)][0]
        rows.append({"step computation": name, "seed": seed, "train s": round(secs, 1),
                     "first loss": round(float(loss[0]), 4), "mean loss, last 10 steps": round(float(loss[-10:].mean()), 4),
                     "mean abs per-step diff to before, same seed": round(float(np.abs(loss - ref).mean()), 4)})
    project = curves[("project: bf16 + cpu_step", seeds[0])][0]
    verdict = float(np.abs(project - before[0]).mean()) <= min(noise)
    machine.write("noise", "Loss curves of the full recipe: the faster step against run-to-run noise", rows, [
        f"Run-to-run noise of the step before this change, between seeds {seeds} on the same data order: "
        f"mean absolute per-step loss difference {', '.join(f'{n:.4f}' for n in noise)}. "
        f"The project's step (seed {seeds[0]}) differs from the step before (seed {seeds[0]}) by "
        f"{np.abs(project - before[0]).mean():.4f}: {'within' if verdict else 'OUTSIDE'} that noise.",
        f"The project's step run twice with seed {seeds[0]} in this run: largest per-step loss difference {repeat:.1e}."],
        {"curves": {f"{k[0]} / seed {k[1]}": v[0].tolist() for k, v in curves.items()}})
