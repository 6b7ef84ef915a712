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
    for cls_name, node in stub_defs.items():
        if not isinstance(node, ast.ClassDef):
            continue
        members = set()
        for item in node.body:
            if isinstance(item, ast.FunctionDef):
                members.add(item.name)
            elif isinstance(item, ast.AnnAssign):
                members.add(item.target.id)
        assert _public(members) == _public(dir(getattr(module, cls_name))), cls_name
