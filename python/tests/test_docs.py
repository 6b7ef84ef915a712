"""Every ```python example in docs/python.md runs (in order, one namespace, from the repository root)."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_python_examples_in_docs_run(monkeypatch, capsys):
    text = (ROOT / "docs" / "python.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(ROOT)
    namespace = {"__name__": "docs_python_md"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/python.md[example {i}]", "exec"), namespace)  # noqa: S102
    import wfm.core

    wfm.core.set_log_level("info")
