"""Per-arm evaluation time: every measurement of the original model and three cached arms, made
in this process with the machine's threads (as the lab did before) and by Lab.measure_all in
worker processes side by side, one thread each; with the largest difference between the two in
every measurement, and the peak memory of the largest process.

    python -m benchmarks eval     # about 5 minutes on 2 cores; trains nothing (cached arms only)

Arms whose adapters are not in the cache are skipped, never trained: the benchmark needs three
cached ones (`python -m latent_city --list-arms` says which are).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import threading
import time

import numpy as np

from . import machine

N_ARMS = 3


class PeakMemory:
    """Samples, every `every_s` seconds, the resident memory of this process and its children:
    the largest single process's peak and the peak of all of them together (in MB)."""

    def __init__(self, every_s: float = 0.1):
        import psutil

        self.proc, self.every_s, self.largest, self.tree = psutil.Process(), every_s, 0, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self.done.is_set():
            try:
                rss = [p.memory_info().rss for p in [self.proc] + self.proc.children(recursive=True)]
                self.largest, self.tree = max(self.largest, max(rss)), max(self.tree, sum(rss))
            except psutil.Error:
                pass
            self.done.wait(self.every_s)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def differences(a, b, path: str, out: dict) -> None:
    """Into `out[path]`: the largest |a - b| over float arrays, or [differing, total] over exact
    values (ranks, texts, words), walking dataclasses, dicts and lists alike."""
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            differences(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}", out)
    elif isinstance(a, dict):
        for k in a:
            differences(a[k], b[k], path, out)
    elif isinstance(a, (list, tuple)) and any(isinstance(x, (np.ndarray, dict, list, tuple)) or dataclasses.is_dataclass(x)
                                              for x in a):        # e.g. a readout's per-layer arrays, one per variant
        if len(a) != len(b):
            out[path] = [len(a), len(a)]
        for x, y in zip(a, b):
            differences(x, y, path, out)
    elif isinstance(a, np.ndarray) and a.dtype.kind == "f":
        out[path] = max(out.get(path, 0.0), float(np.nanmax(np.abs(a - b))) if a.size else 0.0)
    else:
        fa, fb = np.array(a, dtype=object).ravel(), np.array(b, dtype=object).ravel()
        n = out.setdefault(path, [0, 0])
        n[0], n[1] = n[0] + int(sum(x != y for x, y in zip(fa, fb))) + abs(fa.size - fb.size), n[1] + fa.size


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return "unknown"


def bench_eval() -> None:
    import torch

    from latent_city import finetune, lab as lab_module, measure_cache
    from latent_city.arms import ORIGINAL
    from latent_city.config import run_config
    from latent_city.lab import MEASUREMENTS, Lab

    cfg = run_config("cpu")
    probe = Lab(cfg, log=lambda line: None)
    names = [n for n, a in probe.arms.items() if finetune.is_cached(a.cfg)][:N_ARMS]
    if len(names) < N_ARMS:
        raise SystemExit(f"benchmarks eval: needs {N_ARMS} cached adapters of the CPU tier, found {names}; "
                         "train some first (python -m latent_city.finetune --arm NAME); this benchmark trains none")
    models = names + [ORIGINAL]
    threads = torch.get_num_threads()
    workers = int(os.environ.get(lab_module.EVAL_WORKERS, "") or 2)
    os.environ[lab_module.EVAL_WORKERS] = str(workers)
    os.environ[measure_cache.ENV_VAR] = "0"      # time the measuring, not a read of the measurement cache

    side = Lab(cfg, log=print)
    with PeakMemory() as side_mem:
        start = time.perf_counter()
        side.measure_all(names, MEASUREMENTS)
        side_s = time.perf_counter() - start
    assert side.model is None, "measure_all loaded the evaluation model in this process"

    here, here_s = Lab(cfg, log=print), {}
    with PeakMemory() as here_mem:
        start = time.perf_counter()
        for arm in models:
            for what in MEASUREMENTS:
                t = time.perf_counter()
                here.measure(what, arm)
                here_s[(what, arm)] = time.perf_counter() - t
        here_total = time.perf_counter() - start

    rows = [{"way": f"in this process, {threads} threads (as before)", "models": len(models),
             "wall s": round(here_total, 1), "s per model": round(here_total / len(models), 1),
             "largest process peak MB": here_mem.largest // 2**20, "all processes peak MB": here_mem.tree // 2**20},
            {"way": f"Lab.measure_all: {workers} worker processes x {max(1, threads // workers)} thread",
             "models": len(models), "wall s": round(side_s, 1), "s per model": round(side_s / len(models), 1),
             "largest process peak MB": side_mem.largest // 2**20, "all processes peak MB": side_mem.tree // 2**20}]
    per_what = []
    for what in MEASUREMENTS:
        diffs: dict = {}
        for arm in models:
            differences(side.measure(what, arm), here.measure(what, arm), what, diffs)
        for path, d in diffs.items():
            per_what.append({"measurement": path,
                             "in-process s (mean of models, incl. the model's load in the first)":
                                 round(np.mean([here_s[(what, a)] for a in models]), 2),
                             "worker s (1 thread)": round(np.mean([side.measure_seconds[(what, a)] for a in models]), 2),
                             "largest |difference|" if isinstance(d, float) else "differing / total":
                                 f"{d:.2g}" if isinstance(d, float) else f"{d[0]} / {d[1]}"})
    speedup = here_total / side_s
    machine.write("eval", f"Evaluation per arm: in this process vs {workers} worker processes side by side "
                          f"({len(names)} cached arms + the original)", rows + per_what, [
        f"Arms: {', '.join(names)} and {ORIGINAL}, every measurement ({', '.join(MEASUREMENTS)}), the CPU tier's "
        f"eval sizes. Side by side is {speedup:.2f}x the throughput of one {threads}-thread process "
        f"({here_total / len(models):.1f} s -> {side_s / len(models):.1f} s a model, the model loads and the "
        f"workers' start included).",
        "Differences are side by side against in this process, over all four models: floats as the largest "
        "absolute difference, ranks/texts as differing of total. Sampling is seeded per measurement "
        "(seeds.eval), so a worker samples what this process samples.",
        f"CPU (lscpu model name): {_lscpu_model()}. Peak memory is sampled every 0.1 s over this process and its "
        "workers; the side-by-side parent loads no model.",
        __doc__.split("\n\n")[0].replace("\n", " ")],
        {"speedup": speedup, "arms": names, "workers": workers, "threads": threads})
