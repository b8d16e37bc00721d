"""Stage times and peak memory of the suite and of the experiment, cold (a fresh cache: it
trains) and warm (the adapter and the measurements cached), each in a subprocess as a user would run it.

    python -m benchmarks stages        # the main adapter only (pytest --quick)
    python -m benchmarks stages-full   # every arm: 14 adapters to train cold (about 25 minutes a run)

Per-stage numbers come from the experiment record each run writes (reports/latest-cpu.json:
`timings` and `memory_mb`, measured by latent_city.record.measure); whole-process peak RSS is
sampled here every 0.1 s over the process tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import machine

REPO = Path(__file__).resolve().parents[1]


def run_measured(cmd: list[str], env: dict, log: Path) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in MB of the process tree, return code); output goes to `log`."""
    r = run_sampled(cmd, env, log)
    return r["wall_s"], r["tree_peak_mb"], r["code"]


def run_sampled(cmd: list[str], env: dict, log: Path) -> dict:
    """Run `cmd`, sampling every 0.1 s the resident memory of its process tree: wall seconds, the
    tree's peak (all its processes together), the largest single process's peak, the return code."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    root, tree_peak, largest, which = psutil.Process(proc.pid), 0, 0, ""
    while proc.poll() is None:
        try:
            procs = [root] + root.children(recursive=True)
            rss = [p.memory_info().rss for p in procs]
            tree_peak = max(tree_peak, sum(rss))
            if max(rss) > largest:
                largest = max(rss)
                top = procs[rss.index(largest)]
                which = " ".join(top.cmdline())[:200] + f" (pid {top.pid}{', the command itself' if top is root else ''})"
        except psutil.Error:
            pass
        time.sleep(0.1)
    return {"wall_s": time.perf_counter() - start, "tree_peak_mb": tree_peak // 2**20,
            "largest_process_peak_mb": largest // 2**20, "largest_process": which, "code": proc.returncode}


def bench_stages(quick: bool = True) -> None:
    """quick: the main adapter only (--quick, the scope before the control adapters existed);
    otherwise every arm (14 adapters to train cold)."""
    flag = ["--quick"] if quick else []
    commands = {"suite (pytest" + " --quick" * quick + ")": [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *flag],
                "experiment (python -m latent_city" + " --quick" * quick + ")": [sys.executable, "-m", "latent_city", *flag]}
    totals, per_stage = [], {}
    for what, cmd in commands.items():
        with tempfile.TemporaryDirectory(prefix="latent-city-bench-") as cache:
            env = {**os.environ, "LATENT_CITY_CACHE": cache, "HF_HUB_OFFLINE": "1"}
            for state in ("cold", "warm"):
                log = Path(cache) / f"{state}.log"
                wall, rss, code = run_measured(cmd, env, log)
                if code:
                    print(f"{what} ({state}) exited {code}; its output ends:\n{log.read_text()[-3000:]}")
                totals.append({"command": what, "cache": state, "wall s": round(wall, 1), "peak RSS MB": rss,
                               "exit code": code})
                record = json.loads((REPO / "reports" / "latest-cpu.json").read_text())
                for stage, secs in record["timings"].items():
                    row = per_stage.setdefault((what, stage), {"command": what, "stage": stage})
                    row[f"{state} s"] = secs
                    row[f"{state} peak RSS MB"] = record.get("memory_mb", {}).get(stage, {}).get("peak_rss_mb")
    machine.write("stages" if quick else "stages-full",
                  f"Stage times and peak memory, cold and warm ({'main adapter only' if quick else 'every arm'})",
                  totals + list(per_stage.values()), [
        "Cold: a fresh LATENT_CITY_CACHE, so the GGUF is dequantized and the adapter trained; warm: the same "
        "command again on that cache. Exit code 0 = every test passed or failed as expected (strict xfail).",
        __doc__.split("\n\n")[2].replace("\n", " ")])
