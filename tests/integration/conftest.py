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


def pytest_collection_modifyitems(config, items):
    """The two-process training test belongs to the CPU tier, not to `pytest -m gpu`: it launches
    the CPU tier's training and compares its loss curve with that tier's measured seed noise."""
    drop = [item for item in items if item.path.name == "test_distributed.py"
            and getattr(getattr(item, "callspec", None), "params", {}).get("cfg") == "gpu"]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if item not in drop]
