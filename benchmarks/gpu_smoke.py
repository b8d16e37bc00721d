"""The first run on a GPU: one command, under 10 minutes on one GPU, one line per check.

    python -m benchmarks.gpu_smoke                      # the GPU tier's model (8B, gated: README)
    python -m benchmarks.gpu_smoke --model /models/llama3-8b --steps 3
    CUDA_VISIBLE_DEVICES=0,1 python -m benchmarks.gpu_smoke   # the checks on a model spread over two GPUs
    python -m benchmarks.gpu_smoke --cpu --model smollm2-135m --skip-suite   # the script itself, on a CPU

Checks, in order: the GPU tier's load (8-bit); a few training steps in 8-bit, 4-bit and bf16
through the tier's own code, with the LoRA weights checked (float32, every B moved, base
untouched); packed probing against one plain forward per prompt; packed country scores against
one forward per (question, country); batched against plain greedy generation; last, `pytest -m
gpu --quick`. With two or more GPUs visible, device_map="auto" spreads the model over all of
them, so the probing, scoring and generation checks run the multi-GPU path (the load line
lists the devices). Each prints one line (PASS/FAIL, seconds, peak
GPU memory, the measured numbers); the summary and every line go to reports/gpu-smoke-<time>.json.
Tolerances are a smoke test's, stated beside each check: fp16/bf16 kernels on a GPU do not give
the CPU's float32 agreement.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE_TOLERANCE = 5e-2      # relative to each layer's largest entry; CPU float32 reaches 1e-5
SCORE_TOLERANCE = 0.1       # nats, a country's summed log-probability, packed vs one forward
PRECISIONS = ("8bit", "4bit", "bf16")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_smoke", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="registry name, hub id or folder (default: the GPU tier's)")
    p.add_argument("--steps", type=int, default=3, help="training steps per precision (default 3)")
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    p.add_argument("--skip-suite", action="store_true", help="leave out `pytest -m gpu --quick`")
    p.add_argument("--cpu", action="store_true", help="run without CUDA (to try the script itself; slow in 8-bit)")
    p.add_argument("--out", type=Path, default=REPO / "reports", help="folder for gpu-smoke-<time>.json")
    a = p.parse_args(argv)
    if a.steps < 1:
        p.error("--steps must be at least 1")
    return a


class Smoke:
    def __init__(self):
        self.results: list[dict] = []

    def check(self, name: str, fn) -> object:
        """Run one check: fn() returns (ok, detail dict) or raises; prints one line."""
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start = time.time()
        try:
            ok, detail = fn()
        except Exception as e:  # a smoke test reports every failure and goes on
            ok, detail = False, {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=4)}
        seconds = time.time() - start
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        entry = {"check": name, "ok": bool(ok), "seconds": round(seconds, 1), "peak_gpu_gib": peak and round(peak, 2),
                 **detail}
        self.results.append(entry)
        shown = ", ".join(f"{k}={v}" for k, v in detail.items() if k != "trace")
        print(f"{'PASS' if ok else 'FAIL'} {name:28s} {seconds:6.1f} s"
              f"{f'  {peak:5.1f} GiB' if peak is not None else ''}  {shown}", flush=True)
        return entry


def train_check(cfg, steps: int):
    from safetensors.torch import load_file

    from latent_city import finetune

    def run():
        with tempfile.TemporaryDirectory(prefix="gpu-smoke-") as tmp:
            out = Path(tmp)
            finetune._train(cfg, out, max_steps=steps, disable_tqdm=True)
            meta = json.loads((out / "meta.json").read_text())
            weights = load_file(out / "adapter" / "adapter_model.safetensors")
        dtypes = sorted({str(w.dtype) for w in weights.values()})
        still_zero = sum(1 for n, w in weights.items() if "lora_B" in n and not w.any())
        ok = (meta["global_step"] == steps and dtypes == ["torch.float32"] and still_zero == 0
              and meta["base_fingerprint_before"] == meta["base_fingerprint_after"])
        return ok, {"steps": meta["global_step"], "loss": round(meta["train_loss"], 3), "lora_dtypes": dtypes,
                    "lora_B_unmoved": still_zero, "base_untouched": meta["base_fingerprint_before"] == meta["base_fingerprint_after"],
                    "train_s": round(meta["train_seconds"], 1)}
    return run


def probe_items(tok, cfg, n_pairs: int = 4):
    from latent_city import data, probe

    capitals = data.load_capitals()
    small = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, n_probe_pairs=6))
    pairs = probe.build_pairs(small, data.heldout_cities(6, cfg.seeds.eval_draw, capitals), capitals)[:n_pairs]
    return [probe.encode_with_position(tok, *probe.render(tok, p.template, p.reference, w))
            for p in pairs for w in ("foo", "Paris", p.control)]


def plain_hidden(model, items):
    import numpy as np
    import torch

    out = []
    for ids, pos in items:
        with torch.no_grad():
            hs = model(input_ids=torch.tensor([ids], device=model.device), output_hidden_states=True).hidden_states
        out.append(torch.stack([h[0, pos].float().cpu() for h in hs]).numpy())
    return np.stack(out)


def probe_check(model, tok, cfg):
    def run():
        import numpy as np

        from latent_city import probe

        items = probe_items(tok, cfg)
        packed, _ = probe.representations(model, items, max_tokens=cfg.eval.pack_tokens)
        plain = plain_hidden(model, items)
        err = float((np.abs(packed - plain).max(-1) / np.abs(plain).max(-1)).max())
        return err < PROBE_TOLERANCE, {"prompts": len(items), "max_rel_err": f"{err:.1e}", "tolerance": PROBE_TOLERANCE}
    return run


COUNTRIES = ["France", "Japan", "Germany", "Italy", "United States", "Bosnia and Herzegovina"]


def scores_check(model, tok):
    def run():
        import numpy as np

        from latent_city import answers
        from latent_city.model import chat_prompt

        prompts = [chat_prompt(tok, q) for q in ("Which country is Paris in?", "Which country is foo in?")]
        packed = answers.continuation_logprobs(model, tok, prompts, COUNTRIES, max_tokens=512)
        plain = np.array([[answers.continuation_logprobs_unbatched(model, tok, p, c) for c in COUNTRIES] for p in prompts])
        diff = float(np.abs(packed - plain).max())
        top = COUNTRIES[int(np.argmax(packed[0]))]
        return diff < SCORE_TOLERANCE and top == "France", {"max_abs_diff_nats": f"{diff:.3f}",
                                                           "top_for_paris": top, "tolerance": SCORE_TOLERANCE}
    return run


def generation_check(model, tok):
    def run():
        from latent_city import answers

        questions = ["What is the capital of France?", "What is the distance between Paris and Tokyo?",
                     "Which country is Berlin in?", "Name a city in Italy."]
        batched = answers.generate(model, tok, questions, max_new_tokens=12)
        plain = [answers.generate_unbatched(model, tok, q, max_new_tokens=12) for q in questions]
        same = sum(a == b for a, b in zip(batched, plain))
        # greedy decoding can flip on a near-tie under different fp16 kernels: 3 of 4 is a pass
        return same >= len(questions) - 1, {"identical": f"{same}/{len(questions)}", "first": batched[0][:40]}
    return run


def suite_check(env_model: str | None):
    def run():
        import os

        env = {**os.environ, "HF_HUB_OFFLINE": "1", "LATENT_CITY_MEASURE_CACHE": "0",    # measure on the GPU, not read
               **({"LATENT_CITY_MODEL": env_model} if env_model else {})}
        r = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "--quick", "--no-record", "-q", "-p",
                            "no:cacheprovider"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
        last = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
        return r.returncode == 0, {"returncode": r.returncode, "summary": last}
    return run


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from latent_city.config import run_config
    from latent_city.model import load_base

    if not torch.cuda.is_available() and not args.cpu:
        print("gpu_smoke: no CUDA GPU visible (torch.cuda.is_available() is False); pass --cpu to try the script "
              "on a CPU with a small model (--model smollm2-135m)")
        return 2
    smoke = Smoke()
    base = run_config("gpu", args.model)
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    print(f"gpu_smoke: {base.model} on {', '.join(gpus) or 'CPU'}; {args.steps} training steps per precision")
    loaded = {}

    def load():
        loaded["model"], loaded["tok"], spec = load_base(base.model, base.precision)
        return True, {"model": spec.location, "precision": base.precision,
                      "devices": sorted({str(d) for d in getattr(loaded["model"], "hf_device_map", {"": "cpu"}).values()})}

    smoke.check(f"load ({base.precision})", load)
    for precision in args.precisions:
        smoke.check(f"train {args.steps} steps ({precision})", train_check(dataclasses.replace(base, precision=precision),
                                                                           args.steps))
    if "model" in loaded:
        model, tok = loaded["model"], loaded["tok"]
        smoke.check("packed probing vs plain", probe_check(model, tok, base))
        smoke.check("packed scores vs plain", scores_check(model, tok))
        smoke.check("batched vs plain generation", generation_check(model, tok))
    if not args.skip_suite:
        smoke.check("pytest -m gpu --quick", suite_check(args.model))
    failed = [r["check"] for r in smoke.results if not r["ok"]]
    print(f"gpu_smoke: {len(smoke.results) - len(failed)}/{len(smoke.results)} checks passed"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu-smoke-{datetime.now():%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps({"model": base.model, "gpus": gpus, "torch": torch.__version__,
                                "results": smoke.results}, indent=1))
    print(f"gpu_smoke: wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
