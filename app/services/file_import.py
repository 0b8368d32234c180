"""The Studies tab's file import: prompts, or judgments in any format `storage.formats` reads, uploaded
through the browser. Label Studio and Argilla files come with a second file (the labelling config, the
dataset settings) that their readers expect beside the first; uploads land in separate temporary folders,
so both are placed in one folder inside the upload area first (and removed afterwards)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from app.services.context import AppContext, ServiceError
from app.services.ops import run_op
from app.services.paths import web_paths
from storage.formats import FORMATS

# What the upload's choice shows: short enough for the dropdown at 800 px (docs/formats.md has the details).
SHORT = {"critlab": "critlab (JSONL)", "fastchat": "FastChat / MT-Bench", "arena": "Chatbot Arena battles",
         "ultrafeedback": "UltraFeedback / distilabel", "label_studio": "Label Studio (+ config .xml)",
         "argilla": "Argilla 2.x (+ settings.json)"}
KINDS: dict[str, str] = {"prompts": "Prompts (JSONL, CSV, Parquet)",
                         **{name: f"Judgments: {SHORT.get(name, name)}" for name in FORMATS}}
# format -> what the second upload is, and the name its reader looks for beside the first file
COMPANIONS: dict[str, tuple[str, str]] = {"label_studio": ("labelling config (.xml)", "{stem}.config.xml"),
                                          "argilla": ("dataset settings (settings.json)", "{stem}.settings.json")}


def import_upload(ctx: AppContext, user: str, study: str | None, kind: str, path: str | None,
                  companion: str | None = None) -> dict[str, Any]:
    """Import one uploaded file (with its companion file for Label Studio and Argilla) into `study`.

    Returns the operation's result with `kind`; errors name the files by the names they were uploaded as.
    """
    if not study:
        raise ServiceError("choose or type a study name first")
    if kind not in KINDS:
        raise ServiceError(f"unknown kind of file {kind!r}: choose one of {', '.join(KINDS)}")
    if not path:
        raise ServiceError("upload a file first")
    web = web_paths(ctx)
    name = Path(path).name  # Gradio keeps an upload as <temp dir>/<hash>/<its own name>
    if kind == "prompts":
        return {"kind": kind, **run_op(ctx, user, "import_prompts", {"study": study, "path": path, "display_name": name},
                                       web=web)}
    if kind not in COMPANIONS:
        return {"kind": kind, **run_op(ctx, user, "import_judgments", {"study": study, "path": path, "format": kind,
                                                                     "display_name": name}, web=web)}
    what, pattern = COMPANIONS[kind]
    if not companion:
        raise ServiceError(f"a {kind} import needs two files: {name} and its {what}, as the second file")
    web.uploads.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="critlab-import-", dir=web.uploads))
    try:
        main = folder / name
        shutil.copyfile(path, main)
        shutil.copyfile(companion, folder / pattern.format(stem=main.stem))
        return {"kind": kind, **run_op(ctx, user, "import_judgments", {"study": study, "path": str(main),
                                                                     "format": kind, "display_name": name}, web=web)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
