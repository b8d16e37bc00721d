import os

import pytest

from latent_city import model


@pytest.fixture(scope="package")
def base():
    """The CPU tier's base model, loaded with the hub switched off; freed when the integration
    tests are done, so it does not sit beside the claims' model."""
    import gc

    assert os.environ.get("HF_HUB_OFFLINE") == "1", "the CPU tier must run with the hub switched off"
    loaded = model.load_base("smollm2-135m")
    yield loaded
    del loaded
    gc.collect()
