"""Benchmarks of latent_city on this machine; each prints a table and writes it, with the
machine and its measured matmul peaks, to reports/benchmarks/<name>.md and .json.

    python -m benchmarks                 # train noise probe country stages (about 30 minutes on 2 cores)
    python -m benchmarks train probe     # some of them; stages-full times every arm (about an hour)
    python -m benchmarks full            # the README's test command (the CI subset) once, cold: time, memory, adapters/hour, eval per arm
    python -m benchmarks eval            # per-arm evaluation, in this process vs worker processes (about 5 minutes)
    python -m benchmarks precision       # evaluation's floor, and bf16 against fp32 down to the verdicts (about 12 minutes)
"""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from . import eval_workers, evaluation, full, precision, stages, train  # noqa: E402

BENCHMARKS = {"train": train.bench_train, "noise": train.bench_noise, "probe": evaluation.bench_probe,
              "country": evaluation.bench_country, "stages": stages.bench_stages,
              "stages-full": lambda: stages.bench_stages(quick=False), "full": full.bench_full,
              "eval": eval_workers.bench_eval, "precision": precision.bench_precision}
DEFAULT = ["train", "noise", "probe", "country", "stages"]


def main(argv: list[str]) -> int:
    unknown = [a for a in argv if a not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {unknown}; choose from {' '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in argv or DEFAULT:
        BENCHMARKS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
