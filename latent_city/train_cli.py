"""The training command: trains (or reuses) one arm's adapter and says where it is.

    python -m latent_city.finetune            # the CPU tier's main adapter (this module, run by name)
    python -m latent_city.finetune --retrain  # forces a new training run
    python -m latent_city.finetune --arm tokyo-s43   # a control adapter (latent_city/arms.py)
    for a in $(pytest --list-arms -q); do python -m latent_city.finetune --arm $a; done   # every arm a run needs, in turn
    accelerate launch --multi_gpu --num_processes 2 -m latent_city.finetune   # data-parallel, same entry

`python -m latent_city.train_cli` is the same command. The training itself is in finetune.py.
It builds its config as the suite does (`cli.preflight`, so `config.run_config` with the same
variables), so the entry it writes has the key the suite then reads: workers can train the
arms side by side into one cache (README "Training arms side by side").
"""

from __future__ import annotations

import sys

from . import finetune
from .arms import arms
from .cli import Parser, preflight
from .config import PRECISIONS, RECIPES, ConfigError


def main(argv=None) -> int:
    p = Parser(prog="python -m latent_city.finetune", description=finetune.__doc__.splitlines()[0])
    p.add_argument("--tier", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--model", default=None, help="a registry name, a hub id or a local model folder "
                   "(default: LATENT_CITY_MODEL, else the tier's)")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="base weights: fp32, bf16, 8bit, 4bit (default: LATENT_CITY_PRECISION, else the tier's)")
    p.add_argument("--recipe", default=None, choices=list(RECIPES),
                   help="project (loss on the completion) or seed (loss on the whole chat, as the seed's TRL); "
                        "default: LATENT_CITY_RECIPE, else project")
    p.add_argument("--arm", default="paris", help="which adapter: paris (the main one) or a control, e.g. tokyo-s43 "
                   "(`pytest --list-arms` lists those a selection needs)")
    p.add_argument("--retrain", action="store_true")
    a = p.parse_args(argv)
    cfg = preflight(a.tier, a.model, a.precision, a.recipe)   # model, precision, cities, cache: one line if bad
    every = arms(cfg)
    if a.arm not in every or not every[a.arm].trained:
        adapters = ", ".join(n for n, arm in every.items() if arm.trained)
        raise ConfigError(f"arm {a.arm!r} is a positive control with no adapter to train; choose from {adapters}"
                          if a.arm in every else f"unknown arm {a.arm!r}; choose from {adapters}")
    cfg = every[a.arm].cfg
    ad = finetune.get_adapter(cfg, retrain=a.retrain)
    if not finetune.is_main_process():
        return 0
    curve = finetune.loss_curve(ad.log)
    print(f"adapter {ad.path} ({'trained now' if ad.trained_now else 'from cache'}, "
          f"{ad.train_seconds:.0f} s to train); loss {curve[0][1]:.3f} -> {curve[-1][1]:.3f}")
    return 0


if __name__ == "__main__":
    from .cli import run

    sys.exit(run(main))
