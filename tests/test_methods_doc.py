"""docs/methods.md opens with the method table generated from the method classes."""

from pathlib import Path

from backend.methods.registry import all_methods, method_ids
from backend.methods.table import method_table_markdown


def test_docs_hold_the_generated_method_table() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "methods.md").read_text()
    assert method_table_markdown() in doc, "regenerate the table: python -m backend.methods.table"


def test_every_registered_method_loads_with_its_table_fields() -> None:
    methods = all_methods()
    assert [m.id for m in methods] == method_ids()
    for m in methods:
        for attr in ("version", "layer", "title", "outputs", "cost", "source", "compared_with", "metric_family"):
            assert getattr(m, attr), (m.id, attr)
        assert m.layer in ("decoding", "response")
