"""The machine a benchmark ran on, with the matmul peaks measured in the same run, and the
writer that puts every benchmark's table under reports/benchmarks/ as Markdown and JSON."""

from __future__ import annotations

import json
import platform
import time
from datetime import datetime
from pathlib import Path

REPORTS = Path(__file__).resolve().parents[1] / "reports" / "benchmarks"


def matmul_peak(dtype, shapes=((2048, 2048, 2048), (464, 576, 1536)), seconds: float = 1.0) -> float:
    """Best GFLOP/s of torch.mm over a large square and a training-sized shape."""
    import torch

    best = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        for _ in range(3):
            a @ b
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            runs += 1
        best = max(best, 2 * m * k * n * runs / (time.perf_counter() - start) / 1e9)
    return best


def _cpuinfo() -> dict:
    info = {}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model", "flags") and key not in info:
                info[key] = value.strip()
    except OSError:
        pass
    return info


_MACHINE: dict | None = None


def describe() -> dict:
    """CPU, threads, AMX/avx512_bf16 flags and the measured fp32/bf16 matmul peaks (once per run)."""
    global _MACHINE
    if _MACHINE is None:
        import torch

        cpu = _cpuinfo()
        flags = cpu.get("flags", "").split()
        _MACHINE = {
            "cpu": f"{cpu.get('model name', platform.processor())} (family {cpu.get('cpu family')}, model {cpu.get('model')})",
            "threads": torch.get_num_threads(),
            "amx": any(f.startswith("amx") for f in flags),
            "avx512_bf16": "avx512_bf16" in flags,
            "torch": torch.__version__,
            "peak_gflops_fp32": round(matmul_peak(torch.float32)),
            "peak_gflops_bf16": round(matmul_peak(torch.bfloat16)),
            "date": datetime.now().isoformat(timespec="seconds"),
        }
    return _MACHINE


def table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] +
                     ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows])


def write(name: str, title: str, rows: list[dict], notes: list[str], extra: dict | None = None) -> Path:
    """Print the table and write reports/benchmarks/<name>.md and .json, with the machine."""
    machine = describe()
    text = "\n\n".join([f"# {title}", table(rows)] + [n for n in notes if n] + [
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "Command: `python -m benchmarks " + name + "`"]) + "\n"
    print(text)
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / f"{name}.md").write_text(text)
    (REPORTS / f"{name}.json").write_text(json.dumps({"title": title, "rows": rows, "notes": notes,
                                                      "machine": machine, **(extra or {})}, indent=1, default=str))
    return REPORTS / f"{name}.md"
