import os
from pathlib import Path

import pytest
import torch

# Tests are tiny; more threads only add contention on the 2-core CI machine.
torch.set_num_threads(min(2, torch.get_num_threads()))

# The benchmark and training sets: ../shared/datasets beside the checkout, or wherever
# SURGE_SHARED_DATASETS says (a git worktree elsewhere, a user with their own copy).
SHARED_DATASETS = Path(os.environ.get("SURGE_SHARED_DATASETS")
                       or Path(__file__).resolve().parents[1].parent / "shared" / "datasets")


def pytest_collection_modifyitems(config, items):
    """``cuda`` tests need a GPU: skipped, with the reason, where torch sees none."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False); "
                                   "the device script runs them: python -m pytest -m cuda tests/")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """``../shared/datasets`` (benchmark + train sets); skips where it is absent (users' machines)."""
    if not (SHARED_DATASETS / "benchmark").is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATASETS} (only present on the project's dev/CI machines; "
                    "SURGE_SHARED_DATASETS=DIR points elsewhere)")
    return SHARED_DATASETS


@pytest.fixture
def tiny_gan_run(tmp_path) -> tuple[Path, list[str]]:
    """For end-to-end runs of the training scripts in seconds: ``(start weights, overrides)``.

    The start file is an untrained ``surge-tiny`` generator (standing in for PSNR-stage weights);
    the ``surge train`` overrides select that generator, a tiny critic and four random 48x40 HR
    images, with no validation set.
    """
    from surge.models import GENERATOR_PRESETS, SuRGeGenerator
    from surge.models.files import save_model
    from training_helpers import random_hr_folder

    hr = random_hr_folder(tmp_path / "hr", 4, (48, 40))
    init = save_model(SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"]), tmp_path / "init.safetensors")
    overrides = ['generator.preset="surge-tiny"', f'data.train_dirs=["{hr}"]', "data.hr_size=32", "data.batch_size=4",
                 'data.val_dir=""', "critic.width=8", "critic.max_width=16", "critic.stages=2", "critic.hidden=16"]
    return init, overrides
