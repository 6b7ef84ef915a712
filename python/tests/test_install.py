"""`cmake --install` yields an importable, relocatable package (the extension finds the wfm libraries via $ORIGIN)."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

BUILD = os.environ.get("WFM_BINARY_DIR")


@pytest.mark.skipif(not BUILD or not shutil.which("cmake"), reason="needs WFM_BINARY_DIR (set by scripts/run-tests.sh) and cmake")
def test_cmake_install_gives_an_importable_package(tmp_path):
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", BUILD, "--prefix", str(prefix)], check=True, capture_output=True)
    moved = tmp_path / "moved"  # relocatable: move the whole tree
    prefix.rename(moved)
    site = next(moved.glob("lib/python3*/site-packages"))
    assert (site / "wfm" / "py.typed").exists() and (site / "wfm" / "core.pyi").exists()
    data = pathlib.Path(__file__).resolve().parents[2] / "tests/data/checkpoint/state_dict.pt"
    code = f"import wfm, wfm.core as c; assert wfm.__file__.startswith({str(site)!r}); print(len(c.read_tensor_file({str(data)!r})))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.stdout.strip() == "9"
