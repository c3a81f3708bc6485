import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run and machine (CI included), so a commit
# passes or fails the same way everywhere; NETSIM_HYPOTHESIS=explore draws fresh ones each run
# (how new counterexamples are found: pin them with @example).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("NETSIM_HYPOTHESIS", "repeatable"))

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture
def shared_dir() -> Path:
    return SHARED
