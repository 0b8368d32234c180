"""The Export tab's consistency filter (`--consistent-with JUDGE`, issue 17 §3): the study's model judges are
offered by the same call that lists its sources, and the counts name what the filter dropped, zeros
included, so a filter that dropped nothing is seen to have run."""

from __future__ import annotations

import pytest

from app.services import exports
from app.services.context import AppContext, ServiceError
from app.ui.export_tab import counts_markdown
from storage.db import Database
from tests.test_export_consistency import _study


@pytest.fixture
def ctx(db: Database) -> AppContext:
    c = AppContext(db=db)
    yield c
    c.close()


def test_the_sources_call_lists_the_studys_model_judges(ctx: AppContext) -> None:
    _study(ctx.db)
    r = exports.export_sources(ctx, "admin", exports.ExportSources(study="demo"))
    assert r["judges"] == ["it0", "it1"]
    assert "model:judge_score@it1" in r["sources"]


def test_the_preview_counts_show_what_the_filter_dropped(ctx: AppContext) -> None:
    _study(ctx.db)
    r = exports.export_preview(ctx, "admin", exports.ExportPreview(study="demo", source="model:judge_score@it1",
                                                                   consistent_with="it0"))
    text = counts_markdown(r, "it0")
    assert "| skipped: consistency_disagrees | 1 |" in text
    assert text.splitlines()[-1] == ("Consistency filter (*it0* must rank chosen above rejected too): dropped "
                                     "1 ranked the other way, 1 tied, 1 without a score from it.")
    plain = exports.export_preview(ctx, "admin", exports.ExportPreview(study="demo", source="model:judge_score@it1"))
    assert "Consistency filter" not in counts_markdown(plain)
    # The swapped judges drop no tie and no missing score: the zeros are said, not left out.
    swapped = exports.export_preview(ctx, "admin", exports.ExportPreview(
        study="demo", source="model:judge_score@it0", consistent_with="it1"))
    assert counts_markdown(swapped, "it1").endswith("dropped 2 ranked the other way, 0 tied, 0 without a score from it.")


@pytest.mark.parametrize(("fields", "message"), [
    ({"source": "human", "consistent_with": "it0"}, "compares two model judges' scores of one method"),
    ({"kind": "sft", "source": "model:judge_score@it1", "consistent_with": "it0"}, "use it with dpo or rm"),
])
def test_a_filter_that_does_not_fit_is_refused_by_name(ctx: AppContext, fields: dict, message: str) -> None:
    _study(ctx.db)
    with pytest.raises(ServiceError, match=message):
        exports.export_preview(ctx, "admin", exports.ExportPreview(study="demo", **fields))
