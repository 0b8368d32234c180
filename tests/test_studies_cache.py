"""storage.studies caches study and run reads (the label loop reads them twice per label)."""

from __future__ import annotations

import pytest

from storage import studies
from storage.db import Database
from storage.models import StudyConfig
from tests.builders import make_run, make_study


def test_study_reads_follow_every_committed_change(db: Database) -> None:
    """storage.studies caches study and run reads; a write is seen at once after its commit, and a
    rolled-back one never."""
    s = make_study(db, "s1")
    assert studies.get_study(db, "s1").config.live_annotators is False
    studies.update_study(db, s.id, config=StudyConfig(live_annotators=True))
    assert studies.get_study(db, "s1").config.live_annotators is True
    assert studies.latest_run(db, s.id) is None
    run = make_run(db, s.id)
    assert studies.latest_run(db, s.id).id == run
    with pytest.raises(RuntimeError), db.write():
        studies.update_study(db, s.id, config=StudyConfig(live_annotators=False))
        raise RuntimeError("roll back")
    assert studies.get_study(db, "s1").config.live_annotators is True
    copy = studies.get_study(db, "s1")
    copy.config.overlap = 7  # a caller changing its copy changes nobody else's
    assert studies.get_study(db, "s1").config.overlap is None
