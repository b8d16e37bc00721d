"""Command-line entry points share one rule: a mistake the user can fix (a bad config value, a
city not in the table, a folder that is not a model, an unwritable cache) ends in one line
that says what is wrong and what to do (out of GPU memory: which option lowers it), and exit
status 2; a bug still shows its traceback.

`preflight` is that rule applied before any work: every entry point (`python -m latent_city`,
`pytest`, `python -m latent_city.finetune`) calls it first, so a bad value is said once, in
one line, before a test is collected or an adapter trained.
"""

from __future__ import annotations

import argparse
import sys


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (its usage block runs to several on a narrow terminal)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (--help lists the options)\n")


def user_errors() -> tuple[type[BaseException], ...]:
    from .cache import CacheError
    from .config import ConfigError
    from .data import CapitalsFormatError, UnknownCityError
    from .model import ModelLoadError, OutOfMemory

    return ConfigError, ModelLoadError, CacheError, UnknownCityError, CapitalsFormatError, OutOfMemory


def one_line(error: BaseException) -> str:
    """The message of a user error on one line (library messages can span several)."""
    return "latent_city: " + " ".join(str(error).split())


def preflight(tier: str, model: str | None = None, precision: str | None = None, recipe: str | None = None):
    """The run's config, after checking in about a second what it needs: config values, the
    model (a known name, a model folder, the hub's config.json or the package), bitsandbytes for
    8/4-bit, every arm's secret city and country in the capitals table, a writable cache.
    Raises one of `user_errors()`; reads and writes nothing under reports/ or in the cache."""
    from . import cache, data
    from .arms import arms
    from .config import ConfigError, run_config
    from .model import check_available

    if model is not None and not model.strip():
        raise ConfigError("--model is empty: give a registry name, a hub id or a model folder, or leave it out")
    cfg = run_config(tier, model, precision, recipe)
    check_available(cfg.model, cfg.precision)
    capitals = data.load_capitals()
    for arm in arms(cfg).values():
        city = data.find_city(capitals, arm.cfg.data.secret_city)
        if city.country != arm.cfg.data.secret_country:
            raise ConfigError(f"arm {arm.name}: secret city {city.name} is in {city.country!r} in the capitals table, "
                              f"not {arm.cfg.data.secret_country!r}; spell the country as the table does")
    cache.root()
    return cfg


def run(main, argv=None) -> int:
    try:
        return int(main(argv) or 0)
    except user_errors() as e:
        print(one_line(e), file=sys.stderr)
        return 2
