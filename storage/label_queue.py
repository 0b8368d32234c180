"""Each annotator's labelling queue: what comes next, what was done, skips, overlap routing."""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import duckdb

from storage import gold, members, serving
from storage.db import Database
from storage.label_sources import LabelSources
from storage.members import ACCESS_ROWS
from storage.models import HumanMethod

# A prompt is ready to label when the label set's runs hold all their samples of it ($need: the sum of
# their n; each holds at most n, one per sample index) and, when the imported responses are a source (or
# the study has no run), it has at least one imported or reference response; or when it came from the Live
# tab with its own samples (storage.label_sources).
# $only: NULL, or a list of prompt ids to look at (a check of a few prompts need not scan the study).
_READY = """
  SELECT p.id, p.position FROM prompt p WHERE p.study_id = $study AND ($only IS NULL OR list_contains($only, p.id)) AND (
    ((SELECT count(*) FROM response r WHERE r.prompt_id = p.id AND list_contains($runs, r.run_id)
            AND r.origin = 'sampled') >= $need
     AND (NOT $imported OR (SELECT count(*) FROM response r WHERE r.prompt_id = p.id AND r.run_id IS NULL
            AND r.origin IN ('imported', 'reference')) >= 1))
    OR EXISTS (SELECT 1 FROM response r JOIN generation_run g ON g.id = r.run_id
               WHERE r.prompt_id = p.id AND g.kind = 'live'))
"""
# Who has labelled what: any current human judgment made in the Label tab or imported.
_LABELLED = f"""
  SELECT DISTINCT prompt_id, judge FROM judgment WHERE study_id = $study AND judge_kind = 'human'
  AND superseded_at IS NULL AND method <> '{HumanMethod.CRITERION_VALID}'
"""
# How many annotators a prompt needs: the study's overlap, one more per re-queue, and the extra
# annotators of a disagreement-flagged prompt. NULL overlap: no limit. Reads rq.n and fl.disagreement:
# a query using it joins, for its prompt alias r,
#   LEFT JOIN (SELECT prompt_id, count(*) AS n FROM requeue GROUP BY prompt_id) rq ON rq.prompt_id = r.id
#   LEFT JOIN prompt_flag fl ON fl.prompt_id = r.id
# (joins, not correlated subqueries: those cost a millisecond even for one prompt).
_NEEDED = """
  CASE WHEN $overlap IS NULL THEN NULL ELSE $overlap + coalesce(rq.n, 0)
    + CASE WHEN coalesce(fl.disagreement, false) THEN $extra ELSE 0 END
  END
"""

# While gold items are served on their own (gold rate > 0), the routine order leaves them out.
_NOT_GOLD = "(NOT $gold OR r.id NOT IN (SELECT prompt_id FROM gold WHERE study_id = $study))"


LEASE_MINUTES = 30  # how long a served, unlabelled item stays reserved for its annotator
# The shared queue order (see _Candidates): how many prompts it holds, how long it may be used before it
# is rebuilt (new prompts that became ready, leases that ran out), and how many entries one request may
# check before it asks the database for the exact answer instead.
CANDIDATES = 1024
REFRESH_SECONDS = 10.0
MAX_CHECKS = 32
MIN_REBUILD_SECONDS = 1.0  # a list that had nothing for someone is rebuilt at most this often
EXACT_TRIES = 3  # the exact answer can be taken by someone else before it is reserved: ask again


@dataclass
class _Candidates:
    """The study's queue order, shared by every annotator: open prompts by (busy count, position).

    Ordering 100k prompts means counting every current label, tens of milliseconds; doing that on
    every request of 16 annotators saturates the machine. So it is computed now and then, and each
    request walks it, re-checking one prompt at a time with point queries under the write lock (so
    capacity is exact). An entry whose count moved since the list was built is dropped, so the list
    keeps to the exact order except for counts that went down (a skip, an expired lease) or prompts
    that became ready since: those wait for the next rebuild (REFRESH_SECONDS, or at once after a
    skip or re-queue). When the list has nothing for someone, the exact query decides.
    """

    built: float
    order: dict[int, int]  # prompt id -> busy count when built, in queue order
    mine: dict[str, set[int]] = field(default_factory=dict)  # entries each annotator labelled
    lock: threading.Lock = field(default_factory=threading.Lock)


_lists: weakref.WeakKeyDictionary[Database, dict[tuple, _Candidates]] = weakref.WeakKeyDictionary()
_build_locks: weakref.WeakKeyDictionary[Database, dict[tuple, threading.Lock]] = weakref.WeakKeyDictionary()
# When each study's lists last went stale: (any list, lists of studies with extra annotators). A list built
# from a snapshot older than that is rebuilt before use (timestamps, not flags, so a rebuild that was
# already running when the change came cannot pass for fresh).
_stale: weakref.WeakKeyDictionary[Database, dict[int | None, tuple[float, float]]] = weakref.WeakKeyDictionary()
_lists_lock = threading.Lock()


def _invalidate(db: Database, study_id: int | None, *, only_extra: bool = False) -> None:
    """Make the next request rebuild these lists (a count went down or a prompt reopened); a None
    study: every study's."""
    now = time.monotonic()
    with _lists_lock:
        stale = _stale.setdefault(db, {})
        any_ = stale.get(study_id, (float("-inf"), float("-inf")))[0]
        stale[study_id] = (any_ if only_extra else now, now)


def invalidate(db: Database, study_id: int) -> None:
    """Rebuild the study's lists on their next use (reservations were released outside this module)."""
    _invalidate(db, study_id)


def _usable(db: Database, key: tuple, cands: _Candidates) -> bool:
    stale = _stale.get(db) or {}
    for study in (key[0], None):
        any_, extra = stale.get(study, (float("-inf"), float("-inf")))
        if cands.built <= any_ or (key[-1] and cands.built <= extra):
            return False
    return True


def _candidates(db: Database, key: tuple, params: dict[str, Any], *, force: bool = False) -> _Candidates:
    """The shared list for `key`, rebuilt when it is stale. A list that is merely old is rebuilt in the
    background (the requests meanwhile walk the old one, every pick being re-checked anyway), so no
    annotator waits tens of milliseconds for it; a missing or invalidated one is built now."""
    with _lists_lock:
        cands = _lists.setdefault(db, {}).get(key)
        build_lock = _build_locks.setdefault(db, {}).setdefault(key, threading.Lock())
        usable = cands is not None and not force and _usable(db, key, cands)
    if usable:
        if time.monotonic() - cands.built > REFRESH_SECONDS and build_lock.acquire(blocking=False):  # type: ignore[union-attr]
            threading.Thread(target=_build_in_background, args=(db, key, params, build_lock), daemon=True,
                             name="label-queue-rebuild").start()
        return cands  # type: ignore[return-value]
    if cands is not None and not build_lock.acquire(blocking=False):
        return cands  # another request is rebuilding it right now: use the old one meanwhile
    if cands is None:
        build_lock.acquire()
    try:
        with _lists_lock:
            latest = _lists[db].get(key)
            if latest is not None and latest is not cands and _usable(db, key, latest):
                return latest  # another thread built it while this one waited
        return _build(db, key, params)
    finally:
        build_lock.release()


def _build_in_background(db: Database, key: tuple, params: dict[str, Any], build_lock: threading.Lock) -> None:
    try:
        _build(db, key, params)
    except duckdb.Error:
        pass  # e.g. the database closed at shutdown: the next request builds it again
    finally:
        build_lock.release()


def _build(db: Database, key: tuple, params: dict[str, Any]) -> _Candidates:
    built = time.monotonic()
    join, order_key = serving.order_sql(params["order"])
    rows = db.cursor().execute(
        f"""WITH ready AS ({_READY}), labelled AS ({_LABELLED}),
            busy AS (SELECT prompt_id, judge AS who FROM labelled
                     UNION
                     SELECT prompt_id, annotator FROM assignment
                     WHERE study_id = $study AND assigned_at > now() - to_minutes($lease)),
            counts AS (SELECT prompt_id, count(*) AS c FROM busy GROUP BY prompt_id)
            SELECT r.id, coalesce(c.c, 0) FROM ready r LEFT JOIN counts c ON c.prompt_id = r.id
            LEFT JOIN (SELECT prompt_id, count(*) AS n FROM requeue GROUP BY prompt_id) rq ON rq.prompt_id = r.id
            LEFT JOIN prompt_flag fl ON fl.prompt_id = r.id {join}
            WHERE ({_NEEDED} IS NULL OR coalesce(c.c, 0) < {_NEEDED}) AND {_NOT_GOLD}
            ORDER BY coalesce(c.c, 0), {order_key} r.position LIMIT $limit""",
        {**{k: params[k] for k in ("study", "runs", "need", "imported", "overlap", "extra", "lease", "gold")},
         "only": None,
         "limit": CANDIDATES}).fetchall()
    cands = _Candidates(built, {pid: c for pid, c in rows})
    with _lists_lock:
        _lists.setdefault(db, {})[key] = cands
    return cands


class _Check(NamedTuple):
    busy: int  # people labelling or holding it
    others: int  # of them, not the annotator
    labelled: bool  # by the annotator
    needed: int | None  # annotators it needs (None: no overlap set)
    has_row: bool  # the annotator has an assignment row for it, live or expired
    flagged: bool  # flagged for disagreement (its extra annotators are part of `needed`)


def _check(cur: duckdb.DuckDBPyConnection, params: dict[str, Any], prompt_id: int) -> _Check:
    """Where one prompt stands for the annotator, in one statement: it runs under the write lock, where every
    round trip makes all writers wait.

    The rows come back raw and are counted here: DuckDB's DISTINCT, GROUP BY and joins cost it about
    two milliseconds even on a dozen rows, Python a few microseconds. `needed` is _NEEDED's rule.
    """
    rows = cur.execute(
        f"""SELECT 'labelled', judge FROM judgment WHERE prompt_id = $p AND study_id = $study AND judge_kind = 'human'
             AND superseded_at IS NULL AND method <> '{HumanMethod.CRITERION_VALID}'
           UNION ALL
           SELECT CASE WHEN study_id = $study AND assigned_at > now() - to_minutes($lease) THEN 'held' ELSE 'row' END,
                  annotator FROM assignment WHERE prompt_id = $p
           UNION ALL
           SELECT 'requeue', NULL FROM requeue WHERE prompt_id = $p
           UNION ALL
           SELECT 'flag', 'yes' FROM prompt_flag WHERE prompt_id = $p AND disagreement""",
        {"study": params["study"], "lease": params["lease"], "p": prompt_id}).fetchall()
    judges = {who for kind, who in rows if kind == "labelled"}
    busy = judges | {who for kind, who in rows if kind == "held"}
    overlap = params["overlap"]
    needed = None
    flagged = any(kind == "flag" for kind, _ in rows)
    if overlap is not None:
        needed = overlap + sum(kind == "requeue" for kind, _ in rows) + (params["extra"] if flagged else 0)
    who = params["who"]
    has_row = any(kind in ("held", "row") and name == who for kind, name in rows)
    return _Check(len(busy), len(busy - {who}), who in judges, needed, has_row, flagged)


def _walk(cur: duckdb.DuckDBPyConnection, cands: _Candidates, params: dict[str, Any],
          skipped: set[int]) -> tuple[int, _Check] | None:
    """The first entry of the shared order this annotator may take now, with where it stands (`_check`), or
    None."""
    who, exclude = params["who"], params["exclude"]
    with cands.lock:
        order = list(cands.order.items())
        mine = set(cands.mine.get(who, ()))
    checks = 0
    for pid, count in order:
        if pid == exclude or pid in skipped or pid in mine:
            continue  # a skipped prompt comes after every other one: the exact query places it
        if checks == MAX_CHECKS:
            return None
        checks += 1
        check = _check(cur, params, pid)
        busy, others, labelled, needed = check.busy, check.others, check.labelled, check.needed
        if labelled:
            with cands.lock:
                cands.mine.setdefault(who, set()).add(pid)
            continue
        if busy != count or (needed is not None and others >= needed):
            with cands.lock:
                cands.order.pop(pid, None)
            continue
        return pid, check
    return None


def _own_reservation(cur: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> tuple[int | None, set[int], bool]:
    """The annotator's oldest open reservation (served, not labelled, not skipped since) that is ready,
    the prompts they skipped, and whether they may label the study at all (an admin or a member:
    storage.members, asked in the same statement).

    A submit releases its reservation (`release`), so the rows read here are few; whether they were
    labelled is then checked for those prompts only, not over every judgment of the annotator.
    """
    # Raw rows, matched here: the anti-join, DISTINCT and ORDER BY cost DuckDB a millisecond on a few rows.
    rows = cur.execute(
        """SELECT 'held', prompt_id, assigned_at FROM assignment WHERE study_id = $study AND annotator = $who
           UNION ALL
           SELECT 'skipped', prompt_id, created_at FROM skip WHERE annotator = $who AND study_id = $study
           UNION ALL """ + ACCESS_ROWS,
        {k: params[k] for k in ("study", "who")}).fetchall()
    if not any(kind == "access" for kind, _, _ in rows):
        return None, set(), False
    last_skip: dict[int, Any] = {}
    for kind, pid, at in rows:
        if kind == "skipped" and (pid not in last_skip or at > last_skip[pid]):
            last_skip[pid] = at
    skipped = set(last_skip)
    exclude = params["exclude"]
    # A reservation not skipped since it was made (a skip deletes it, but a later serve may renew it), oldest first.
    held = [pid for at, pid in sorted((at, pid) for kind, pid, at in rows if kind == "held")
            if pid != exclude and not (pid in last_skip and last_skip[pid] >= at)]
    if not held:
        return None, skipped, True
    done = {r[0] for r in cur.execute(
        f"""SELECT prompt_id FROM ({_LABELLED}) WHERE judge = $who
            AND prompt_id BETWEEN $lo AND $hi AND list_contains($only, prompt_id)""",
        {"study": params["study"], "who": params["who"], "lo": min(held), "hi": max(held), "only": held}).fetchall()}
    held = [pid for pid in held if pid not in done]
    if not held:
        return None, skipped, True
    ready = {r[0] for r in cur.execute(f"SELECT id FROM ({_READY})",
                                       {**{k: params[k] for k in ("study", "runs", "need", "imported")}, "only": held}).fetchall()}
    return next((pid for pid in held if pid in ready), None), skipped, True


def _exact(cur: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> int | None:
    """The queue's definition, over the whole study (slow on a large study: the last resort)."""
    join, order_key = serving.order_sql(params["order"])
    rows = cur.execute(
        f"""WITH ready AS ({_READY}), labelled AS ({_LABELLED}),
            busy AS (
              SELECT prompt_id, judge AS who FROM labelled
              UNION
              SELECT prompt_id, annotator FROM assignment
              WHERE study_id = $study AND assigned_at > now() - to_minutes($lease)),
            counts AS (SELECT prompt_id, count(*) AS c FROM busy WHERE who <> $who GROUP BY prompt_id),
            sk AS (SELECT prompt_id, max(created_at) AS t FROM skip
                   WHERE annotator = $who AND study_id = $study GROUP BY prompt_id)
            SELECT r.id FROM ready r LEFT JOIN sk ON sk.prompt_id = r.id
                 LEFT JOIN counts c ON c.prompt_id = r.id
                 LEFT JOIN (SELECT prompt_id, count(*) AS n FROM requeue GROUP BY prompt_id) rq ON rq.prompt_id = r.id
                 LEFT JOIN prompt_flag fl ON fl.prompt_id = r.id {join}
            WHERE r.id NOT IN (SELECT prompt_id FROM labelled WHERE judge = $who)
              AND ($exclude IS NULL OR r.id <> $exclude)
              AND ({_NEEDED} IS NULL OR coalesce(c.c, 0) < {_NEEDED}) AND {_NOT_GOLD}
            ORDER BY sk.t NULLS FIRST, coalesce(c.c, 0), {order_key} r.position
            LIMIT 1""", {k: v for k, v in params.items() if k != "order"} | {"only": None}).fetchall()
    return rows[0][0] if rows else None


def next_prompt(db: Database, study_id: int, annotator: str, sources: LabelSources,
                exclude: int | None = None, *, overlap: int | None = None, extra: int = 0,
                reserve: bool = True, order: str = "position", gold_rate: float = 0.0) -> int | None:
    """Serve the annotator's next prompt and reserve it for them (`reserve=False`: only look).

    Their own open reservation comes first (so a reload or a restart resumes where they were);
    otherwise a prompt they have not labelled that still needs annotators, counting others' live
    reservations (so people working at the same time get different items), not skipped before
    skipped (oldest skip first), then the least-labelled, then file order. The pick is checked and
    reserved in one serialised transaction, so two requests cannot take the last slot.

    members.NotMember when the annotator may not label the study (not an admin, not a member): nobody
    outside a study is ever served or reserves one of its items.

    Gold items (storage.gold), when `gold_rate` > 0: they leave the routine order and are served on their
    own, unannounced: at a fresh pick, with probability `gold_rate` (gold.draws_gold), the person's next
    gold item not labelled by them comes instead (overlap does not apply: everyone answers every gold item),
    and once nothing else is left the remaining gold items come in turn.
    """
    params = {"study": study_id, **_source_params(sources), "who": annotator, "exclude": exclude, "overlap": overlap,
              "extra": extra, "lease": LEASE_MINUTES, "order": order, "gold": gold_rate > 0}
    seen = members.version(db)  # read before the check, for members.recheck
    own, skipped, allowed = _own_reservation(db.cursor(), params)
    if not allowed:
        raise members.not_member(db, study_id, annotator)
    if own is not None:
        if reserve:
            with db.write():
                members.recheck(db, study_id, annotator, seen)
                _reserve(db, study_id, own, annotator)  # renews the lease while they look at it
        return own
    if params["gold"] and gold.draws_gold(db, study_id, annotator, gold_rate):
        pid = _serve_gold(db, params, seen, gold_rate, reserve)
        if pid is not None:
            return pid
    pid = _next_routine(db, params, seen, skipped, reserve)
    if pid is None and params["gold"]:  # nothing else is left: the gold items not yet labelled come now
        pid = _serve_gold(db, params, seen, gold_rate, reserve)
    return pid


def _next_routine(db: Database, params: dict[str, Any], seen: Any, skipped: set[int], reserve: bool) -> int | None:
    """next_prompt's pick by the queue order (gold items left out while gold is served on its own)."""
    study_id, annotator = params["study"], params["who"]
    key = (study_id, tuple(params["runs"]), params["need"], params["imported"], params["order"], params["gold"],
           params["overlap"], params["extra"])
    cands = _candidates(db, key, params)
    for attempt in range(2 + EXACT_TRIES):
        if attempt == 1 and time.monotonic() - cands.built > MIN_REBUILD_SECONDS:
            cands = _candidates(db, key, params, force=True)  # new prompts may be ready, leases may have ended
        exact = None
        if attempt >= 2:
            # Outside the write lock: on a large study this takes long enough to stall every writer.
            exact = _exact(db.cursor(), params)
            if exact is None:
                return None
        if not reserve:
            if exact is not None:
                return exact
            found = _walk(db.cursor(), cands, params, skipped)
            if found is not None:
                return found[0]
            continue
        with db.write() as cur:
            members.recheck(db, study_id, annotator, seen)  # a removal since the check: refused now
            if exact is None:
                found = _walk(cur, cands, params, skipped)
            else:  # re-checked under the lock: someone may have taken the last slot meanwhile
                check = _check(cur, params, exact)
                ok = not check.labelled and (check.needed is None or check.others < check.needed)
                found = (exact, check) if ok else None
            if found is not None:
                pid, check = found
                _record_serving(cur, params, pid, check)
                _reserve(db, study_id, pid, annotator, new=not check.has_row)
                with cands.lock:
                    cands.order.pop(pid, None)
                return pid
    return None


def _serve_gold(db: Database, params: dict[str, Any], seen: Any, rate: float, reserve: bool) -> int | None:
    """The person's next gold item (storage.gold.next_gold), reserved and recorded as served by "gold" with
    the gold rate as its probability; None when none is open to them."""
    pid = gold.next_gold(db.cursor(), _READY, _LABELLED, params)
    if pid is None or not reserve:
        return pid
    with db.write() as cur:
        members.recheck(db, params["study"], params["who"], seen)
        if gold.next_gold(cur, _READY, _LABELLED, params) != pid:  # labelled in another tab meanwhile
            return None
        serving.record(cur, params["study"], pid, params["who"], serving.GOLD, rate)
        _reserve(db, params["study"], pid, params["who"])
    return pid


def _record_serving(cur: duckdb.DuckDBPyConnection, params: dict[str, Any], prompt_id: int, check: _Check) -> None:
    """Record how this fresh pick was served (storage.serving), under the write lock of the pick; `check` is
    the pick's `_check`, read under the same lock."""
    others, needed = check.others, check.needed
    routine = None if needed is None else needed - (params["extra"] if check.flagged else 0)
    if routine is not None and others >= routine:
        serving.record(cur, params["study"], prompt_id, params["who"], "disagreement", None)
        return
    probability = None
    if params["order"] == "random":
        tier = serving.tier_size(cur, _READY, _LABELLED, params, others)
        probability = 1.0 / tier if tier else None
    serving.record(cur, params["study"], prompt_id, params["who"], params["order"], probability)


def _reserve(db: Database, study_id: int, prompt_id: int, annotator: str, *, new: bool = False) -> None:
    """Reserve (or renew) the prompt for the annotator. `new`: the caller saw, under the write lock held
    now, that no row exists for the pair, so a plain INSERT does (half the cost of the upsert)."""
    with db.write() as cur:
        if new:
            cur.execute("INSERT INTO assignment (study_id, prompt_id, annotator) VALUES (?, ?, ?)",
                        [study_id, prompt_id, annotator])
            return
        cur.execute("""INSERT INTO assignment (study_id, prompt_id, annotator) VALUES (?, ?, ?)
                       ON CONFLICT (prompt_id, annotator) DO UPDATE SET assigned_at = now()""",
                    [study_id, prompt_id, annotator])


def release(db: Database, study_id: int, prompt_id: int, annotator: str) -> None:
    """Drop the annotator's reservation of a prompt they just labelled: their label holds the place now
    (it counts toward the overlap the same way), and the open reservations stay few to look up."""
    with db.write() as cur:
        cur.execute("DELETE FROM assignment WHERE prompt_id = ? AND annotator = ? AND study_id = ?",
                    [prompt_id, annotator, study_id])


def progress(db: Database, study_id: int, annotator: str) -> tuple[int, int]:
    """(prompts this annotator has labelled, prompts in the study)."""
    # _LABELLED narrowed to one judge before counting (the same rows; DuckDB's DISTINCT over every
    # judge's rows first cost a millisecond more on every served item).
    done, total = db.fetchall(
        f"""SELECT (SELECT count(DISTINCT prompt_id) FROM judgment WHERE study_id = $study AND judge = $who
                   AND judge_kind = 'human' AND superseded_at IS NULL
                   AND method <> '{HumanMethod.CRITERION_VALID}'),
                  (SELECT count(*) FROM prompt WHERE study_id = $study)""",
        {"study": study_id, "who": annotator})[0]
    return done, total


class SubmitCheck(NamedTuple):
    may_label: bool  # `who` is an admin or a member of the study
    prompt_study_id: int | None  # the study the prompt belongs to (None: no such prompt)
    sample_ids: list[int]  # the run's samples of the prompt, in sample order (NULL indexes last)


def submit_check(db: Database, study_id: int, prompt_id: int, run_id: int | None, who: str) -> SubmitCheck:
    """What a submit checks before it stores anything, in one statement: whether `who` may label the study,
    which study the prompt is in, and the labelling run's samples of it (more round trips and whole rows
    cost a millisecond more on every submit)."""
    rows = db.fetchall(
        """SELECT 'prompt', study_id, NULL FROM prompt WHERE id = $prompt
           UNION ALL
           SELECT 'sample', id, sample_index FROM response
           WHERE prompt_id = $prompt AND run_id = $run AND origin = 'sampled'
           UNION ALL """ + ACCESS_ROWS,
        {"prompt": prompt_id, "run": run_id, "study": study_id, "who": who})
    samples = sorted((index is None, index or 0, rid) for kind, rid, index in rows if kind == "sample")
    return SubmitCheck(may_label=any(kind == "access" for kind, _, _ in rows),
                       prompt_study_id=next((sid for kind, sid, _ in rows if kind == "prompt"), None),
                       sample_ids=[rid for _, _, rid in samples])


def annotator_progress(db: Database, study_id: int) -> list[tuple[str, int, int]]:
    """Per annotator: (name, prompts labelled, prompts skipped and not labelled)."""
    return [tuple(r) for r in db.fetchall(
        f"""WITH labelled AS ({_LABELLED})
            SELECT a.name,
                   (SELECT count(*) FROM labelled l WHERE l.judge = a.name),
                   (SELECT count(DISTINCT s.prompt_id) FROM skip s WHERE s.study_id = $study AND s.annotator = a.name
                      AND s.prompt_id NOT IN (SELECT prompt_id FROM labelled l WHERE l.judge = a.name))
            FROM annotator a ORDER BY a.id""", {"study": study_id})]


def ready_count(db: Database, study_id: int, run_id: int | None | LabelSources, n: int = 0) -> int:
    """Prompts ready to label: of a label set (LabelSources), or of one run with n samples (None: imported)."""
    sources = run_id if isinstance(run_id, LabelSources) else LabelSources.of_run(run_id, n)
    return db.fetchval(f"SELECT count(*) FROM ({_READY})", {"study": study_id, **_source_params(sources), "only": None})


def _source_params(sources: LabelSources) -> dict[str, Any]:
    """_READY's parameters for a label set (a study with no run labels its imported responses)."""
    return {"runs": list(sources.runs), "need": sources.need, "imported": sources.imported or not sources.runs}


def labelled_history(db: Database, study_id: int, annotator: str) -> list[int]:
    """Prompts this annotator labelled, in the order of their latest submit (oldest first)."""
    return [r[0] for r in db.fetchall(
        """SELECT prompt_id FROM judgment WHERE study_id = ? AND judge = ? AND judge_kind = 'human'
           AND superseded_at IS NULL GROUP BY prompt_id ORDER BY min(created_at), min(id)""", [study_id, annotator])]


def record_skip(db: Database, study_id: int, prompt_id: int, annotator: str) -> None:
    with db.write() as cur:
        cur.execute("INSERT INTO skip (annotator, study_id, prompt_id) VALUES (?, ?, ?)",
                    [annotator, study_id, prompt_id])
        # A skipped item is no longer reserved: someone else may take it now.
        cur.execute("DELETE FROM assignment WHERE prompt_id = ? AND annotator = ?", [prompt_id, annotator])
        db.after_commit(lambda: _invalidate(db, study_id))


def requeue(db: Database, prompt_id: int, created_by: str | None = None) -> None:
    """Ask for one more annotator on this prompt (on top of the study's overlap)."""
    with db.write() as cur:
        cur.execute("INSERT INTO requeue (prompt_id, created_by) VALUES (?, ?)", [prompt_id, created_by])
        db.after_commit(lambda: _invalidate(db, None))


def update_disagreement(db: Database, study_id: int, prompt_id: int) -> bool:
    """Flag the prompt when the humans' blind best picks split, or when a model selector picked a
    different response than the first human did. Returns the flag."""
    with db.write() as cur:
        # One pass over the prompt's current judgments (this runs under the write lock on every submit),
        # the few rows that matter read raw and aggregated here: DuckDB's count(DISTINCT), arg_min and
        # list FILTERs cost it about 2 ms even on a dozen rows.
        rows = cur.execute(
            f"""SELECT judge_kind, response_id, created_at, id FROM judgment
               WHERE study_id = $study AND prompt_id = $prompt AND superseded_at IS NULL AND (
                 (judge_kind = 'human' AND method = '{HumanMethod.BEST}' AND stage = 'blind')
                 OR (judge_kind = 'model' AND method LIKE 'select\\_%' ESCAPE '\\' AND status = 'ok'))
               UNION ALL
               SELECT 'flag', NULL, NULL, disagreement::INTEGER FROM prompt_flag WHERE prompt_id = $prompt""",
            {"study": study_id, "prompt": prompt_id}).fetchall()
        human = [(at, jid, rid) for kind, rid, at, jid in rows if kind == "human" and rid is not None]
        picks = len({rid for _, _, rid in human})
        # arg_min(response_id, created_at): the earliest pick (ids break a tie in the same transaction).
        first = min(human)[2] if human else None
        model = [rid for kind, rid, _, _ in rows if kind == "model"]
        was = next((bool(v) for kind, _, _, v in rows if kind == "flag"), None)
        flag = picks > 1 or (first is not None and any(m is not None and m != first for m in model or []))
        # Written only when it changes (no row reads as false): this runs under the write lock on every submit.
        if flag != bool(was):
            cur.execute("""INSERT INTO prompt_flag (prompt_id, disagreement) VALUES (?, ?)
                           ON CONFLICT (prompt_id) DO UPDATE SET disagreement = excluded.disagreement,
                           updated_at = now()""", [prompt_id, flag])
        if flag and not was:  # the prompt may want extra annotators now
            db.after_commit(lambda: _invalidate(db, study_id, only_extra=True))
    return flag
