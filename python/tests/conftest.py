"""Shared fixtures of the wfm pytest suite (run by scripts/run-tests.sh with PYTHONPATH=build/python)."""
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "checkpoint"


@pytest.fixture(scope="session")
def data_dir():
    return DATA


@pytest.fixture(scope="session")
def gen():
    """tests/data/make_checkpoint_test_data.py as a module: the Python models the test files came from."""
    spec = importlib.util.spec_from_file_location("make_checkpoint_test_data", ROOT / "tests/data/make_checkpoint_test_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
