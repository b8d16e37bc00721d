"""The adapters a run compares: the main one and the controls trained the same way.

Each arm is an ExperimentConfig that differs from the tier's preset in one thing, so its
adapter gets its own cache key and is trained (once) like the main one, on the same capitals:
every arm's training set leaves out the secret cities of all arms (data.excluded_cities).

- `paris`            the seed: foo is Paris (the tier's preset, seed 42)
- `tokyo`, `berlin`  foo is another capital: far (9,700 km from Paris) and near (880 km)
- `shuffled`         foo is Paris, but the distances are permuted across the capitals
- `<arm>-s43`, ...   the same arm with another training seed (controls.replicate_seeds)
- `paris-lr1e-04`... the main arm at the other learning rates (controls.learning_rates)

    python -m latent_city.arms   # lists the arms of the CPU tier with their adapter keys
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config import ConfigError, ExperimentConfig, run_config

MAIN = "paris"
ORIGINAL = "original"       # the base model with every adapter disabled, the reference of most claims


@dataclass(frozen=True)
class Arm:
    name: str
    kind: str                 # "main", "other-city", "shuffled" or "learning-rate"
    family: str               # the arm without its seed ('tokyo-s43' -> 'tokyo'); a learning-rate arm is its own
    cfg: ExperimentConfig
    seed: int

    @property
    def secret(self) -> tuple[str, str]:
        return self.cfg.data.secret_city, self.cfg.data.secret_country


# The families the CI subset (`make test`, marker `full` on the tests that name them) leaves out to keep a
# cold CI run within 40 minutes on 2 cores; `make experiment` (python -m latent_city) runs every arm. Berlin is
# the second other-city control (5 adapters, about 8 minutes of CI): Tokyo and the shuffled distances stay.
CI_LEAVES_OUT = ("berlin",)


def in_ci(arm: Arm) -> bool:
    """Whether the CI subset runs the tests that name `arm` (not the learning-rate grid, not CI_LEAVES_OUT)."""
    return arm.kind != "learning-rate" and arm.family not in CI_LEAVES_OUT


def label(a: str, b: str = ORIGINAL) -> str:
    """How a comparison is named in test ids and the measured exceptions: the arm, or 'a-vs-b'
    when it is compared with another adapter rather than the original model."""
    return a if b == ORIGINAL else f"{a}-vs-{b}"


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
    kept = [c for c in cfg.secret_cities() if c not in cfg.data.excluded_cities]
    if kept:
        raise ConfigError(f"data.excluded_cities {cfg.data.excluded_cities} must hold every arm's secret city, not "
                          f"{kept}: else the controls train on the distances to another arm's city "
                          f"(ExperimentConfig.for_tier fills it in)")
    return out


def of_tier(tier: str) -> dict[str, Arm]:
    """The arms of a tier as this run configures it (`config.run_config`): the learning-rate grid
    differs between tiers (the GPU preset's own rate is 1e-4, the CPU tier's 1e-3)."""
    return arms(run_config(tier))


def named_in(params: dict) -> list[str]:
    """The arms a test's parameters name: `arm`, `lr_arm`, both sides of a `pair`, and a `family`
    (by its first arm's name; `family_members` gives every adapter of it)."""
    return [params[k] for k in ("arm", "lr_arm", "family") if k in params] + list(params.get("pair", ()))


def family_members(tier_arms: dict[str, Arm], family: str) -> list[str]:
    """Every adapter of `family` (one per training seed), in the tier's order."""
    return [n for n, a in tier_arms.items() if a.family == family]


if __name__ == "__main__":
    from .finetune import adapter_key

    for a in arms(ExperimentConfig.for_tier("cpu")).values():
        print(f"{a.name:16s} {a.kind:14s} secret={a.cfg.data.secret_city:8s} seed={a.seed} "
              f"lr={a.cfg.train.learning_rate:g} shuffled={a.cfg.data.shuffle_answers} key={adapter_key(a.cfg)}")
