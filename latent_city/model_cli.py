"""Load a model and ask it one question: a check that a model loads and answers.

    python -m latent_city.model smollm2-135m [fp32|bf16|8bit|4bit]    # (runs this module)
    python -m latent_city.model_cli smollm2-135m [fp32|bf16|8bit|4bit]
"""

from __future__ import annotations

import sys

from .answers import generate
from .model import load_base, weights_hash


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    model, tok, spec = load_base(argv[0] if argv else "smollm2-135m", argv[1] if len(argv) > 1 else "fp32")
    print(spec, weights_hash(spec))
    print(generate(model, tok, ["What is the capital of France?"], max_new_tokens=16))
    return 0


if __name__ == "__main__":
    from .cli import run

    sys.exit(run(main))
