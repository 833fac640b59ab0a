import os

# Tests run on the CPU with full fp32 matmuls; 8 host devices for the sharding tests.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def rel_err(a, b) -> float:
    """max |a - b| / max |b|: the relative error used in every parity check."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture
def rng():
    return np.random.default_rng(0)
