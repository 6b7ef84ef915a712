"""The hand-written type stubs (python/wfm/*.pyi) list exactly what each native submodule exports."""
import ast
import pathlib

import pytest

import wfm

STUBS = pathlib.Path(__file__).resolve().parents[1] / "wfm"


def _public(names):
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("name", list(wfm.__all__))
def test_stub_matches_module(name):
    stub = STUBS / f"{name}.pyi"
    assert stub.exists(), f"add python/wfm/{name}.pyi"
    tree = ast.parse(stub.read_text())
    stub_defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    module = getattr(wfm, name)
    exported = _public(n for n in dir(module) if not isinstance(getattr(module, n), type(wfm)))
    assert _public(stub_defs) == exported

    def members(node):  # the class body plus what its stub base classes declare
        out = set()
        for base in node.bases:
            if isinstance(base, ast.Name) and isinstance(stub_defs.get(base.id), ast.ClassDef):
                out |= members(stub_defs[base.id])
        for item in node.body:
            if isinstance(item, ast.FunctionDef):
                out.add(item.name)
            elif isinstance(item, ast.AnnAssign):
                out.add(item.target.id)
        return out

    for cls_name, node in stub_defs.items():
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(module, cls_name)
        if type(cls).__name__ == "pybind11_type":
            assert _public(members(node)) == _public(dir(cls)), cls_name
        else:  # a Python class (e.g. a torch Dataset): its own methods are in the stub (which adds attributes)
            assert _public(vars(cls)) <= _public(members(node)), cls_name
