"""Files for a browser to download (an export's .zip, the agreement report), served by the server's own
route `GET /api/downloads/{token}` and never by Gradio's file route, which serves any file an event
returned to every logged-in person who has its link.

A file is offered to one person under a random token: the route answers only that person's session, only
when their role (and, for a study's file, their membership) allows it, and only until the offer expires.
The files are copies made for the download, in a private temporary folder (mode 0700) of this process: a
single-use offer's file is deleted once it has been sent, every file when its offer expires, and the folder
when the server shuts down.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.services.context import PermissionDenied
from storage.models import Annotator, Role

ROUTE = "/api/downloads/"
SINGLE_USE_SECONDS = 10 * 60  # a link made for one download, if it is not used at once
REUSABLE_SECONDS = 30 * 60  # a link shown on a page to download from for a while
SWEEP_SECONDS = 60.0


class DownloadGone(LookupError):
    """No such offer for this person: never made, made for someone else, used or expired."""


@dataclass
class Offer:
    token: str
    path: Path
    filename: str
    media_type: str
    owner: str
    role: Role  # the role the owner needs still (checked again on the download)
    study_id: int | None  # a study's file: the owner must still be allowed to label it
    expires: float
    single_use: bool


class Downloads:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._offers: dict[str, Offer] = {}
        self._lock = threading.Lock()
        self._dir: Path | None = None
        self._closed = threading.Event()
        self._sweeper: threading.Thread | None = None

    def new_file(self, name: str) -> Path:
        """A fresh path named `name` in the private folder, for the copy a caller is about to write."""
        with self._lock:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="critlab-downloads-"))  # mode 0700
            folder = self._dir / secrets.token_hex(8)
        folder.mkdir()
        return folder / name

    def offer(self, path: Path, owner: str, *, role: Role = "admin", study_id: int | None = None,
              media_type: str = "application/octet-stream", single_use: bool = True) -> str:
        """Offer `path` (a file from `new_file`, which this registry deletes) to `owner`; the download URL."""
        token = secrets.token_urlsafe(32)
        ttl = SINGLE_USE_SECONDS if single_use else REUSABLE_SECONDS
        with self._lock:
            self._offers[token] = Offer(token, path, path.name, media_type, owner, role, study_id,
                                        self._clock() + ttl, single_use)
            if self._sweeper is None:
                self._sweeper = threading.Thread(target=self._sweep_now_and_then, daemon=True,
                                                 name="download-sweeper")
                self._sweeper.start()
        self.sweep()
        return ROUTE + token

    def take(self, token: str, user: Annotator, may_label: Callable[[int, str], bool]) -> Offer:
        """The offer behind `token` for `user` (a single-use one is then no longer offered: delete its file
        with `discard` once sent). PermissionDenied when their role or study access no longer allows it;
        DownloadGone when there is no such offer for them."""
        self.sweep()
        with self._lock:
            offer = self._offers.get(token)
            if (offer is None or offer.role == "admin") and user.role != "admin":
                raise PermissionDenied("admins only")  # every offer so far is an admin's
            if offer is None or offer.owner != user.name:
                raise DownloadGone("no such download: the link has expired or was used (export again)")
            if offer.study_id is not None and not may_label(offer.study_id, user.name):
                raise PermissionDenied("this file belongs to a study you are not a member of")
            if offer.single_use:
                del self._offers[token]
        return offer

    def discard(self, offer: Offer) -> None:
        """Delete an offer's copy (after a single-use download was sent)."""
        with self._lock:
            self._offers.pop(offer.token, None)
        shutil.rmtree(offer.path.parent, ignore_errors=True)

    def sweep(self) -> int:
        """Delete the copies of expired offers; how many."""
        now = self._clock()
        with self._lock:
            gone = [o for o in self._offers.values() if o.expires <= now]
            for o in gone:
                del self._offers[o.token]
        for o in gone:
            shutil.rmtree(o.path.parent, ignore_errors=True)
        return len(gone)

    def _sweep_now_and_then(self) -> None:
        while not self._closed.wait(SWEEP_SECONDS):
            self.sweep()

    def close(self) -> None:
        """Shutdown: every copy goes, offered or not."""
        self._closed.set()
        with self._lock:
            self._offers.clear()
            folder, self._dir = self._dir, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
