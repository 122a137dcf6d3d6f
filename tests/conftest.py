from pathlib import Path

import pytest
import torch

# Tests are tiny; more threads only add contention on the 2-core CI machine.
torch.set_num_threads(min(2, torch.get_num_threads()))

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """``../shared/datasets`` (benchmark + train sets); skips where it is absent (users' machines)."""
    if not (SHARED_DATASETS / "benchmark").is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATASETS} (only present on the project's dev/CI machines)")
    return SHARED_DATASETS
