import os

import pytest

from latent_city import model


@pytest.fixture(scope="session")
def base():
    """The CPU tier's base model, loaded with the hub switched off."""
    assert os.environ.get("HF_HUB_OFFLINE") == "1", "the CPU tier must run with the hub switched off"
    return model.load_base("smollm2-135m")
