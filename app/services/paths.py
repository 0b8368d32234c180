"""Which files an admin operation may touch, by caller.

The CLI (in its own process, or through a running server with the admin token from the 0600 lock file)
runs as the database owner's account and names any file. A web admin (a login session) is someone else:
they may read only what was uploaded (Gradio's upload folder) and write only under the exports folder
beside the database, so they cannot publish the lock file as a study's guidelines or drop a file
anywhere the server's account can write.

Operation payloads mark their path fields with `ReadPath` / `WritePath` (`FileAccess` metadata), and
`confine` checks every marked field, nested models included, before the operation runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel

if TYPE_CHECKING:  # context.py marks EngineConfig's tokenizer path with FileAccess, so no import cycle here
    from app.services.context import AppContext


@dataclass(frozen=True)
class FileAccess:
    """Field metadata: the field names a file the operation reads or writes."""

    kind: Literal["read", "write"]


ReadPath = Annotated[str, FileAccess("read")]
WritePath = Annotated[str, FileAccess("write")]
OptionalReadPath = Annotated[str | None, FileAccess("read")]
OptionalWritePath = Annotated[str | None, FileAccess("write")]


@dataclass(frozen=True)
class WebPaths:
    """Where a web caller may read (`uploads`) and write (`exports`). `preset` holds values the server was
    started with (its own tokenizer directory, GGUF and chat template), which a web caller may pass back unchanged; `protected`
    are files no web caller reaches even inside those folders (the database and its lock, key and WAL)."""

    uploads: Path
    exports: Path
    protected: frozenset[Path] = frozenset()
    preset: frozenset[str] = frozenset()


def web_paths(ctx: AppContext) -> WebPaths:
    """The folders of this server: Gradio's upload folder and `<db dir>/exports/`."""
    from gradio.utils import get_upload_folder  # where Gradio puts uploads is Gradio's to say

    from app.services.exports import exports_dir

    protected: frozenset[Path] = frozenset()
    if ctx.db.path != ":memory:":
        db = Path(ctx.db.path).resolve()
        protected = frozenset({db, *(db.with_name(db.name + ext) for ext in (".lock", ".secret", ".wal"))})
    own = ctx.default_engine
    preset = frozenset(v for v in (own.sglang_tokenizer, own.model, own.chat_template) if v)
    return WebPaths(Path(get_upload_folder()).resolve(), exports_dir(ctx).resolve(), protected, preset)


def confine(payload: BaseModel, rules: WebPaths, where: str = "") -> BaseModel:
    """`payload` with every path field resolved (after `..` and symlinks) inside its folder; a relative path
    is taken relative to that folder. ServiceError naming the field when a path leaves it."""
    updates: dict[str, object] = {}
    for name, info in type(payload).model_fields.items():
        value = getattr(payload, name)
        access = next((m for m in info.metadata if isinstance(m, FileAccess)), None)
        if access is not None and isinstance(value, str) and value not in rules.preset:
            updates[name] = str(_inside(f"{where}{name}", value, access.kind, rules))
        elif isinstance(value, BaseModel):
            inner = confine(value, rules, f"{where}{name}.")
            if inner is not value:
                updates[name] = inner
    return payload.model_copy(update=updates) if updates else payload


def _inside(field: str, value: str, kind: Literal["read", "write"], rules: WebPaths) -> Path:
    from app.services.context import ServiceError

    root, what = (rules.uploads, "the uploads folder") if kind == "read" else (rules.exports, "the exports folder")
    if not value.strip():
        raise ServiceError(f"{field}: give a file name")
    if kind == "write":
        root.mkdir(parents=True, exist_ok=True)  # resolve() below must see the real folder
    path = (root / Path(value).expanduser()).resolve()  # an absolute value replaces root
    if path in rules.protected or not path.is_relative_to(root) or path == root:
        verb = "read" if kind == "read" else "write"
        raise ServiceError(f"{field}: a web session may only {verb} files inside {what} ({root}); {value!r} is "
                           "outside it. The CLI (the admin token) names any file.")
    return path
