"""Command-line entry points share one rule: a mistake the user can fix (a bad config value, a
city not in the table, a folder that is not a model, an unwritable cache) ends in one line
that says what is wrong and what to do (out of GPU memory: which option lowers it), and exit status 2; a bug still shows its traceback."""

from __future__ import annotations

import sys


def user_errors() -> tuple[type[BaseException], ...]:
    from .cache import CacheError
    from .config import ConfigError
    from .data import CapitalsFormatError, UnknownCityError
    from .model import ModelLoadError, OutOfMemory

    return ConfigError, ModelLoadError, CacheError, UnknownCityError, CapitalsFormatError, OutOfMemory


def run(main, argv=None) -> int:
    try:
        return int(main(argv) or 0)
    except user_errors() as e:
        print(f"latent_city: {e}", file=sys.stderr)
        return 2
