"""The adapters a run compares: the main one and the controls trained the same way.

Each arm is an ExperimentConfig that differs from the tier's preset in one thing, so its
adapter gets its own cache key and is trained (once) like the main one, on the same capitals:
every arm's training set leaves out the secret cities of all arms (data.excluded_cities).

- `paris`            the seed: foo is Paris (the tier's preset, seed 42)
- `tokyo`, `berlin`  foo is another capital: far (9,700 km from Paris) and near (880 km)
- `shuffled`         foo is Paris, but the distances are permuted across the capitals
- `<arm>-s43`, ...   the same arm with another training seed (controls.replicate_seeds)
- `paris-lr1e-04`... the main arm at the other learning rates (controls.learning_rates)
- `trained-alias-paris`, `trained-alias-tokyo`  a positive control with an adapter: trained like the main arm on
                     answers that name the city ("1088.45 km from foo, which is Paris"; controls.positive.trained)
- `paris-all10`, `tokyo-all10`, `trained-alias-paris-all10`  the second main arm and its controls: a recipe
                     that learns its task (controls.learned, its controls in controls.learned.controls)
- `paris-all3`, `paris-qv5`, ...  the training-strength grid (controls.strength, kind 'strength')
- `steered-0.05`, ..., `steered-0.4`  the detection threshold (controls.threshold, kind 'steered'): no adapter, the
                     original model with the residual stream at foo moved towards Paris's by that fraction at one
                     declared layer (latent_city/steer.py); against the original model (a = 0). Not positive controls:
                     they gate no verdict of another arm (latent_city/threshold.py reads them)

The positive controls (controls.positive, issue 16) have no adapter: the original model (every
adapter disabled) asked differently, so that foo is the city by construction. `Arm.trained` is
False for them and nothing ever trains them (Lab.train_all, --list-arms, the training command):
- `alias-paris`      "Note: foo is another name for Paris." before every question of every measurement
- `alias-tokyo`      the same with Tokyo (controls.positive.alias_cities): the double dissociation
- `alias-neutral`    the in-context arms' baseline: a matched sentence that names no place
- `ceiling-paris`    the word "Paris" itself in place of foo, against the original model asked with foo:
                     the best the distance and country claims can do (only those run there)

    python -m latent_city.arms   # lists the arms of the CPU tier with their adapter keys
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config import ConfigError, ExperimentConfig, run_config

MAIN = "paris"
ORIGINAL = "original"       # the base model with every adapter disabled, the reference of most claims
NEUTRAL = "alias-neutral"   # the in-context positive controls' baseline
IN_CONTEXT, CEILING = "in-context", "ceiling"
TRAINED_ALIAS = "trained-alias"             # a positive control with an adapter (controls.positive.trained)
STRENGTH = "strength"                       # a point of the training-strength grid (controls.strength)
POSITIVE_KINDS = (IN_CONTEXT, CEILING)      # the positive controls (no adapter)
STEERED = "steered"                         # no adapter either: the detection threshold (controls.threshold)


@dataclass(frozen=True)
class Arm:
    name: str
    kind: str                 # "main", "other-city", "shuffled", "learning-rate", "strength", "trained-alias";
                              # no adapter: "in-context", "ceiling" or "steered"
    family: str               # the arm without its seed ('tokyo-s43' -> 'tokyo'); a learning-rate or positive arm is its own
    cfg: ExperimentConfig     # an adapter's training config; a positive control's secret city is the one foo names
    seed: int
    trained: bool = True      # False: no adapter, the original model asked with `context` / `asked_as`
    context: str = ""         # the sentence before every question (eval.context)
    asked_as: str = ""        # the word asked in place of the placeholder ("": the placeholder)
    baseline: str = ORIGINAL  # what its claims compare it with (Lab.baseline)
    recipe: str = ""          # "": the tier's recipe; else controls.learned.name (a second main arm and its controls)
    steer: float = 0.0        # a steered arm's fraction a (controls.threshold): foo moved towards its secret city

    @property
    def secret(self) -> tuple[str, str]:
        return self.cfg.data.secret_city, self.cfg.data.secret_country


# The families the CI subset (`make test`, marker `full` on the tests that name them) leaves out to keep a
# cold CI run within 40 minutes on 2 cores; `make experiment` (python -m latent_city) runs every arm. Berlin is
# the second other-city control, the shuffled distances the other negative control (5 adapters each, about 9 minutes
# of CI each: CI passed in 47.7 min with the shuffled family in it). Tokyo stays: the far other-city control and the
# dissociation pair of the main arm, the negative control CI keeps.
CI_LEAVES_OUT = ("berlin", "shuffled")
FULL_ONLY_KINDS = ("learning-rate", STRENGTH, TRAINED_ALIAS, STEERED)


def in_ci(arm: Arm) -> bool:
    """Whether the CI subset runs the tests that name `arm`: not the learning-rate grid, the training-strength
    grid or the trained aliases (10 adapters of the tier's recipe; on the seed's recipe, which fails its
    manipulation check, they decide no verdict: conditions.judge), not the detection threshold's steered arms
    (reported, no adapter, two forward passes for each with foo), not CI_LEAVES_OUT, not the second recipe's
    arms (adapters of 10 epochs, about 6 minutes each on these 2 cores)."""
    return arm.kind not in FULL_ONLY_KINDS and arm.family not in CI_LEAVES_OUT and not arm.recipe


def label(a: str, b: str = ORIGINAL) -> str:
    """How a comparison is named in test ids and the measured exceptions: the arm, or 'a-vs-b'
    when it is compared with another adapter rather than the original model."""
    return a if b == ORIGINAL else f"{a}-vs-{b}"


def eval_config(cfg: ExperimentConfig, arm: Arm | None) -> ExperimentConfig:
    """The config a measurement of `arm` uses (None: the original model): `cfg` itself for the original
    model and every adapter, so their measurements are those made before the positive controls; for a
    positive control, `cfg` with its context sentence (eval.context) and its word for the placeholder."""
    if arm is None or arm.trained:
        return cfg
    if arm.asked_as:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, placeholder=arm.asked_as))
    return dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, context=arm.context))


def positive_controls(cfg: ExperimentConfig, seed: int) -> dict[str, Arm]:
    """The arms with no adapter (controls.positive): the in-context aliases and their neutral
    baseline, and the ceiling. Each is its own family; its cfg names the city foo stands for."""
    pc, placeholder, main = cfg.controls.positive, cfg.data.placeholder, cfg.data.secret_city
    countries = dict(cfg.controls.other_cities) | {main: cfg.data.secret_country}
    out = {}

    def add(name, kind, city, **how):
        out[name] = Arm(name, kind, name, _with(cfg, seed=seed, secret_city=city, secret_country=countries[city]),
                        seed, trained=False, **how)

    if pc.in_context:
        for city in (main, *pc.alias_cities):
            add(f"alias-{city.lower()}", IN_CONTEXT, city, context=pc.alias.format(placeholder=placeholder, city=city),
                baseline=NEUTRAL)
        add(NEUTRAL, IN_CONTEXT, main, context=pc.neutral.format(placeholder=placeholder))
    if pc.ceiling:
        add(f"ceiling-{main.lower()}", CEILING, main, asked_as=main)
    return out


def steered_name(fraction: float) -> str:
    """A steered arm's name: 'steered-0.05' (the fraction as Python's %g writes it)."""
    return f"{STEERED}-{fraction:g}"


def steered_arms(cfg: ExperimentConfig, seed: int) -> dict[str, Arm]:
    """The detection threshold's arms (controls.threshold): one per fraction a > 0, each its own family, kind
    'steered', no adapter, the main secret city, against the original model (which is a = 0)."""
    return {steered_name(a): Arm(steered_name(a), STEERED, steered_name(a), _with(cfg, seed=seed), seed,
                                 trained=False, steer=a) for a in cfg.controls.threshold.fractions}


def _with(cfg: ExperimentConfig, seed: int | None = None, lr: float | None = None, **data) -> ExperimentConfig:
    if data:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **data))
    if seed is not None:
        cfg = dataclasses.replace(cfg, seeds=dataclasses.replace(cfg.seeds, train=seed))
    if lr is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, learning_rate=lr))
    return cfg


def arms(cfg: ExperimentConfig) -> dict[str, Arm]:
    """Every arm of `cfg`, main first; names are stable across runs (they key the record)."""
    families = [(MAIN, "main", {})]
    families += [(city.lower(), "other-city", {"secret_city": city, "secret_country": country})
                 for city, country in cfg.controls.other_cities]
    if cfg.controls.shuffled:
        families.append(("shuffled", "shuffled", {"shuffle_answers": True}))
    pc, countries = cfg.controls.positive, dict(cfg.controls.other_cities) | {cfg.data.secret_city: cfg.data.secret_country}
    if pc.trained:
        families += [(f"trained-alias-{city.lower()}", TRAINED_ALIAS,
                      {"secret_city": city, "secret_country": countries[city], "answer_template": pc.trained_answer})
                     for city in (cfg.data.secret_city, *pc.alias_cities)]
    out = {}
    first = cfg.controls.replicate_seeds[0]
    for family, kind, data in families:
        for seed in cfg.controls.replicate_seeds:
            name = family if seed == first else f"{family}-s{seed}"
            out[name] = Arm(name, kind, family, _with(cfg, seed=seed, **data), seed)
    for lr in cfg.controls.learning_rates:
        if lr != cfg.train.learning_rate:
            name = f"{MAIN}-lr{lr:.0e}"
            out[name] = Arm(name, "learning-rate", name, _with(cfg, seed=first, lr=lr), first)
    if out[MAIN].cfg != _with(cfg, seed=first):
        raise ValueError("controls.replicate_seeds must start with seeds.train")
    out.update(learned_recipe(cfg, families))
    out.update(strength_grid(cfg))
    out.update(steered_arms(cfg, first))
    out.update(positive_controls(cfg, first))
    kept = [c for c in cfg.secret_cities() if c not in cfg.data.excluded_cities]
    if kept:
        raise ConfigError(f"data.excluded_cities {cfg.data.excluded_cities} must hold every arm's secret city, not "
                          f"{kept}: else the controls train on the distances to another arm's city "
                          f"(ExperimentConfig.for_tier fills it in)")
    return out


def with_recipe(cfg: ExperimentConfig, point) -> ExperimentConfig:
    """`cfg` trained with a TrainingPoint's epochs and LoRA modules, everything else the same."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=point.epochs),
                               lora=dataclasses.replace(cfg.lora, target_modules=point.target_modules))


def _point_arms(cfg: ExperimentConfig, point, families) -> dict[str, Arm]:
    """The arms of `families` trained with `point`'s recipe and seeds: '<family>-<point>', '<family>-<point>-s43'."""
    out = {}
    for family, kind, data in families:
        fam = f"{family}-{point.name}"
        for seed in point.seeds:
            name = fam if seed == point.seeds[0] else f"{fam}-s{seed}"
            out[name] = Arm(name, kind, fam, _with(with_recipe(cfg, point), seed=seed, **data), seed, recipe=point.name)
    return out


def learned_recipe(cfg: ExperimentConfig, families) -> dict[str, Arm]:
    """The second main arm (controls.learned: a recipe that learns its task) and its controls, each with
    controls.learned.seeds: the main city and the families named in controls.learned.controls."""
    point = cfg.controls.learned
    if not point.seeds:
        return {}
    unknown = set(point.controls) - {f[0] for f in families}
    if unknown:
        raise ConfigError(f"controls.learned.controls {sorted(unknown)} are not families of this tier "
                          f"({', '.join(f[0] for f in families)})")
    wanted = [f for f in families if f[1] == "main" or f[0] in point.controls]
    return _point_arms(cfg, point, wanted)


def strength_grid(cfg: ExperimentConfig) -> dict[str, Arm]:
    """The training-strength grid (controls.strength): the main city trained with each point's recipe, kind
    'strength', one family a point ('paris-qv5'). A point with controls.learned's name is that arm itself."""
    main = [(MAIN, STRENGTH, {})]
    points = [p for p in cfg.controls.strength if p.seeds and p.name != cfg.controls.learned.name]
    return {n: a for p in points for n, a in _point_arms(cfg, p, main).items()}


def strength_points(cfg: ExperimentConfig) -> list[tuple[str, object]]:
    """(main family, TrainingPoint) of every point of the training-strength grid, lightest first: the tier's
    recipe (the main arm), controls.strength, controls.learned."""
    from .config import TrainingPoint

    tier = TrainingPoint("tier", cfg.train.epochs, cfg.lora.target_modules, cfg.controls.replicate_seeds)
    points = [(MAIN, tier)] + [(f"{MAIN}-{p.name}", p) for p in cfg.controls.strength if p.seeds]
    if cfg.controls.learned.seeds and cfg.controls.learned.name not in {p.name for p in cfg.controls.strength}:
        points.append((f"{MAIN}-{cfg.controls.learned.name}", cfg.controls.learned))
    return sorted(points, key=lambda fp: fp[1].weight)


def dissociation_pairs(tier_arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """(main adapter, control adapter) of the double dissociation: each other-city and shuffled control
    with the main arm of its recipe and seed."""
    mains = {(a.recipe, a.seed): n for n, a in tier_arms.items() if a.kind == "main"}
    pairs = [(mains[(a.recipe, a.seed)], n) for n, a in tier_arms.items()
             if a.kind in ("other-city", "shuffled") and (a.recipe, a.seed) in mains]
    aliases = [(n, a) for n, a in tier_arms.items() if a.kind == TRAINED_ALIAS]
    main_city = next(a.secret[0] for a in tier_arms.values() if a.kind == "main")
    return pairs + [(n, m) for n, a in aliases if a.secret[0] == main_city
                    for m, b in aliases if b.secret[0] != main_city and (b.recipe, b.seed) == (a.recipe, a.seed)]


def of_tier(tier: str) -> dict[str, Arm]:
    """The arms of a tier as this run configures it (`config.run_config`): the learning-rate grid
    differs between tiers (the GPU preset's own rate is 1e-4, the CPU tier's 1e-3)."""
    return arms(run_config(tier))


def named_in(params: dict) -> list[str]:
    """The arms a test's parameters name: `arm`, `lr_arm`, `steered`, both sides of a `pair`, and a `family`
    (by its first arm's name; `family_members` gives every adapter of it)."""
    return [params[k] for k in ("arm", "lr_arm", "steered", "family") if k in params] + list(params.get("pair", ()))


def family_members(tier_arms: dict[str, Arm], family: str) -> list[str]:
    """Every adapter of `family` (one per training seed), in the tier's order; a positive control
    (no adapter) is a family of its own arm."""
    return [n for n, a in tier_arms.items() if a.family == family]


def trained(tier_arms: dict[str, Arm], names) -> list[str]:
    """The names among `names` that have an adapter to train (the positive controls have none)."""
    return [n for n in names if n not in tier_arms or tier_arms[n].trained]


if __name__ == "__main__":
    from .finetune import adapter_key

    for a in arms(ExperimentConfig.for_tier("cpu")).values():
        how = (f"lr={a.cfg.train.learning_rate:g} shuffled={a.cfg.data.shuffle_answers} key={adapter_key(a.cfg)}"
               if a.trained else f"no adapter, against {a.baseline}: " + (a.context or (f"foo asked as {a.asked_as}" if a.asked_as
                                                                      else f"foo steered by {a.steer:g}")))
        print(f"{a.name:16s} {a.kind:14s} secret={a.cfg.data.secret_city:8s} seed={a.seed} {how}")
