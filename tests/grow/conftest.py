import pytest

from tf_gpp.data import load_digits


@pytest.fixture(scope="session")
def tiny_digits():
    """60 digits (8x8x1): 40 train / 20 val in single batches (one step per epoch)."""
    return load_digits(limit=60, validation_split=1 / 3, test_split=0.0, batch_size=40, seed=0)
