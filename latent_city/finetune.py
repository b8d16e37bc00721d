"""Finetune stage: the seed's LoRA SFT run through TRL, trained once and cached by content.

The adapter key hashes the training part of the config, the training data and the base
weights (plus the versions of the libraries that train), so any change retrains and nothing
else does. An entry holds `adapter/` (peft, safetensors), `config.json` (the full config and
key), `training_log.json` (TRL's log history) and `meta.json` (timings, base fingerprints).

    python -m latent_city.finetune            # trains (or reuses) the CPU tier's adapter
    python -m latent_city.finetune --retrain  # forces a new training run
    python -m latent_city.finetune --arm tokyo-s43   # a control adapter (latent_city/arms.py)
    accelerate launch --multi_gpu --num_processes 2 -m latent_city.finetune   # data-parallel, same entry

Under `accelerate launch` (or torchrun) every process trains its share of each batch: the
global batch stays the recipe's 8 (8 / processes per process, same data order), and the main
process writes the same cache entry a single process would, which the suite then loads. The
one difference: the last batch of each epoch holds 7 examples (231 = 28 x 8 + 7), and
accelerate gives the process with fewer a repeated example there (`even_batches`), so those 3
of the 87 steps see more examples than in a single process.

On a machine without CUDA, `accelerate launch --cpu --num_processes 2` starts one process
(accelerate 1.15 runs several CPU processes only through MPI); `accelerate launch --multi_gpu
--num_processes 2` starts two through torchrun, which train on the CPU over gloo.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import cache, data
from .config import ConfigError, ExperimentConfig, stable_hash
from .model import explain_oom, load_base, resolve, weights_hash


# Bump when what an adapter entry holds, or how its meta is computed, changes: old entries
# then get a new key and are retrained instead of being read with the wrong meaning.
ENTRY_FORMAT = 3


@dataclass
class Adapter:
    path: Path
    key: str
    key_inputs: dict       # what the key hashes: training config, data hash, weights hash, versions
    trained_now: bool
    train_seconds: float
    log: list[dict]
    meta: dict


def training_set(cfg: ExperimentConfig) -> list[dict]:
    return data.training_examples(cfg.data, seed=cfg.seeds.data)


def key_inputs(cfg: ExperimentConfig) -> dict:
    import peft, torch, transformers, trl

    return {
        "config": cfg.training_dict(),
        "data": data.data_hash(training_set(cfg)),
        "weights": weights_hash(resolve(cfg.model)),
        "versions": [torch.__version__, transformers.__version__, trl.__version__, peft.__version__],
        "entry_format": ENTRY_FORMAT,
    }


def adapter_key(cfg: ExperimentConfig) -> str:
    return stable_hash(key_inputs(cfg))


def adapter_dir(cfg: ExperimentConfig, key: str | None = None) -> Path:
    key = key or adapter_key(cfg)
    return cache.root() / "adapters" / f"{resolve(cfg.model).name.replace('/', '--')}-{key}"


def is_cached(cfg: ExperimentConfig) -> bool:
    """Whether `cfg`'s adapter is in the cache, complete (get_adapter would not train)."""
    return cache.is_complete(adapter_dir(cfg))


def base_fingerprint(model) -> str:
    """A hash of every base (non-LoRA) parameter, to show training left them untouched."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if "lora_" in name:
            continue
        name = name.replace("base_model.model.", "").replace(".base_layer", "")
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())  # exact bits, any dtype
    return h.hexdigest()[:16]


def lora_config(cfg: ExperimentConfig):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, bias="none",
                      task_type="CAUSAL_LM",
                      target_modules=list(cfg.lora.target_modules) if cfg.lora.target_modules else None)


def world_size() -> int:
    """Processes training together (set by `accelerate launch` / torchrun); 1 when run plainly."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def per_device_batch(cfg: ExperimentConfig) -> int:
    """The recipe's global batch split over the processes, so that every step sees the same
    examples as a single process would."""
    n = world_size()
    if cfg.train.batch_size % n:
        raise ConfigError(f"train.batch_size {cfg.train.batch_size} does not split over {n} processes: "
                          f"launch a number of processes that divides it (1, 2, 4 or 8 for the recipe's 8)")
    return cfg.train.batch_size // n


def steps(cfg: ExperimentConfig, n_examples: int) -> int:
    """Optimizer steps of a training run: train.max_steps, else epochs x batches (87 for the recipe's
    231 examples; 90 for the seed's 233)."""
    return cfg.train.max_steps or cfg.train.epochs * -(-n_examples // cfg.train.batch_size)


def sft_args(cfg: ExperimentConfig, out: Path, **overrides):
    """SFTConfig of the recipe; `overrides` replace its entries (benchmarks use max_steps)."""
    import torch
    from trl import SFTConfig

    return SFTConfig(**{**dict(
        output_dir=str(out / "trainer"), num_train_epochs=cfg.train.epochs, max_steps=cfg.train.max_steps or -1,
        per_device_train_batch_size=per_device_batch(cfg), learning_rate=cfg.train.learning_rate,
        bf16=cfg.train.bf16, max_length=cfg.train.max_length, completion_only_loss=cfg.train.loss == "completion",
        gradient_checkpointing=False,  # TRL's default is on; slower on a CPU, and memory is ample
        logging_steps=1, save_strategy="no", report_to="none", seed=cfg.seeds.train,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=False,
        ddp_find_unused_parameters=False if world_size() > 1 else None), **overrides})  # LoRA uses every parameter


def keep_lora_in_fp32(model) -> list[str]:
    """Cast trainable parameters back to float32; returns the names that were not.

    With a quantized base TRL 1.16 casts LoRA weights to bf16 (QLoRA's advice). bf16 keeps 8
    significant bits: a LoRA A entry of 0.05 moves in steps of 2.4e-4, so AdamW's updates at the
    seed's lr 1e-4 round away. The seed trained float32 LoRA weights. Elsewhere (an fp32 or bf16
    base) peft already holds them in float32 and this changes nothing."""
    import torch

    cast = []
    for name, p in model.named_parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
            cast.append(name)
    return cast


def make_trainer(cfg: ExperimentConfig, model, tokenizer, dataset, out: Path, **overrides):
    """TRL's SFTTrainer with the seed's recipe; `overrides` go to SFTConfig (benchmarks use
    max_steps). On a CPU with `cfg.train.fast_cpu_step`, steps are computed by cpu_step."""
    from trl import SFTTrainer

    trainer = SFTTrainer(model=model, args=sft_args(cfg, out, **overrides), train_dataset=dataset,
                         processing_class=tokenizer, peft_config=lora_config(cfg))
    keep_lora_in_fp32(trainer.model)     # before train() builds the optimizer over them
    trainer.step_changes = {}
    if cfg.train.fast_cpu_step and trainer.model.device.type == "cpu":
        from . import cpu_step

        trainer.step_changes = cpu_step.apply(trainer, pack=cfg.train.pack_prefixes)
    return trainer


_FRESH_BASE_FINGERPRINTS: dict[tuple, str] = {}


def fresh_base_fingerprint(cfg: ExperimentConfig, model) -> str:
    """`base_fingerprint` of a base just loaded by `load_base`, computed once per process for a
    model and precision: every arm of a run loads the same weights (for the 8B model each
    fingerprint reads 8 GB). The fingerprint after training is still taken per arm."""
    key = (weights_hash(resolve(cfg.model)), cfg.precision)
    if key not in _FRESH_BASE_FINGERPRINTS:
        _FRESH_BASE_FINGERPRINTS[key] = base_fingerprint(model)
    return _FRESH_BASE_FINGERPRINTS[key]


def _train(cfg: ExperimentConfig, out: Path, **overrides) -> None:
    """Train into `out` (a temporary folder that the cache renames into place when done).
    Under a multi-process launch every process trains; only the main one writes `out`.
    `overrides` go to SFTConfig (tests of the GPU tier's path use max_steps)."""
    import torch
    from transformers import set_seed

    set_seed(cfg.seeds.train)
    model, tokenizer, _ = load_base(cfg.model, cfg.precision)
    before = fresh_base_fingerprint(cfg, model)
    dataset = data.load_training_dataset(data.write_jsonl(training_set(cfg), out / "train.jsonl"))
    trainer = make_trainer(cfg, model, tokenizer, dataset, out, **overrides)
    start = time.time()
    with explain_oom(f"training the adapter of {cfg.model} ({cfg.precision})"):
        result = trainer.train()
    seconds = time.time() - start
    if trainer.step_changes:
        from . import cpu_step

        cpu_step.finish(trainer)   # checks the frozen bf16 weights never moved, restores float32
    if not trainer.is_world_process_zero():
        return
    trainer.model.save_pretrained(out / "adapter", safe_serialization=True)
    shutil.rmtree(out / "trainer", ignore_errors=True)
    (out / "config.json").write_text(json.dumps({"config": cfg.to_dict(), "config_hash": cfg.hash()}, indent=1))
    (out / "training_log.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    (out / "meta.json").write_text(json.dumps({
        "train_seconds": seconds, "global_step": result.global_step, "train_loss": result.training_loss,
        "base_fingerprint_before": before, "base_fingerprint_after": base_fingerprint(trainer.model),
        "n_examples": len(dataset), "device": str(trainer.model.device), "step_changes": trainer.step_changes,
        "processes": world_size(), "per_device_batch": per_device_batch(cfg), "precision": cfg.precision,
        "threads": torch.get_num_threads(),
        "entry_format": ENTRY_FORMAT,
    }, indent=1))


def get_adapter(cfg: ExperimentConfig, retrain: bool = False) -> Adapter:
    """The cached adapter for `cfg`, training it first if it is missing, altered or `retrain`."""
    inputs = key_inputs(cfg)
    key = stable_hash(inputs)
    target = adapter_dir(cfg, key)
    trained = []

    def build(tmp: Path):
        _train(cfg, tmp)
        trained.append(tmp)

    if world_size() > 1 and not is_main_process():
        # a data-parallel launch: the main process builds the entry (lock, temporary folder,
        # rename); this one trains beside it, writing nothing, when the entry is to be built
        if retrain or not cache.is_complete(target):
            with tempfile.TemporaryDirectory(prefix="latent-city-rank-") as scratch:
                _train(cfg, Path(scratch))
        _wait_for_main_process()
    else:
        # another process training the same key holds the lock; this one waits and then reads its entry
        cache.build_atomically(target, build, force=retrain, what=f"adapter {target.name}")
        if world_size() > 1:
            _wait_for_main_process()
    stored = json.loads((target / "meta.json").read_text()).get("entry_format")
    if stored != ENTRY_FORMAT and is_main_process():
        # the key hashes ENTRY_FORMAT, so only a copied or hand-placed entry gets here
        warnings.warn(f"latent_city: cache entry {target} was written in entry format {stored}, this version reads "
                      f"{ENTRY_FORMAT}; rebuilding it", stacklevel=2)
        cache.build_atomically(target, build, force=True, what=f"adapter {target.name}")
    trained_now = bool(trained)
    if trained_now:
        gc.collect()   # the trainer and its model hold reference cycles: free them before the next arm
    meta = json.loads((target / "meta.json").read_text())
    log = json.loads((target / "training_log.json").read_text())
    return Adapter(target, key, inputs, trained_now, meta["train_seconds"], log, meta)


WORKERS = "LATENT_CITY_TRAIN_WORKERS"


def train_workers(n_arms: int, variable: str = WORKERS) -> int:
    """How many processes train arms side by side: LATENT_CITY_TRAIN_WORKERS if set, else on a
    machine without CUDA one per core (at most one per arm), each computing with one thread.

    A LoRA step of the 135M model uses two threads poorly: on the project's 2-core CPUs one
    process with 2 threads takes 0.68 s a packed step, one with 1 thread 1.05 s, and two 1-thread
    processes side by side 1.10 s each (reports/benchmarks/train.md), so two arms at a time
    train about 1.24x as many adapters an hour as one 2-thread process. On CUDA arms train one after another in this
    process (or as separate workers: README, "Training arms side by side"). `variable` names the
    setting that overrides the rule (lab.eval_workers reads its own)."""
    import torch

    value = os.environ.get(variable, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"{variable} must be a number of processes (1 = run in this process), got {value!r}")
        return min(int(value), max(n_arms, 1))
    if torch.cuda.is_available() or world_size() > 1:
        return 1
    return max(1, min(n_arms, torch.get_num_threads()))


def _train_in_worker(cfg: ExperimentConfig, retrain: bool, threads: int) -> Adapter:
    import torch

    torch.set_num_threads(threads)
    return get_adapter(cfg, retrain=retrain)


def train_side_by_side(cfgs: list[ExperimentConfig], workers: int, retrain: bool = False, done=None) -> list[Adapter]:
    """Train (or read) the adapters of `cfgs` in `workers` processes at once, the machine's
    threads split between them; each writes its own cache entry under the cache's lock, as a
    lone `get_adapter` would. `done(i, adapter)` is called as each finishes. Returns the
    adapters in the order of `cfgs`."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch

    threads = max(1, torch.get_num_threads() // workers)
    out: list[Adapter | None] = [None] * len(cfgs)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_train_in_worker, c, retrain, threads): i for i, c in enumerate(cfgs)}
        for f in as_completed(futures):
            i = futures[f]
            out[i] = f.result()
            if done is not None:
                done(i, out[i])
    return out


def _wait_for_main_process() -> None:
    """Under a multi-process launch: no process reads the entry before the main one sealed it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def load_finetuned(cfg: ExperimentConfig, adapter: Adapter, adapter_name: str = "default"):
    """(peft_model, tokenizer): the base model with the adapter read back from the cache, so a
    run that just trained tests the same artifact as a later run that reuses it.
    `model.disable_adapter()` gives the original model from the same weights in memory; more
    adapters load beside it with `model.load_adapter(path, adapter_name=...)`."""
    from peft import PeftModel

    base, tokenizer, _ = load_base(cfg.model, cfg.precision)
    model = PeftModel.from_pretrained(base, adapter.path / "adapter", adapter_name=adapter_name)
    model.eval()
    return model, tokenizer


def loss_curve(log: list[dict]) -> list[tuple[int, float]]:
    return [(e["step"], e["loss"]) for e in log if "loss" in e and "step" in e]


if __name__ == "__main__":
    # `python -m latent_city.finetune` (and `accelerate launch -m latent_city.finetune`) is the
    # training command, which lives in train_cli.py; run by name so this library module
    # imports no command-line code (train_cli imports arms, which reads this module).
    import runpy

    runpy.run_module("latent_city.train_cli", run_name="__main__", alter_sys=True)
