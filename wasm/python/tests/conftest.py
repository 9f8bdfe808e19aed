import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from wxpay import Wxpay, default_module_path  # noqa: E402


@pytest.fixture(scope="session")
def wx() -> Wxpay:
    path = default_module_path()
    if not path.is_file():
        # No silent pass: the module is built by scripts/build-pkg.sh before these tests run.
        pytest.fail(f"C-ABI module {path} not found: run scripts/build-pkg.sh first")
    return Wxpay.load(path)
