"""The README's GPU commands: every model download leaves out `original/` (Meta's own
checkpoint format, 16 GB for the 8B model, which transformers never reads)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_model_download_in_the_readme_skips_the_original_folder():
    downloads = [line for line in README.read_text().splitlines() if re.match(r"\s*hf download ", line)]
    assert downloads, "the README names no `hf download` command"
    missing = [line.strip() for line in downloads if '--exclude "original/*"' not in line]
    assert not missing, f"downloads that fetch original/ too: {missing}"
