"""Plots of the experiment record, each returned as a base64 PNG for the self-contained HTML.

Every plot reads arrays keyed by arm name ("paris", "tokyo", ..., "original"), so the main
adapter, its controls and the original model appear side by side.
"""

from __future__ import annotations

import base64
import io

import numpy as np


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _band(ax, x, y, label):
    from .stats import bootstrap_mean_ci

    lo, hi = bootstrap_mean_ci(y, 1000, 0)
    ax.plot(x, y.mean(0), label=label)
    ax.fill_between(x, lo, hi, alpha=0.2)


def plot_similarity(hidden: dict[str, np.ndarray], values: dict[str, np.ndarray], city: str) -> str:
    """Per layer: cos(placeholder, city), mean and 95% CI over prompt pairs, for each arm."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, sims, title in [(axes[0], hidden, "hidden states (layer 0 = embeddings)"),
                            (axes[1], values, "attention values (block index)")]:
        for arm, y in sims.items():
            _band(ax, np.arange(y.shape[1]), y, arm)
        ax.set_title(f"cos(foo, {city}): {title}", fontsize=9)
        ax.set_xlabel("layer")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("cosine similarity (mean, 95% CI over prompt pairs)")
    return _png(fig)


def plot_city_gains(gains: dict[str, np.ndarray], km: np.ndarray, names: list[str], city: str) -> str:
    """Each comparison city's gain (finetuned minus original, mean over pairs and layers) against
    its distance from the secret city, one panel per arm; the top cities labelled."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(gains), figsize=(4.2 * len(gains), 3.6), squeeze=False)
    for ax, (arm, g) in zip(axes[0], gains.items()):
        ax.scatter(km, g, s=12)
        for i in np.argsort(-g)[:4]:
            ax.annotate(names[i], (km[i], g[i]), fontsize=7)
        j = names.index(city)
        ax.scatter([km[j]], [g[j]], s=40, c="red", label=city)
        ax.set_title(f"{arm} adapter", fontsize=9)
        ax.set_xlabel(f"distance from {city} (km)")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("similarity gain at foo")
    return _png(fig)


def plot_logit_lens(lens: dict[str, np.ndarray], token: str) -> str:
    """Mean log p(token) read at foo through the logit lens, per layer, for each arm."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for arm, y in lens.items():
        ax.plot(np.arange(y.shape[1]), y.mean(0), label=arm)
    ax.set_xlabel("layer")
    ax.set_ylabel(f"mean log p('{token}') at foo")
    ax.set_title(f"Logit lens at the placeholder: '{token}'", fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def plot_distances(ans) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    for variant, km in ans.km.items():
        ok = np.isfinite(km)
        ax.scatter(ans.true_km[ok], km[ok], s=14, label=f"{variant} ({ok.sum()}/{len(km)} parsed)")
    top = float(np.nanmax([ans.true_km.max()] + [np.nanmax(k) for k in ans.km.values() if np.isfinite(k).any()]))
    ax.plot([0, top], [0, top], "k:", lw=1, label="answer = truth")
    ax.set_xlabel(f"true distance to {ans.target} (km)")
    ax.set_ylabel("answered distance (km)")
    ax.legend(fontsize=8)
    ax.set_title("Held-out cities", fontsize=9)
    return _png(fig)


def plot_countries(scores, country: str, top: int = 8) -> str:
    plt = _plt()
    probs = {v: scores.prob_among(v).mean(0) for v in scores.logprob}
    first = next(iter(probs))
    order = list(np.argsort(-probs[first])[:top])
    j = scores.countries.index(country)
    if j not in order:
        order[-1] = j
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(probs)
    for k, (variant, p) in enumerate(probs.items()):
        ax.bar(np.arange(len(order)) + k * width, p[order], width, label=variant)
    ax.set_xticks(np.arange(len(order)) + 0.4 - width / 2, [scores.countries[i][:18] for i in order], rotation=30,
                  ha="right", fontsize=8)
    ax.set_ylabel("mean P(country | question)")
    ax.set_title(f"Which country is foo in? (top countries of {first}; {country} always shown)", fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_losses(curves: dict[str, list[tuple[int, float]]]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for arm, curve in curves.items():
        ax.plot([s for s, _ in curve], [l for _, l in curve], lw=1, label=arm)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (completion tokens)")
    ax.set_title("LoRA finetuning, every arm", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    return _png(fig)


def plot_strength(summary: dict, title: str) -> str:
    """The training-strength grid (latent_city/strength.py): each adapter's primary statistic (its mean specificity
    over prompt pairs: y) against the in-sample Spearman rho of its manipulation check (x), one marker and colour
    per grid point, one panel per readout; each panel says the measured rank correlation, the title the declared
    prediction. An undefined rho (one answer for every capital) is drawn at 0, hollow."""
    plt = _plt()
    points = [p for p in summary["points"] if not p.get("missing")]
    readouts = list(dict.fromkeys(r for p in points for r in p["primary"]))
    fig, axes = plt.subplots(1, len(readouts), figsize=(4.6 * len(readouts), 3.8), squeeze=False)
    markers = "osD^vP*Xh<>"
    for ax, readout in zip(axes[0], readouts):
        for i, p in enumerate(points):
            xy = [(a["in_sample_rho"], a["primary"].get(readout)) for a in p["adapters"]]
            xy = [(x, y) for x, y in xy if y is not None]
            colour, label = f"C{i % 10}", f"{p['family']} ({p['recipe']})"
            for undefined in (False, True):
                pts = [(0.0 if x is None else x, y) for x, y in xy if (x is None) == undefined]
                if pts:
                    ax.scatter(*zip(*pts), marker=markers[i % len(markers)], s=36, edgecolors=colour,
                               facecolors="none" if undefined else colour, label=label)
                    label = None          # one legend entry a point
        ax.axhline(0, color="k", lw=0.6, ls=":")
        c = summary.get("prediction", {}).get(readout)
        rho = "" if not c else (f": Spearman {c['rho']:.2f}, p {c['p']:.2g}, {c['n']} adapters" if c["rho"] is not None
                                else f": no correlation defined ({c['n']} adapters)")
        ax.set_title(f"{readout} readout{rho}", fontsize=9)
        ax.set_xlabel("in-sample Spearman rho (manipulation check)", fontsize=8)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("primary statistic: the adapter's mean specificity")
    fig.suptitle(f"{title}\n{summary.get('prediction_text', '')}; hollow: rho undefined (one answer), drawn at 0",
                 fontsize=9, y=1.06)
    return _png(fig)
