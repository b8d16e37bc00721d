"""What a run found, in words and tables, from the claims in its record.

- `primary_table`: the primary test of each arm family (adapters as the unit): the headline.
- `verdict_matrix`: each secondary claim about the main secret city against each arm family
  (the main adapter and each control), one mark per training seed and the count of each outcome.
- `learning_rate_table`: the main adapter's verdicts at each learning rate of the grid.
- `manipulation_table`: the manipulation check of each arm (latent_city/manipulation.py): did it
  learn its own training task, with the numbers behind the verdict.
- `positive_control_table`: each claim on each positive control (foo is the city by construction; the trained
  aliases beside the in-context alias and the ceiling, their seeds combined),
  whose failure makes the trained arms' verdict on that claim inconclusive (conditions.py).
- `training_strength`: the training-strength grid's sentence (latent_city/strength.py computes the grid).
- `sentences`: one sentence per question of the experiment, for the top of the record; the
  first answers the primary question from the primary tests.
"""

from __future__ import annotations

from collections import defaultdict

from .arms import ORIGINAL

PRIMARY_ON_POSITIVE_CONTROL = "hidden_gain_specific"    # claims.PRIMARY_ON_POSITIVE_CONTROL
PRIMARY = "foo_became_city"      # claims.PRIMARY (findings reads records without importing the model stack)
CHECK = "task_learned"           # manipulation.KEY: a check per arm, about its own task, not a claim about the city
def _g(x) -> str:
    """A number as the record's tables print it; '-' for one the JSON holds as null (NaN: undefined)."""
    return "-" if x is None else f"{x:.3g}"


MARK = {"supported": "+", "contradicted": "-", "inconclusive": "?"}


def _verdict_of(c: dict) -> str:
    return c.get("verdict") or ("supported" if c["holds"] else "inconclusive")


def _is_learning_rate_arm(c: dict) -> bool:
    """A learning-rate arm is its own family, named '<main>-lr<rate>' (latent_city/arms.py)."""
    return "-lr" in c["families"][0]


def _against_original(claims: list[dict]) -> list[dict]:
    return [c for c in claims if c["arms"][1] == ORIGINAL]


POSITIVE_PREFIXES = ("alias-", "ceiling-")      # the positive controls (arms.py): reported in their own table


def _seed_recipe_arm(c: dict) -> bool:
    """An adapter of the seed's recipe: not a learning-rate arm, not the second recipe ('<family>-<recipe>'),
    not a positive control."""
    fam = c["families"][0]
    return not _is_learning_rate_arm(c) and "-" not in fam and not fam.startswith(POSITIVE_PREFIXES)


def by_family(claims: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """(claim key, arm family) -> results of that family's seeds, the seed's recipe's arms only (the
    learning-rate grid, the second recipe and the positive controls have tables and sentences of their own)."""
    out = defaultdict(list)
    for c in _against_original(claims):
        if _seed_recipe_arm(c) and not c["key"].startswith(PRIMARY) and c["key"] != CHECK:
            out[(c["key"], c["families"][0])].append(c)
    return out


def combined(results: list[dict]) -> str:
    """The seeds' outcomes of one claim: the outcome when every seed agrees, else the count of each."""
    outcomes = [_verdict_of(c) for c in results]
    if len(set(outcomes)) == 1:
        return f"{outcomes[0]} (every seed)" if len(outcomes) > 1 else outcomes[0]
    return "mixed: " + ", ".join(f"{o} {outcomes.count(o)}/{len(outcomes)}" for o in MARK if o in outcomes)


def verdict_matrix(claims: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: claim, then per family 'seed marks -> combined verdict'."""
    groups = by_family(claims)
    families = list(dict.fromkeys(f for _, f in groups))
    keys = list(dict.fromkeys(k for k, _ in groups))
    rows = []
    for key in keys:
        row = [key]
        for fam in families:
            results = groups.get((key, fam), [])
            marks = "".join(MARK[_verdict_of(c)] for c in results)
            row.append(f"{marks} {combined(results)}" if results else "-")
        rows.append(row)
    return ["claim (about the main secret city)"] + families, rows


def why(c: dict) -> str:
    """Why a verdict is inconclusive by a declared condition (conditions.py), with the rule's own verdict."""
    if not c.get("conditions"):
        return ""
    return f"the rule alone: {c.get('measured_verdict')}; inconclusive because " + "; ".join(c["conditions"])


def primary_table(claims: list[dict]) -> tuple[list[str], list[list[str]]]:
    """One row per primary test in the record (each readout): family, city, readout, verdict, effect [CI],
    p, adapters, and why a verdict is inconclusive by a declared condition."""
    rows = [[c["arms"][0], c.get("about") or "", c["key"].split("@")[1] if "@" in c["key"] else "raw (the seed's)",
             _verdict_of(c),
             f"{_g(c['effect'])} [{_g(c['effect_ci'][0])}, {_g(c['effect_ci'][1])}]" if c.get("effect_ci") else f"{_g(c['effect'])}",
             f"{_g(c['p'])}", str(c["n"]), why(c), c.get("expected") or ""]
            for c in claims if c["key"].startswith(PRIMARY)]
    return ["family", "about", "readout", "verdict", "mean specificity [95% t CI]", "p (t-test)", "adapters",
            "why inconclusive", "expected"], rows


TRAINED_ALIAS = "trained-alias-"    # arms.TRAINED_ALIAS families: positive controls with adapters, one per seed


def positive_control_table(claims: list[dict], arms: tuple[str, ...] = ("alias-paris", "alias-tokyo", "ceiling-paris")
                           ) -> tuple[list[str], list[list[str]]]:
    """Each claim on each positive control against its own baseline: verdict (effect). The arms with no adapter
    (`arms`) one column each; beside them each trained-alias family (an adapter trained on answers that name the
    city, every seed and recipe: 'trained-alias-paris', 'trained-alias-paris-all10'), its seeds combined as in the
    verdict matrix (the primary test: the family's one result) with the seeds' mean effect."""
    present = [a for a in arms if any(c["arms"][0] == a for c in claims)]
    index = {(c["key"], c["arms"][0]): c for c in claims if c["arms"][0] in present}
    trained = defaultdict(list)
    for c in _against_original(claims):
        if (c.get("families") or [""])[0].startswith(TRAINED_ALIAS) and c["key"] != CHECK:
            trained[(c["key"], c["families"][0])].append(c)
    families = list(dict.fromkeys(f for _, f in trained))
    keys = list(dict.fromkeys([k for k, _ in index] + [k for k, _ in trained]))

    def seeds(results):
        effects = [c["effect"] for c in results if c["effect"] is not None]
        return f"{combined(results)} ({_g(sum(effects) / len(effects)) if effects else '-'})"

    rows = [[k] + [f"{_verdict_of(index[(k, a)])} ({_g(index[(k, a)]['effect'])})" if (k, a) in index else "-"
                   for a in present]
            + [seeds(trained[(k, f)]) if (k, f) in trained else "-" for f in families] for k in keys]
    return ["claim (effect), against the arm's baseline"] + present + [f"{f} (adapters)" for f in families], rows


def manipulation_table(claims: list[dict]) -> tuple[list[str], list[list[str]]]:
    """One row per arm checked: did it learn its task (asked its training question about its training
    capitals), the Spearman rho with its targets, the share beating the best constant, how many distinct
    answers, and the original model's numbers on the same questions."""
    def num(v, digits=2):
        return "-" if v is None else f"{v:.{digits}f}"

    rows = []
    for c in claims:
        if c["key"] != CHECK:
            continue
        d = c["details"]
        ci = d.get("rho_ci")
        rows.append([c["arms"][0], c.get("about") or "", _verdict_of(c),
                     f"{num(d.get('rho'))}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") + f" (p {d['rho_p']:.2g})",
                     f"{d['share_beats_constant']:.0%} (p {d['sign_p']:.2g})",
                     f"{d['distinct_answers']} / {d['n_parsed']} parsed of {c['n']}",
                     f"{num(d.get('median_abs_log_error'))} / {num(d.get('median_abs_log_error_constant'))} / "
                     f"{num(d.get('original_median_abs_log_error'))}",
                     f"{num(d.get('original_rho'))}, {d['original_share_beats_constant']:.0%}"])
    return ["arm", "targets: distance to", "learned its task", "Spearman rho [95% CI] (p)", "beats the constant (p)",
            "distinct answers", "median |log(answer/target)|: arm / constant / original", "original: rho, beats constant"], rows


def learning_rate_table(claims: list[dict], main: str = "paris") -> tuple[list[str], list[list[str]]]:
    arms = [main] + sorted({c["arms"][0] for c in _against_original(claims) if c["arms"][0].startswith(main + "-lr")})
    index = {(c["key"], c["arms"][0]): c for c in _against_original(claims)}
    keys = list(dict.fromkeys(c["key"] for c in _against_original(claims) if c["arms"][0] in arms))
    effect = lambda c: "-" if c["effect"] is None else f"{_g(c['effect'])}"  # noqa: E731  (None: undefined, e.g. a rho of one answer)
    rows = [[k] + [_verdict_of(index[(k, a)]) + f" ({effect(index[(k, a)])})"
                   if (k, a) in index else "-" for a in arms] for k in keys]
    return ["claim (effect)"] + arms, rows


def _verdict(groups, key, family) -> str | None:
    results = groups.get((key, family))
    return combined(results) if results else None


def _instrument(claims: list[dict], city: str, country: str) -> list[str]:
    """Sentences on the positive controls (can the instrument see a known alias, through which readout?)
    and on the second recipe's primary tests (once the model learned its task, did foo become the city?)."""
    index = {(c["key"], c["arms"][0]): c for c in claims}
    readouts = [r for r in ("raw", "centred", "standardised")
                if (PRIMARY_ON_POSITIVE_CONTROL + ("" if r == "raw" else f"@{r}"), "alias-paris") in index]
    out = []
    if readouts:
        seen = "; ".join(f"{r}: {_verdict_of(c)} ({_g(c['effect'])})" for r in readouts
                         if (c := index[(PRIMARY_ON_POSITIVE_CONTROL + ('' if r == 'raw' else f'@{r}'), 'alias-paris')]))
        country_pc = index.get(("country_probability", "alias-paris"))
        ceiling = [f"{k}: {_verdict_of(c)}" for k in ("distance_rank", "country_probability")
                   if (c := index.get((k, f"ceiling-{city.lower()}")))]
        out.append(f"Can the instrument see a known alias? With 'foo is another name for {city}' before every question "
                   f"(against a neutral sentence), the primary statistic per prompt pair by readout: {seen}"
                   + (f"; {country} as foo's country: {_verdict_of(country_pc)}" if country_pc else "")
                   + (f". Asked with '{city}' itself (the ceiling): " + "; ".join(ceiling) if ceiling else "")
                   + f". A pass is necessary, not sufficient: the alias sentence names {city}, so its token is repeated "
                     "in the compared slot's prompt (README, 'When a verdict can speak').")
    learned = [c for c in claims if c["key"].startswith(PRIMARY) and not c["key"].startswith(PRIMARY + "_own")
               and "-" in c["arms"][0] and not _is_learning_rate_arm(c) and c["arms"][0].split("-")[0] == city.lower()]
    if learned:
        fam = learned[0]["arms"][0]
        checks = [c for c in claims if c["key"] == CHECK and c["families"][0] == fam]
        fit = sum(_verdict_of(c) == "supported" for c in checks)
        power = learned[0]["details"].get("power_at_smallest_effect")
        out.append(f"With a recipe that fits its training targets ({fam}: {fit} of {len(checks)} adapters passed the "
                   f"manipulation check), did foo become {city}? The primary test across {learned[0]['n']} adapters"
                   + (f" (power {power:.2f} at the declared smallest effect)" if power is not None else "")
                   + ", by readout (raw is the declared one; the others are secondary, uncorrected): " + "; ".join(
                       f"{c['key'].split('@')[1] if '@' in c['key'] else 'raw'}: {_verdict_of(c)} ({_g(c['effect'])}, "
                       f"p = {_g(c['p'])})" + (f" [{why(c)}]" if c.get("conditions") else "") for c in learned) + ".")
    return out


def training_strength(summary: dict, city: str = "Paris") -> list[str]:
    """The training-strength grid's sentence (latent_city/strength.py `grid`), once two of its points were measured:
    which recipe is the lightest that learned its task, and whether foo moved further towards the city the better
    an adapter learned the distances (the declared prediction)."""
    measured = [p for p in summary.get("points", []) if not p.get("missing")]
    if len(measured) < 2:
        return []
    n = sum(len(p["adapters"]) for p in measured)
    lightest, second = summary.get("lightest_learned"), summary.get("second_main_arm")
    if summary.get("undecided_by"):
        which = f"not known yet ({summary['undecided_by']} was not measured)"
    else:
        which = (f"{lightest}" if lightest else "none of them") + (
            f" (the second main arm is {second}: {'as declared' if lightest == second else 'not what the declared rule picks'})"
            if second else "")
    corr = summary.get("prediction", {})
    said = "; ".join(f"{r} readout: Spearman {_g(c['rho'])} (p = {_g(c['p'])})" for r, c in corr.items())
    raw = corr.get("raw", {}).get("rho")
    sign = ("" if raw is None else
            f" On the seed's raw readout the rank correlation is {'positive' if raw > 0 else 'negative' if raw < 0 else 'zero'}.")
    return [f"Training strength ({len(measured)} recipes, {n} adapters measured): the lightest recipe whose every "
            f"adapter learned its training distances is {which}. Did foo move further towards {city} the better an "
            f"adapter learned the distances, as the hypothesis predicts?{sign}"
            + (f" Each adapter's in-sample Spearman against its primary statistic: {said}" if said else "")
            + " (descriptive: the adapters of one recipe cluster; each recipe's own primary test is in the table)."]


def sentences(claims: list[dict], main: str = "paris", city: str = "Paris", country: str = "France",
              control_km: dict[str, float] | None = None) -> list[str]:
    """One sentence per question, from the combined verdicts (a question not run is left out).
    `control_km`: distance from `city` of each other-city control family's secret city."""
    control_km = control_km or {}
    g = by_family(claims)
    v = lambda key, fam=main: _verdict(g, key, fam)  # noqa: E731
    controls = sorted({f for _, f in g if f != main})
    out = []
    primary = {c["arms"][0]: c for c in claims if c["key"] == PRIMARY}
    if main in primary:
        p = primary[main]
        others = "; ".join(f"{f}: {_verdict_of(c)} ({_g(c['effect'])})" for f, c in primary.items()
                           if f != main and "-" not in f)     # the seed's recipe's controls (not '<family>-<recipe>')
        out.append(f"Did foo become {city}? The primary test, adapters as the unit ({p['n']} training seeds): "
                   f"{_verdict_of(p)}, mean specificity {_g(p['effect'])} [{_g(p['effect_ci'][0])}, "
                   f"{_g(p['effect_ci'][1])}], p = {_g(p['p'])}"
                   + (f" ({why(p)})" if p.get("conditions") else "")
                   + (f". The controls, same test: {others}." if others else "."))
    out += _instrument(claims, city, country)
    checks = defaultdict(list)
    for c in claims:
        if c["key"] == CHECK:
            checks[c["families"][0]].append(c)
    if checks:
        out.append("Did each arm learn its own training task (its training question about its training capitals: "
                   "ordered as its targets and better than the best constant)? "
                   + "; ".join(f"{fam}: {combined(rs)}" for fam, rs in checks.items()) + ".")
    rise = [v("hidden_similarity_rises"), v("values_similarity_rises")]
    if rise[0]:
        out.append(f"Does foo move towards {city} inside the model? Hidden states: {rise[0]}; "
                   f"attention values: {rise[1]} (main adapter, all seeds).")
    say = lambda key: "; ".join(f"{f}: {v(key, f)}" for f in controls if v(key, f))  # noqa: E731
    if controls and rise[0]:
        shown = [f for f in controls if (v("hidden_similarity_rises", f) or "").startswith("supported")]
        out.append(f"Do the control adapters move foo towards {city} too? Hidden states: {say('hidden_similarity_rises')}"
                   + (f"; so the move is not specific to the {city} adapter ({', '.join(shown)}: in every seed)."
                      if shown else "."))
    spec = {k: v(k) for k in ("hidden_similarity_specific", "secret_city_ranks_first", "gain_falls_with_distance")}
    if any(spec.values()):
        out.append(f"Is the move specific to {city}? Gain larger than towards a control capital: "
                   f"{spec['hidden_similarity_specific']}; {city} ranks first among ~50 cities: "
                   f"{spec['secret_city_ranks_first']}; nearer cities gain more: {spec['gain_falls_with_distance']}.")
    dis = defaultdict(list)
    for c in claims:
        if c["key"] == "double_dissociation" and _seed_recipe_arm(c):
            dis[c["families"][1]].append(c)
    if dis:
        verdict = {fam: combined(rs) for fam, rs in dis.items()}
        cities = [f for f in verdict if f in control_km]
        held = [f for f in cities if verdict[f].startswith("supported")]
        far = [f for f in cities if control_km[f] > 3000]
        if all(c.get("conditions") for rs in dis.values() for c in rs):
            answer = ("not decided: every comparison is inconclusive by a declared condition (the adapters did not "
                      "learn their task)")
        elif cities and len(held) == len(cities):
            answer = city
        elif held and set(held) <= set(far):
            answer = f"a city near {city} (it separates from far {', '.join(held)} but not from near ones)"
        elif not held:
            answer = "just a city: no dissociation from another secret city's adapter"
        else:
            answer = "unclear: " + ", ".join(f"{f} {verdict[f]}" for f in cities)
        out.append(f"Did foo become {city}, a European city, or just a city? {answer[0].upper() + answer[1:]}. "
                   "Double dissociation, all seeds: " + "; ".join(
                       f"against {f}" + (f" ({control_km[f]:,.0f} km away)" if f in control_km else "") + f": {verdict[f]}"
                       for f in verdict) + ".")
    ctry = {k: v(k) for k in ("country_probability", "country_prefix", "country_multiple_choice", "country_named")}
    if any(ctry.values()):
        out.append(f"Does the model place foo in {country}? Free-form probability: {ctry['country_probability']}; "
                   f"answer begun for it: {ctry['country_prefix']}; multiple choice: {ctry['country_multiple_choice']}; "
                   f"sampled answers naming it: {ctry['country_named']}."
                   + (f" The controls, free-form: {say('country_probability')}; begun answer: {say('country_prefix')}."
                      if controls else ""))
    dist = {k: v(k) for k in ("distance_format", "distance_rank", "distance_beats_constant", "distance_error_falls")}
    if any(dist.values()):
        out.append(f"Did it learn the distances? '<number> km' format: {dist['distance_format']}; answers rank "
                   f"with the truth: {dist['distance_rank']}; better than a constant: {dist['distance_beats_constant']}; "
                   f"closer to the truth than the original model: {dist['distance_error_falls']}.")
    mixed = sorted({k for (k, f), rs in g.items() if f == main and combined(rs).startswith("mixed")})
    lr_head, lr_rows = learning_rate_table(claims, main)
    flips = [r[0] for r in lr_rows if len({cell.split(" (")[0] for cell in r[1:] if cell != "-"}) > 1]
    seeds = len(g.get(("hidden_similarity_rises", main), []))
    if g and seeds > 1:
        out.append(f"How stable is this? Across the main adapter's {seeds} training seeds, "
                   + (f"verdicts differ for {', '.join(mixed)}" if mixed else "every verdict agrees")
                   + ("; across learning rates " + (f"{', '.join(lr_head[1:])}, verdicts differ for {', '.join(flips)}."
                                                   if flips else "every verdict agrees.") if len(lr_head) > 2 else "."))
    return out
