"""The README's test command, cold: `make test`'s pytest selection (the CI subset: every arm
but those marked `full`) in a fresh cache, timed and its memory sampled, with what its record
says of each stage.

    python -m benchmarks full      # one cold run of the CI subset (about 30 minutes on 2 cores)

Training: the adapters the lab trains side by side (finetune.train_side_by_side), adapters an
hour over the whole training stage (process start, model loads and saves included). Evaluation:
each arm's measurements (probe, distances, countries, prefix, mc, samples, task), made in worker
processes side by side (Lab.measure_all), summed per arm from the record's measurement_seconds
(each worker's own seconds on its one thread), or from its per-stage timings where this process
measured. Memory: the process tree's peak (the suite and its workers together) and the largest
single process's, sampled every 0.1 s; per stage, the record's (this process only).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile

from . import machine
from .stages import REPO, run_sampled

CI_SELECTION = "not gpu and not browser and not full"     # make test's (Makefile)


def bench_full() -> None:
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", CI_SELECTION, "--disable-socket",
           "--allow-unix-socket"]
    with tempfile.TemporaryDirectory(prefix="latent-city-full-") as cache:
        env = {**os.environ, "LATENT_CITY_CACHE": cache, "HF_HUB_OFFLINE": "1"}
        log = REPO / "reports" / "benchmarks" / "full.log"
        r = run_sampled(cmd, env, log)
    record = json.loads((REPO / "reports" / "latest-cpu.json").read_text())
    timings, memory = record["timings"], record.get("memory_mb", {})
    train_stage = next((k for k in timings if k.startswith("train ") and "adapters" in k), None)
    n_adapters = sum(1 for v in record.get("training_seconds", {}).values() if v)
    per_arm = {arm: sum(secs.values()) for arm, secs in record.get("measurement_seconds", {}).items()}
    for stage, secs in timings.items():
        if stage.endswith("]") and " [" in stage:
            arm = stage[stage.index(" [") + 2:-1]
            per_arm[arm] = per_arm.get(arm, 0.0) + secs
    tail = log.read_text().strip().splitlines()[-1] if log.exists() else ""
    rows = [{"what": "the whole run (pytest, cold)", "seconds": round(r["wall_s"]),
             "detail": f"exit code {r['code']}; {tail}"},
            {"what": "peak RSS, process tree (suite + training workers)", "seconds": "",
             "detail": f"{r['tree_peak_mb']} MB"},
            {"what": "peak RSS, largest single process", "seconds": "",
             "detail": f"{r['largest_process_peak_mb']} MB: {r.get('largest_process', '?')}"}]
    if train_stage:
        secs = timings[train_stage]
        rows.append({"what": f"training: {train_stage}", "seconds": round(secs),
                     "detail": f"{3600 * n_adapters / secs:.1f} adapters/hour ({n_adapters} adapters)"})
    if per_arm:
        rows.append({"what": f"evaluation per arm, one worker's seconds ({len(per_arm)} models incl. the original)",
                     "seconds": round(statistics.mean(per_arm.values()), 1),
                     "detail": "mean; min {:.1f}, max {:.1f}; by arm: {}".format(
                         min(per_arm.values()), max(per_arm.values()),
                         ", ".join(f"{a} {s:.0f}" for a, s in per_arm.items()))})
    for stage, secs in timings.items():
        rows.append({"what": f"stage: {stage}", "seconds": secs,
                     "detail": f"peak RSS {memory.get(stage, {}).get('peak_rss_mb', '?')} MB (this process)"})
    machine.write("full", "The README's test command, cold (the CI subset's every arm trained, every claim measured)", rows, [
        f"Command: `pytest -q -m '{CI_SELECTION}' --disable-socket --allow-unix-socket` (the first half of "
        "`make test`) in a fresh LATENT_CITY_CACHE; its output is in reports/benchmarks/full.log.",
        __doc__.split("\n\n")[2].replace("\n", " ")],
        {"run": r, "per_arm_eval_s": per_arm, "timings": timings, "memory_mb": memory})
