"""User mistakes in UI callbacks become a status message, not a stack trace."""

from __future__ import annotations

import functools
from typing import Any, Callable

import gradio as gr

from app.render import md_literal
from app.services.context import PermissionDenied, ServiceError
from backend.engines.base import EngineError
from storage.fileio import StorageWriteError
from storage.members import NotMember

# StorageWriteError: disk full or read-only storage, which the admin can fix; the operation changed nothing.
USER_ERRORS = (ServiceError, EngineError, ValueError, LookupError, PermissionDenied, NotMember, StorageWriteError)


def warning(e: BaseException | str) -> str:
    """An error as a status line of literal text: messages quote file contents, names and engine output,
    which Gradio's Markdown would otherwise render (a `![x](http://…)` in an imported file fetched an image).

    >>> print(warning(ValueError("line 2: id '![x](http://t/p.png)'")))
    ⚠️ line 2\\: id \\'\\!\\[x\\]\\(http\\:\\/\\/t\\/p\\.png\\)\\'
    """
    return f"⚠️ {md_literal(str(e))}"


def shown_errors(n_out: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """User mistakes become a status message (the first output), not a stack trace."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)  # keeps the signature, so Gradio still injects the gr.Request parameter
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except USER_ERRORS as e:
                msg = warning(e)
                return msg if n_out == 1 else (msg, *[gr.skip()] * (n_out - 1))
        return wrapper
    return deco
