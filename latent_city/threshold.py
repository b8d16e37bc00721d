"""The detection threshold on the real model (issue 16, section 5): how far must foo move towards Paris inside
the model before each primary test sees it, and where do the main arms sit on that scale?

The steered arms (controls.threshold; latent_city/steer.py) are the original model with the residual stream at foo
moved by a fraction a of the way to Paris's at one declared layer; a = 0 is the original model itself, whose effect
against itself is 0 for every claim. For each primary test (PRIMARY_KEYS) this module reports, from the claims a run
recorded (each steered arm against the original model, at the raw alpha, no Holm: each a asks its own question):
- the verdict and effect at each a;
- the smallest a at which the test is supported (None: at none);
- each main family's effect of the same claim in the same units (the mean over its adapters of that claim's effect
  against the original model), placed on the a scale by linear interpolation of the effect-vs-a curve through
  (0, 0): the first crossing, so the smallest a that reaches it (declared); outside the curve's range it is "beyond
  the largest a" (further than every steered arm, in their direction) or "below a = 0" (the other way).

The primary tests here: on an arm with no adapter the primary statistic is its per-pair form
(claims.PRIMARY_ON_POSITIVE_CONTROL, hidden_gain_specific) on each declared readout (probe.READOUTS), and the four
country claims, the non-circular read-out (steer.py: what the probe claims owe to construction).

    rows = from_claims(record.claims, lab.arms)      # list[Threshold]
    html = record_section(rec); line = finding(rec)  # what record.py shows
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from .arms import ORIGINAL, STEERED
from .claims import PRIMARY_ON_POSITIVE_CONTROL
from .probe import READOUTS

PRIMARY_ON_NO_ADAPTER = PRIMARY_ON_POSITIVE_CONTROL
COUNTRY_KEYS = ("country_probability", "country_prefix", "country_multiple_choice", "country_named")
PRIMARY_KEYS = tuple(PRIMARY_ON_NO_ADAPTER + ("" if r == "raw" else f"@{r}") for r in READOUTS) + COUNTRY_KEYS
BEYOND, BELOW, INSIDE, FLAT = "beyond the largest a", "below a = 0", "interpolated", "no scale"


@dataclass(frozen=True)
class Dose:
    fraction: float
    verdict: str                      # the claim's verdict; "baseline" at a = 0 (the original model itself)
    effect: float | None
    ci: tuple[float, float] | None = None
    p: float | None = None


@dataclass(frozen=True)
class Placement:
    """A main family's effect of one claim, on the a scale."""
    family: str
    adapters: int
    effect: float                     # the mean over its adapters, in the claim's units
    fraction: float | None            # the a it corresponds to (None: outside the curve)
    where: str                        # INSIDE, BEYOND, BELOW or FLAT

    def text(self) -> str:
        scale = f"a = {self.fraction:.3g}" if self.where == INSIDE else self.where
        return f"{self.effect:.3g} ({scale})"


@dataclass(frozen=True)
class Threshold:
    key: str
    effect_name: str
    doses: tuple[Dose, ...]           # a = 0 first, then every steered arm measured, by a
    smallest: float | None            # the smallest a at which the claim is supported
    mains: tuple[Placement, ...]


def smallest_supported(doses) -> float | None:
    """The smallest a whose verdict is supported (a larger a that is not supported is shown in the table)."""
    return min((d.fraction for d in doses if d.verdict == "supported"), default=None)


def on_the_a_scale(effect: float, fractions, effects) -> tuple[float | None, str]:
    """(a, INSIDE) where the piecewise-linear curve through (fractions, effects), sorted by a, first reaches
    `effect`; (None, BEYOND / BELOW) outside its range: BEYOND past its far end in the direction of its largest
    |effect|, BELOW the other way; (None, FLAT) when every effect of the curve is 0."""
    a, e = np.asarray(fractions, float), np.asarray(effects, float)
    for i in range(len(a) - 1):
        lo, hi = sorted((e[i], e[i + 1]))
        if lo <= effect <= hi:
            if e[i + 1] == e[i]:
                return float(a[i]), INSIDE
            return float(a[i] + (effect - e[i]) / (e[i + 1] - e[i]) * (a[i + 1] - a[i])), INSIDE
    far = e[np.argmax(np.abs(e))]
    if far == 0:
        return None, FLAT
    return None, BEYOND if np.sign(effect - far) == np.sign(far) else BELOW


def threshold(key: str, doses, mains: dict[str, list[float]], effect_name: str = "") -> Threshold:
    """One primary test's row: `doses` (Dose per steered arm; a = 0 is added), `mains` {family: its adapters'
    effects of the same claim}."""
    doses = (Dose(0.0, "baseline", 0.0),) + tuple(sorted((d for d in doses if d.fraction > 0), key=lambda d: d.fraction))
    curve = [d for d in doses if d.effect is not None]
    placed = []
    for family, effects in mains.items():
        effects = [x for x in effects if x is not None and np.isfinite(x)]
        if effects:
            m = float(np.mean(effects))
            a, where = on_the_a_scale(m, [d.fraction for d in curve], [d.effect for d in curve])
            placed.append(Placement(family, len(effects), m, a, where))
    return Threshold(key, effect_name, doses, smallest_supported(doses), tuple(placed))


# ---------------------------------------------------------------------------- from a run's recorded claims

def from_claims(claims: list[dict], tier_arms: dict) -> list[Threshold]:
    """The threshold of every primary test with at least one steered arm among `claims` (a record's claim dicts,
    ClaimResult.to_json), each against the original model; the main families (kind 'main' in `tier_arms`) placed
    from their adapters' claims of the same key against the original model."""
    steered = {n: a.steer for n, a in tier_arms.items() if a.kind == STEERED}
    mains: dict[str, list[str]] = {}
    for n, a in tier_arms.items():
        if a.kind == "main":
            mains.setdefault(a.family, []).append(n)
    index = {(c["key"], c["arms"][0]): c for c in claims if c["arms"][1] == ORIGINAL}
    out = []
    for key in PRIMARY_KEYS:
        found = [(a, index[(key, n)]) for n, a in steered.items() if (key, n) in index]
        if not found:
            continue
        doses = [Dose(a, c["verdict"], c["effect"], tuple(c["effect_ci"]) if c.get("effect_ci") else None, c.get("p"))
                 for a, c in found]
        effects = {f: [index[(key, n)]["effect"] for n in names if (key, n) in index] for f, names in mains.items()}
        out.append(threshold(key, doses, {f: e for f, e in effects.items() if e}, found[0][1]["effect_name"]))
    return out


def table(rows: list[Threshold]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: the primary test and its effect, the verdict (effect) at each a, the smallest a supported,
    and each main family's mean effect with its place on the a scale."""
    fractions = sorted({d.fraction for r in rows for d in r.doses})
    families = list(dict.fromkeys(p.family for r in rows for p in r.mains))
    head = ["primary test (effect)"] + [f"a = {a:g}" for a in fractions] + ["smallest a supported"] + \
           [f"{f}: mean effect (on the a scale)" for f in families]
    body = []
    for r in rows:
        at = {d.fraction: d for d in r.doses}
        main = {p.family: p for p in r.mains}
        body.append([f"{r.key} ({r.effect_name})"]
                    + [("0 (the original model)" if a == 0 else f"{at[a].verdict} ({_g(at[a].effect)})") if a in at else "-"
                       for a in fractions]
                    + ["none" if r.smallest is None else f"{r.smallest:g}"]
                    + [f"{main[f].text()}, {main[f].adapters} adapters" if f in main else "-" for f in families])
    return head, body


def _g(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def sentence(rows: list[Threshold], layer: int, city: str = "Paris") -> str | None:
    """The finding in one sentence: the smallest a per primary test, and the main families on the a scale."""
    if not rows:
        return None
    first = "; ".join(f"{r.key}: {'none' if r.smallest is None else f'a = {r.smallest:g}'}" for r in rows)
    mains = "; ".join(f"{r.key}: " + ", ".join(f"{p.family} {p.text()}" for p in r.mains) for r in rows if r.mains)
    largest = max(d.fraction for r in rows for d in r.doses)
    return (f"How far must foo move towards {city} before the instrument sees it? With the residual stream at foo moved "
            f"a fraction a of the way to {city}'s at hidden layer {layer} (a up to {largest:g}), each primary test is "
            f"first supported at: {first}." + (f" The main arms' effects on that scale: {mains}." if mains else "")
            + " The country answers are the non-circular read-out; the probe's cosine at the patched layer rises by "
              "construction.")


# ---------------------------------------------------------------------------- what record.py calls

def record_section(rec) -> str:
    """The record's HTML table of the detection threshold (rec: record.Record, read from rec.claims and its lab's
    arms; '(not run)' when no steered arm's claim was recorded)."""
    lab = getattr(rec, "lab", None)
    rows = from_claims(rec.claims, lab.arms) if lab is not None else []
    if not rows:
        return "<p>(not run)</p>"
    head, body = table(rows)
    return ("<table id='detection-threshold' border='1' style='border-collapse:collapse;font-size:12px'><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body) + "</table>")


def finding(rec) -> str | None:
    """The record's sentence on the detection threshold (None when it was not run)."""
    lab = getattr(rec, "lab", None)
    if lab is None:
        return None
    city = lab.cfg.data.secret_city
    return sentence(from_claims(rec.claims, lab.arms), lab.cfg.controls.threshold.layer, city)
