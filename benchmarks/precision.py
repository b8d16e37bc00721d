"""Evaluation at its floor, and bf16 against fp32.

    python -m benchmarks precision    # about 12 minutes on 2 cores; trains nothing (cached arms only)

The floor: every measurement of one cached arm, made by one 1-thread process as an evaluation
worker makes it, in fp32 and then with the model cast to bf16. The work of each is counted
from the forward passes it actually makes (hooks on the decoder and the LM head: tokens through
the body, attention score entries, rows through the head), turned into GFLOP and divided by the
time: as a share of this machine's 1-thread matmul peak, measured in the same run, it says how
far each measurement is from the floor its work sets.

The verdicts: the claims of ARMS (the main arms of both recipes, a learned negative control,
both kinds of positive control and their baselines) computed from bf16 measurements (made in
2 one-thread worker processes, never written to the measurement cache) against the same claims
from fp32 measurements at this code (the measurement cache, or measured if missing): for every
claim, the largest change of its statistic, effect and p, and each verdict that changes. The
rule's own verdict is compared (Lab.secondary, the manipulation check, the primary test before
conditions.judge): a gate is a verdict of another claim, compared in its own row.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from . import machine
from .eval_workers import PeakMemory, _lscpu_model, differences

FLOOR_ARM = "paris"
GENERATION = ("distances", "samples", "task")      # the measurements that generate text (answers.generate)
ARMS = ("paris", "paris-s43", "paris-s44", "paris-qv10", "paris-qv10-s43", "paris-qv10-s44", "tokyo-qv10",
        "alias-paris", "trained-alias-paris-qv10")


class Work:
    """Counts what the forward passes of a model compute, by hooks on its decoder and LM head:
    linear GFLOP (2 x body parameters x tokens), attention GFLOP (QK and AV: 4 x layers x width x
    query-key entries, padding and masked entries included, as a dense mask computes them) and head
    GFLOP (2 x width x vocabulary x rows through it). LoRA's own matmuls (rank 8) are left out."""

    def __init__(self, model):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        c = base.config
        self.layers, self.d, self.vocab = c.num_hidden_layers, c.hidden_size, c.vocab_size
        kv = c.num_key_value_heads * (c.hidden_size // c.num_attention_heads)
        self.body = self.layers * (2 * self.d * self.d + 2 * self.d * kv + 3 * self.d * c.intermediate_size)
        self.tokens = self.entries = self.head_rows = 0
        self.handles = [base.model.register_forward_pre_hook(self._decoder, with_kwargs=True),
                        base.lm_head.register_forward_pre_hook(self._head)]

    def _decoder(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        shape = ids.shape if ids is not None else kwargs["inputs_embeds"].shape[:2]
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        past = cache.get_seq_length() if cache is not None else 0
        self.tokens += shape[0] * shape[1]
        self.entries += shape[0] * shape[1] * (past + shape[1])

    def _head(self, module, args):
        self.head_rows += args[0].numel() // self.d

    def gflop(self) -> dict:
        return {"linear": 2 * self.body * self.tokens / 1e9, "attention": 4 * self.layers * self.d * self.entries / 1e9,
                "head": 2 * self.d * self.vocab * self.head_rows / 1e9}

    def reset(self):
        self.tokens = self.entries = self.head_rows = 0

    def remove(self):
        for h in self.handles:
            h.remove()


def _as_bf16(lab_cls):
    """Lab._load casting the model (base and every adapter loaded so far) to bf16, and no writes to the
    measurement cache: a bf16 measurement must never stand in for an fp32 one under the same key."""
    import torch

    load = lab_cls._load

    def _load(self, name):
        model = load(self, name)
        if any(p.dtype != torch.bfloat16 for p in model.parameters()):     # an adapter loaded since
            model.to(torch.bfloat16)
        return model

    lab_cls._load = _load
    lab_cls._write_cached = lambda self, what, arm, value: None


def _start_bf16_worker(cfg, adapters, threads):
    from latent_city import lab

    _as_bf16(lab.Lab)
    lab._start_eval_worker(cfg, adapters, threads)


def _floor(cfg, arm: str) -> tuple[list[dict], dict]:
    """Every measurement of `arm` in this process, 1 thread, fp32 then bf16: time, GFLOP, share of the peak."""
    import torch

    from latent_city.lab import Lab

    torch.set_num_threads(1)
    peak = {"fp32": machine.matmul_peak(torch.float32), "bf16": machine.matmul_peak(torch.bfloat16)}
    lab = Lab(cfg, log=lambda line: None)
    lab.read_measurements = False
    lab._write_cached = lambda what, a, value: None
    measurements = lab.measurements(arm)
    model = lab._load(arm)
    work = Work(model)
    rows, values = [], {}
    for dtype in ("fp32", "bf16"):
        if dtype == "bf16":
            model.to(torch.bfloat16)
            lab._measured.clear()
        for what in measurements:
            work.reset()
            start = time.perf_counter()
            values[(dtype, what)] = lab.measure(what, arm)
            seconds = time.perf_counter() - start
            g = work.gflop()
            total = sum(g.values())
            rows.append({"measurement": what, "dtype": dtype, "s (1 thread)": round(seconds, 2),
                         "tokens": work.tokens, "head rows": work.head_rows,
                         **{f"{k} GFLOP": round(v) for k, v in g.items()},
                         "GFLOP/s": round(total / seconds, 1), "share of 1-thread peak": round(total / seconds / peak[dtype], 2),
                         "floor s (at the peak)": round(total / peak[dtype], 2)})
    work.remove()
    diffs = {}
    for what in measurements:
        differences(values[("bf16", what)], values[("fp32", what)], what, diffs)
    return rows, {"peak_1_thread_gflops": {k: round(v) for k, v in peak.items()}, "diffs": diffs}


def _claims(lab, names: list[str]) -> dict:
    """{(what, arm or family[, readout]): ClaimResult} before conditions.judge: every claim each arm runs against
    its baseline (Lab.secondary), its manipulation check, and the primary test of each trained family per readout."""
    from latent_city import claims, probe
    from latent_city.arms import ORIGINAL, family_members

    out = {}
    for arm in names:
        a = lab.arms[arm]
        for key, r in lab.secondary(arm).items():
            out[(key, arm)] = r
        if a.trained:
            out[("task_learned", arm)] = lab.manipulation(arm)
    for family in dict.fromkeys(lab.arms[n].family for n in names if lab.arms[n].trained):
        members = [m for m in family_members(lab.arms, family) if m in names]
        if len(members) < 3:
            continue
        x = dataclasses.replace(lab.claim_inputs(("probe",), members[0], ORIGINAL),
                                probe={v: lab.measure("probe", v) for v in [*members, ORIGINAL]})
        for readout in probe.READOUTS:
            out[(f"{claims.PRIMARY}@{readout}", f"{family} ({len(members)} adapters)")] = \
                claims.foo_became_city(x, members, readout=readout)
    return out


def bench_precision() -> None:
    import torch

    from latent_city import finetune
    from latent_city.arms import MAIN, ORIGINAL, trained
    from latent_city.config import run_config
    from latent_city.lab import MEASUREMENTS, Lab, measure_side_by_side

    cfg = run_config("cpu")
    threads = torch.get_num_threads()
    fp = Lab(cfg, log=print)
    names = [n for n in ARMS if n in fp.arms and (not fp.arms[n].trained or finetune.is_cached(fp.arms[n].cfg))]
    if FLOOR_ARM not in names:
        raise SystemExit(f"benchmarks precision: needs the cached adapter {FLOOR_ARM}; this benchmark trains none")

    floor_rows, floor = _floor(cfg, FLOOR_ARM)
    torch.set_num_threads(threads)

    os.environ.setdefault("LATENT_CITY_EVAL_WORKERS", "2")
    fp.measure_all(names, MEASUREMENTS)      # the cache's fp32 measurements at this code (measured if missing)
    bf = Lab(cfg, log=print)
    bf.read_measurements = False        # every measurement it reads is one its workers made in bf16
    variants = list(dict.fromkeys([*names, *(bf.baseline(n) for n in names), ORIGINAL]))
    jobs = [(v, bf.measurements(v)) for v in variants]
    adapters = {n: bf.adapter(n) for n in trained(bf.arms, dict.fromkeys([MAIN, *variants])) if n != ORIGINAL}
    workers = 2

    def keep(arm: str, results: dict) -> None:
        for w, (value, _) in results.items():
            bf._measured[(w, arm)] = value

    start = time.perf_counter()
    with PeakMemory() as mem:
        measure_side_by_side(cfg, adapters, jobs, workers, keep, start_worker=_start_bf16_worker)
    bf16_s = time.perf_counter() - start
    bf._load = lambda name: (_ for _ in ()).throw(RuntimeError("the bf16 lab measures in workers only"))

    diffs: dict = {}
    for what, arm in bf._measured:
        differences(bf._measured[(what, arm)], fp.measure(what, arm), what, diffs)
    a, b = _claims(fp, names), _claims(bf, names)
    rows, flips = [], []
    for key in dict.fromkeys(k for k, _ in a):
        pairs = [(arm, a[(k, arm)], b[(k, arm)]) for k, arm in a if k == key]
        changed = [f"{arm}: {x.verdict} -> {y.verdict} (p {x.p_decision:.3g} -> {y.p_decision:.3g}, statistic "
                   f"{x.statistic:.4g} -> {y.statistic:.4g})" for arm, x, y in pairs if x.verdict != y.verdict]
        flips += [f"{key}, {c}" for c in changed]
        rows.append({"claim": key, "results": len(pairs),
                     "largest change of statistic": _largest([(x.statistic, y.statistic) for _, x, y in pairs]),
                     "largest change of effect": _largest([(x.effect, y.effect) for _, x, y in pairs]),
                     "largest change of p": _largest([(x.p_decision, y.p_decision) for _, x, y in pairs]),
                     "verdicts changed": f"{len(changed)} of {len(pairs)}"})
    write(names, floor_rows, floor, diffs, rows, flips, bf16_s, len(jobs), workers, mem.largest, mem.tree)


def write(names, floor_rows, floor, diffs, claim_rows, flips, bf16_s, n_models, workers, largest, tree) -> None:
    """reports/benchmarks/precision.md and .json: the floor table, then the measurements' and the claims'."""
    n_results = sum(int(r["verdicts changed"].split()[2]) for r in claim_rows)
    measurement_rows = [{"measurement": path, "largest abs(bf16 - fp32)" if isinstance(d, float) else "differing / total":
                         f"{d:.3g}" if isinstance(d, float) else f"{d[0]} / {d[1]}"} for path, d in diffs.items()]
    total = {dt: sum(r["s (1 thread)"] for r in floor_rows if r["dtype"] == dt) for dt in ("fp32", "bf16")}
    at_peak = {dt: sum(r["floor s (at the peak)"] for r in floor_rows if r["dtype"] == dt) for dt in ("fp32", "bf16")}
    peak = floor["peak_1_thread_gflops"]
    measured = list(dict.fromkeys(r["measurement"] for r in floor_rows))
    forward, generation = [w for w in measured if w not in GENERATION], [w for w in measured if w in GENERATION]
    notes = [
        f"**The floor.** {FLOOR_ARM}'s {len(floor_rows) // 2} measurements took {total['fp32']:.1f} s in fp32 and "
        f"{total['bf16']:.1f} s in bf16 in one 1-thread process ({total['fp32'] / total['bf16']:.2f}x). Their counted work "
        f"at this machine's 1-thread matmul peak (fp32 {peak['fp32']} GFLOP/s, bf16 {peak['bf16']} GFLOP/s, measured in "
        f"this run) takes {at_peak['fp32']:.1f} s in fp32 and {at_peak['bf16']:.1f} s in bf16: with two such workers "
        f"side by side (Lab.measure_all), a model costs at least {at_peak['fp32'] / 2:.1f} s of wall time in fp32 and "
        f"{at_peak['bf16'] / 2:.1f} s in bf16, against the 15 s per arm that issue 19 asks. The forward passes "
        f"({', '.join(forward)}) run at {_share_range(floor_rows, forward)} of the fp32 peak; generation "
        f"({', '.join(generation)}) at {_share_range(floor_rows, generation)}. In bf16 vs fp32: "
        + ", ".join(f"{w} {_s(floor_rows, w, 'fp32') / _s(floor_rows, w, 'bf16'):.2f}x" for w in forward + generation)
        + " (above 1: faster in bf16).",
        f"**The verdicts.** {sum(r['results'] for r in claim_rows)} claim results on {len(names)} arms "
        f"({', '.join(names)}) and their baselines: {len(flips)} of {n_results} verdicts change under bf16 measurements. "
        f"bf16 measuring took {bf16_s:.0f} s for {n_models} models in {workers} one-thread workers (largest process "
        f"{largest // 2**20} MB, all {tree // 2**20} MB).",
        *(["Verdicts that change: " + "; ".join(flips)] if flips else []),
        "### Measurements: the largest |bf16 - fp32| over every model of the verdict comparison (floats), or how many "
        "entries differ (greedy and sampled texts, ranks, words)\n\n" + machine.table(measurement_rows),
        "### Claims: per claim, over the arms above, the largest change of its statistic, effect and decision p, and "
        "the verdicts that change\n\n" + machine.table(claim_rows),
        f"CPU (lscpu model name): {_lscpu_model()}.",
        " ".join(" ".join(p.split()) for p in __doc__.split("\n\n")[2:]),
    ]
    machine.write("precision", "Evaluation at its floor, and bf16 against fp32", floor_rows, notes,
                  {"floor": floor, "flips": flips, "arms": list(names), "bf16_seconds": bf16_s, "claims": claim_rows,
                   "measurements": measurement_rows})


def _s(rows, what: str, dtype: str) -> float:
    return next(r["s (1 thread)"] for r in rows if r["measurement"] == what and r["dtype"] == dtype)


def _share_range(rows, whats) -> str:
    shares = [r["share of 1-thread peak"] for r in rows if r["measurement"] in whats and r["dtype"] == "fp32"]
    return f"{min(shares):.0%}-{max(shares):.0%}"


def _largest(pairs) -> str:
    d = [abs(x - y) for x, y in pairs if x is not None and y is not None and np.isfinite(x) and np.isfinite(y)]
    return f"{max(d):.3g}" if d else "-"

