"""Training benchmarks: how fast a step of the seed's recipe is computed, and whether the
faster step trains the same curve.

    python -m benchmarks train   # the first steps under three step computations, side by side
    python -m benchmarks noise   # full runs, 5 seeds each: the loss-curve noise (about 22 minutes)

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

CONFIGS = {   # name -> (bf16 autocast, fast_cpu_step, pack_prefixes, threads; None = all)
    "TRL defaults (fp32)": (False, False, False, None),
    "TRL, bf16 autocast": (True, False, False, None),
    "cpu_step (before issue 19)": (True, True, False, None),
    "cpu_step + packed batch": (True, True, True, None),
    "cpu_step + packed batch, 1 thread": (True, True, True, 1),
}
TODAY = "cpu_step (before issue 19)"
SIDE_BY_SIDE = "cpu_step + packed batch, 2 processes x 1 thread (the lab's training)"


def _cfg(bf16: bool, fast: bool, pack: bool = False, seed: int = 42):
    from latent_city.config import ExperimentConfig

    cfg = ExperimentConfig.for_tier("cpu")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, bf16=bf16, fast_cpu_step=fast,
                                                              pack_prefixes=pack),
                               seeds=dataclasses.replace(cfg.seeds, train=seed))


def _run_with_threads(cfg, steps, threads):
    import torch

    if threads:
        torch.set_num_threads(threads)
    return run(cfg, steps)


def side_by_side(cfgs: list, steps: int | None, processes: int = 2) -> list[dict]:
    """`run` of each config, `processes` at a time in separate 1-thread processes (as the lab
    trains arms on a CPU: finetune.train_side_by_side)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_run_with_threads, cfgs, [steps] * len(cfgs), [1] * len(cfgs)))


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
    from latent_city.batching import pack_prefix_trees
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
            rows = [ids[:n].tolist() for ids, n in zip(inputs["input_ids"], mask.sum(1))]
            batches.append({"lengths": mask.sum(1).tolist(), "loss_tokens": int((labels[:, 1:] != -100).sum()),
                            "tree_tokens": len(pack_prefix_trees(rows)),
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
    for name, (bf16, fast, pack, threads) in CONFIGS.items():
        runs[name] = _run_with_threads(_cfg(bf16, fast, pack), steps, threads) if threads else run(_cfg(bf16, fast, pack),
                                                                                                     steps)
    pair = side_by_side([_cfg(True, True, True), _cfg(True, True, True, seed=43)], steps)
    runs[SIDE_BY_SIDE] = {**pair[0], "times": [max(a, b) for a, b in zip(pair[0]["times"], pair[1]["times"])]}
    today = statistics.median(runs[TODAY]["times"][warmup:])
    for name, r in runs.items():
        bf16, _, pack, _ = CONFIGS.get(name, (True, True, True, 1))
        processes = 2 if name == SIDE_BY_SIDE else 1
        t = r["times"][warmup:]
        secs = statistics.median(t)
        flops = statistics.mean(r["flops"][warmup:])
        tokens = statistics.mean(sum(b["lengths"]) for b in r["batches"][warmup:])
        computed = statistics.mean(b["tree_tokens"] if pack else b["padded"] for b in r["batches"][warmup:])
        peak = m["peak_gflops_bf16"] if bf16 else m["peak_gflops_fp32"]
        rows.append({"step computation": name, "s/step (median)": round(secs, 3),
                     "tokens computed/step": round(computed), "real tokens/s": round(processes * tokens / secs),
                     "must-do GFLOP/step": round(flops / 1e9, 1),
                     "x floor": round(secs / processes / (flops / peak / 1e9), 2),
                     "x bf16 floor": round(secs / processes / (flops / m["peak_gflops_bf16"] / 1e9), 2),
                     "90-step estimate (s)": round(90 * secs),
                     "adapters/hour": round(processes * 3600 / (90 * secs), 1),
                     "x today": round(processes * today / secs, 2)})
    same = len({tuple(b["hash"] for b in r["batches"]) for r in runs.values()}) == 1
    padded = statistics.mean(b["padded"] for b in runs[TODAY]["batches"]) / tokens
    machine.write("train", f"Training step of the seed's recipe, steps {warmup + 1}-{steps} of the same run", rows, [
        f"The same {steps} batches in every configuration (input hashes {'equal' if same else 'DIFFER'}); "
        f"batch 8, about {tokens:.0f} real tokens a step, padding adds {100 * (padded - 1):.0f}%; packed as one "
        "prefix tree a batch computes about half of them (tokens computed/step).",
        f"today = '{TODAY}', the CPU tier's step before issue 19. adapters/hour = processes x 3600 / (90 x s/step); "
        f"'{SIDE_BY_SIDE}': two processes started together, each with one thread, on seeds 42 and 43, "
        "s/step the slower of the two at each step.",
        "x floor = seconds per step and process / (must-do FLOPs / the measured peak of the dtype the matmuls run "
        "in); must-do FLOPs count every real token of the batch, so packing (which computes shared tokens once) "
        "can go below what an unpacked step must do. x bf16 floor uses the bf16 peak for every row. "
        + __doc__.split("\n\n")[2].replace("\n", " ")],
        {"runs": {k: {kk: vv for kk, vv in v.items() if kk != "batches"} for k, v in runs.items()}})


NOISE_SEEDS = (42, 43, 44, 45, 46)
NOISE_ALPHA = 0.05


def curve_distance(a, b) -> float:
    """Mean absolute per-step loss difference of two curves of the same data order."""
    import numpy as np

    return float(np.abs(np.asarray(a) - np.asarray(b)).mean())


def within_noise(old: list, new: list, alpha: float = NOISE_ALPHA) -> dict:
    """The noise benchmark's rule, declared before its 5-seed run (the 3-seed rule before it,
    largest same-seed difference <= largest old seed pair, compared two maxima of 3 and passed
    one day and failed the next on the same code).

    Packing draws LoRA dropout masks per shared token, not per example, so a new curve with
    seed s is not the old curve of seed s recomputed: it is another draw of the training noise.
    The new step is within the seed-to-seed noise of the old when its curves cannot be told
    apart from the old step's: an exact two-sample permutation test over the seed labels, on
    the energy statistic of the curves (mean distance between an old and a new curve, less the
    mean of the two groups' within-group distances; scipy.stats.permutation_test,
    one-sided, every split of the 2K curves). Within when p >= alpha. A systematic shift of
    the new curves (an offset, a different slope) or a larger spread both raise the statistic.
    With K = 5 the smallest p the exact test gives is 2/252 (the statistic is symmetric in the
    labels), so it can reject at 0.05; with K = 3 it could not (2/20).
    Also reported: ratio = mean old-to-new distance / mean old-to-old distance (1 when the
    new curves are draws of the old step's noise).

    Found after the 5-seed run (a review; the rule stays as declared): an old and a new curve of
    one seed share the LoRA initialization, so the 2K curves are not fully exchangeable and the
    test leans towards within; and the energy statistic responds weakly to a difference of spread
    alone (power about 0.18 against a 1.44x spread in simulations of independent per-step noise)."""
    import numpy as np
    from scipy import stats

    curves = [np.asarray(c) for c in [*old, *new]]
    d = np.array([[curve_distance(a, b) for b in curves] for a in curves])
    k = len(old)

    def within(idx):
        sub = d[np.ix_(idx, idx)]
        return sub[~np.eye(len(idx), dtype=bool)].mean()

    def energy(x, y):
        x, y = np.asarray(x, int), np.asarray(y, int)
        return d[np.ix_(x, y)].mean() - (within(x) + within(y)) / 2

    res = stats.permutation_test((np.arange(k), np.arange(k, 2 * k)), energy, permutation_type="independent",
                                 alternative="greater", n_resamples=np.inf, vectorized=False)
    old_i, new_i = np.arange(k), np.arange(k, 2 * k)
    return {"statistic": float(res.statistic), "p": float(res.pvalue), "alpha": alpha,
            "within": bool(res.pvalue >= alpha), "between_old_new": float(d[np.ix_(old_i, new_i)].mean()),
            "within_old": float(within(old_i)), "within_new": float(within(new_i)),
            "ratio": float(d[np.ix_(old_i, new_i)].mean() / within(old_i))}


def bench_noise(seeds=NOISE_SEEDS) -> None:
    """Full runs of the recipe with 5 seeds (LoRA init and dropout) on the same data order
    (data_seed 42): the step before issue 19 in this process, and the new one as the lab trains
    (packed batches, two 1-thread processes side by side); `within_noise` decides."""
    import numpy as np

    old, new = TODAY, SIDE_BY_SIDE
    curves = {}
    for seed in seeds:
        r = run(_cfg(True, True, False, seed), None)
        curves[(old, seed)] = (np.array(r["losses"]), sum(r["times"]))
    start = time.perf_counter()
    for seed, r in zip(seeds, side_by_side([_cfg(True, True, True, s) for s in seeds], None)):
        curves[(new, seed)] = (np.array(r["losses"]), sum(r["times"]))
    write_noise(curves, seeds, sum(curves[(old, s)][1] for s in seeds), time.perf_counter() - start)


def write_noise(curves: dict, seeds, wall_old: float, wall_new: float) -> None:
    """noise.md and noise.json from the curves {(step computation, seed): (losses, train seconds)}."""
    import numpy as np

    old, new = TODAY, SIDE_BY_SIDE
    before = [curves[(old, s)][0] for s in seeds]
    after = [curves[(new, s)][0] for s in seeds]
    test = within_noise(before, after)
    noise = [curve_distance(a, b) for i, a in enumerate(before) for b in before[i + 1:]]
    noise_new = [curve_distance(a, b) for i, a in enumerate(after) for b in after[i + 1:]]
    diffs = [curve_distance(curves[(new, s)][0], curves[(old, s)][0]) for s in seeds]
    other_seed = [curve_distance(curves[(new, s)][0], curves[(old, t)][0]) for s in seeds for t in seeds if s != t]
    rows = []
    for (name, seed), (loss, secs) in curves.items():
        ref = curves[(old, seed)][0]
        rows.append({"step computation": name, "seed": seed, "train s": round(secs, 1),
                     "first loss": round(float(loss[0]), 4), "mean loss, last 10 steps": round(float(loss[-10:].mean()), 4),
                     "mean abs per-step diff to before, same seed": round(curve_distance(loss, ref), 4)})
    n = len(seeds)
    machine.write("noise", "Loss curves of the full recipe: the new step against the seed-to-seed noise of the old", rows, [
        f"Seed-to-seed noise of the step before issue 19 ('{old}'), between seeds {tuple(seeds)} on the same data "
        f"order: mean absolute per-step loss difference of each pair from {min(noise):.4f} to {max(noise):.4f} "
        f"(mean {test['within_old']:.4f}); of the new step between the same seeds: {min(noise_new):.4f} to "
        f"{max(noise_new):.4f} (mean {test['within_new']:.4f}, {test['within_new'] / test['within_old']:.2f}x the "
        f"old's); an old curve to a new one: mean {test['between_old_new']:.4f} (ratio to old-to-old "
        f"{test['ratio']:.2f}; same seed {np.mean(diffs):.4f}: {', '.join(f'{d:.4f}' for d in diffs)}; other seeds "
        f"{np.mean(other_seed):.4f}).",
        f"Rule, declared before this run (benchmarks/train.py, within_noise): an exact permutation test over the "
        f"{n} + {n} seed labels on the energy statistic of the curves, one-sided, alpha {test['alpha']}: "
        f"statistic {test['statistic']:.5f}, p = {test['p']:.3f}: "
        + ("within the old step's seed-to-seed noise by that rule: this test cannot tell the new curves from the "
           "old step's. " if test["within"] else "OUTSIDE the old step's seed-to-seed noise: the new curves differ "
           "from the old step's at this alpha. ")
        + "It does not show that the two steps' spreads are equal: the energy statistic responds only weakly to a "
        "difference of spread alone. And an old and a new curve of one seed share the LoRA initialization, which "
        "brings them closer (same seed against other seeds, above) and leans the test towards within.",
        "Packing changes the dropout masks (one per shared token instead of one per example), so a new curve is "
        "another draw of the training noise, not the old curve recomputed. The first loss, before any update "
        "(LoRA B starts at zero), differs between the steps as the bf16 autocast rounds on other shapes: in "
        "float32 without dropout the packed batch gives the unpacked batch's loss and gradients "
        "(tests/integration/test_finetune.py), and TRL's own step moves its first loss about as much between "
        "float32 and bf16 autocast (train.md).",
        f"Wall time for the {n} adapters: {wall_old:.0f} s one after another with the old step, {wall_new:.0f} s "
        f"with the new one ({wall_old / wall_new:.2f}x the adapters per hour; includes starting the processes "
        f"and loading the model, which the old row's step times do not; {n} adapters on 2 processes)."],
        {"curves": {f"{k[0]} / seed {k[1]}": v[0].tolist() for k, v in curves.items()},
         "noise": noise, "noise_new": noise_new, "diffs": diffs, "test": test,
         "wall_old_s": wall_old, "wall_new_s": wall_new})
