"""JSON labelling API: the Label tab's two steps (next item, submit) for scripts and other front ends.

The routes call the same service functions as the Label tab, so queueing, reservation, validation and
idempotency behave identically whichever way a label arrives. See docs/api.md.
"""

# No `from __future__ import annotations`: FastAPI reads the Depends() inside Annotated[...] from the
# live annotation, and a string one could not see the closures it names.
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import ConfigDict, Field

from app.services import labelling
from app.services.context import AppContext
from storage.judgments import IdempotencyConflict
from storage.models import Annotator, Stage

LABEL_ROLES = ("admin", "annotator")


class JudgmentsBody(labelling.Answers):
    """A submit: the answers, the order the responses were shown in, and the client's idempotency key.

    The study comes from the path. Unknown fields are refused so a misspelt answer is not silently lost.
    """

    model_config = ConfigDict(extra="forbid")
    prompt_id: int
    shown_order: list[int]
    stage: Stage = "blind"
    idempotency_key: str = Field(min_length=8, max_length=100)
    duration_ms: int | None = Field(None, ge=0, le=labelling.MAX_DURATION_MS)


def label_router(ctx: AppContext, current_user: Callable[..., Annotator],
                 check_json_post: Callable[[Request], None], *, machine_user: str) -> APIRouter:
    """The routes, bound to the server's context, session check and CSRF rule.

    `machine_user` is the name the admin bearer token maps to: a script holding that token is not a
    person, and a human judgment under its name would pollute every agreement figure.
    """
    router = APIRouter(prefix="/api/studies/{study}")

    # Async with no I/O: a sync dependency costs a worker-thread round trip per request.
    async def labeller(user: Annotated[Annotator, Depends(current_user)]) -> Annotator:
        if user.role not in LABEL_ROLES or user.name == machine_user:
            raise HTTPException(403, "log in as an annotator to label")
        return user

    async def same_origin_json(request: Request) -> None:
        check_json_post(request)

    @router.get("/next", response_model=dict[str, Any])
    def next_item(study: str, user: Annotated[Annotator, Depends(labeller)], after: int | None = None) -> Response:
        """The caller's next item, reserved for them (asking again returns the same item until it is
        submitted or skipped); `item` is null when nothing is left for them."""
        item = labelling.next_item(ctx, user.name, study, after=after)
        return _json(b'{"item":' + (item.model_dump_json().encode() if item is not None else b"null") + b"}")

    @router.get("/items/{prompt_id}", response_model=dict[str, Any])
    def open_item(study: str, prompt_id: int, user: Annotated[Annotator, Depends(labeller)],
                  stage: Stage | None = None) -> Response:
        """One item at the caller's latest stage, or `?stage=revealed` for the reveal step after a blind
        submit (the model's view; from then on the caller's labels of this item are revised ones)."""
        item = labelling.open_item(ctx, user.name, study, prompt_id, stage)
        return _json(b'{"item":' + item.model_dump_json().encode() + b"}")

    # Declared in this order so the CSRF check runs before anything reads the body.
    @router.post("/judgments", dependencies=[Depends(same_origin_json)], response_model=dict[str, Any])
    def submit(study: str, body: JudgmentsBody, user: Annotated[Annotator, Depends(labeller)]) -> Response:
        sub = labelling.submission(study=study, **body.model_dump())  # the length limits: 400 naming the field
        try:
            result = labelling.submit(ctx, user.name, sub, source="api")
        except IdempotencyConflict as e:
            raise HTTPException(409, str(e)) from None
        return _json(result.model_dump_json().encode())

    return router


def _json(body: bytes) -> Response:
    """A JSON body serialised by pydantic in one step: the same document as returning model_dump(mode="json")
    (compact, UTF-8), without FastAPI walking the dict again (jsonable_encoder) and json.dumps re-encoding it."""
    return Response(body, media_type="application/json")
