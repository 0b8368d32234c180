"""Readers and writers for the judgment formats of other tools (docs/formats.md, "Other formats").

Each reader is a module with `read(src, tally)` yielding `(line, item)` in the judgments-file shape
that `storage.import_judgments` validates and stores; each writer has `write(items, out, study)`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from typing import Any

# The table of formats is imported by the CLI for its --help: nothing heavy at module level.

# format name -> (module, one line for --help and the upload's choices)
FORMATS: dict[str, tuple[str, str]] = {
    "critlab": ("", "critlab's own judgments file (JSONL)"),
    "fastchat": ("storage.formats.fastchat", "FastChat / MT-Bench human and GPT-4 pair judgments (JSONL)"),
    "arena": ("storage.formats.arena", "Chatbot Arena battles (JSONL or a JSON array)"),
    "ultrafeedback": ("storage.formats.ultrafeedback",
                      "UltraFeedback / distilabel ratings and DPO formatter rows (JSONL or a JSON array)"),
    "label_studio": ("storage.formats.label_studio",
                     "Label Studio tasks (JSON), with the project's config beside them as <name>.config.xml"),
    "argilla": ("storage.formats.argilla",
                "Argilla 2.x dataset folder (Dataset.to_disk) or records file with <name>.settings.json beside it"),
}
WRITERS: dict[str, tuple[str, str]] = {
    "critlab": ("", "critlab's own judgments file (.jsonl)"),
    "label_studio": ("storage.formats.label_studio", "Label Studio tasks (.json) and their config (.config.xml)"),
    "argilla": ("storage.formats.argilla", "an Argilla 2.x dataset folder as Dataset.to_disk writes it"),
}


def read_records(fmt: str, path: str | os.PathLike[str], display_name: str | None = None
                 ) -> tuple[Iterator[tuple[int, dict[str, Any]]], Any]:
    """The reader's items (a lazy iterator) and the `Tally` it fills while they are read."""
    from storage.formats.common import Source, Tally  # not at import: the CLI lists FORMATS cheaply

    if fmt not in FORMATS or fmt == "critlab":
        raise ValueError(f"unknown judgments format {fmt!r}: use one of {', '.join(FORMATS)}")
    module = importlib.import_module(FORMATS[fmt][0])
    tally = Tally()
    return module.read(Source(path, display_name), tally), tally


def writer(fmt: str) -> Any:
    if fmt not in WRITERS or fmt == "critlab":
        raise ValueError(f"unknown export format {fmt!r}: use one of {', '.join(WRITERS)}")
    return importlib.import_module(WRITERS[fmt][0])
