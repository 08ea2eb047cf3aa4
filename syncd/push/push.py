"""Keep a labeling project in step with a dataset: adds, changes and deletes, and never a
task that holds human work deleted.

A push reads the dataset's change feed after the target's cursor, decides per item from its
current state and its task link (so replaying a change is harmless), applies the decisions,
and only then moves the cursor. A *verify* compares the whole project with the dataset
instead: it runs on the first push, whenever an import's answer was lost (a crash, a cut
connection: links without a task id), and on request; it adopts tasks an earlier import
made, deletes untouched duplicates, and re-imports tasks deleted by hand.

Before every import the links are written with no task id; after it, with the ids. A crash
in between leaves links a verify settles, so no item ever gets two tasks.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from syncd.catalog.types import (
    Catalog,
    Item,
    PushCounts,
    PushState,
    RunStatus,
    TaskLink,
)
from syncd.config import Config, LabelStudioTarget
from syncd.errors import LeaseLost, Stopped, SyncdError, TransientError
from syncd.logs import scrub
from syncd.push.labelstudio import LabelStudio, Task
from syncd.push.tasks import ItemNotShown, TaskShaper, data_inputs, task_identity

log = structlog.get_logger(__name__)

#: Change rows read per step; the cursor moves after each step is in the project.
CHANGE_CHUNK = 5000
#: Task ids per guarded delete request.
DELETE_BATCH = 500
LEASE_TTL = 600.0
#: Tries of one push when the server fails transiently.
ATTEMPTS = 5
ErrorList = list[str]


class PushBusy(SyncdError):
    """Another push of the same target holds its lease."""

    transient = True


@dataclass
class Plan:
    """What one step would do to the project."""

    imports: list[Item] = field(default_factory=list)
    #: (task id, the item it should show now, the task's meta when read: other tools' keys
    #: in it are kept)
    updates: list[tuple[int, Item, Mapping[str, Any] | None]] = field(default_factory=list)
    #: Tasks of items no longer live: (task, the link's driver and key); task None: unread.
    removals: list[tuple[int, Task | None, tuple[str, str]]] = field(default_factory=list)
    #: Extra tasks of live items (a lost import's, or copied by hand): deleted when they hold
    #: no work, else left alone; the item's own link is not theirs to change.
    duplicates: list[Task] = field(default_factory=list)
    #: Tasks found in the project for live items whose links said otherwise.
    relinks: list[TaskLink] = field(default_factory=list)
    #: Links of items with no task and no live item.
    drops: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0

    def __bool__(self) -> bool:
        return bool(
            self.imports
            or self.updates
            or self.removals
            or self.duplicates
            or self.relinks
            or self.drops
        )

    def absorb(self, other: Plan) -> None:
        self.imports += other.imports
        self.updates += other.updates
        self.removals += other.removals
        self.duplicates += other.duplicates
        self.relinks += other.relinks
        self.drops += other.drops
        self.unchanged += other.unchanged


@dataclass
class PushResult:
    target: str
    dataset: str
    status: RunStatus
    counts: PushCounts
    pushed_through: int
    verified: bool
    dry_run: bool
    run_id: int | None = None
    errors: ErrorList = field(default_factory=list)
    reason: str | None = None
    plan: Plan | None = None


def link_of(item: Item, task_id: int | None, marked: str | None = None) -> TaskLink:
    return TaskLink(item.driver, item.key, task_id, item.etag, item.version, item.change_id, marked)


def stale(link: TaskLink, item: Item) -> bool:
    """The task shows another content than the item has now. Every add or update of an
    item gives it a new change id, also on stores without etags (folders)."""
    return link.marked is not None or link.change_id != item.change_id


class Pusher:
    def __init__(
        self,
        config: Config,
        catalog: Catalog,
        target: LabelStudioTarget,
        *,
        client: LabelStudio | None = None,
        stop: threading.Event | None = None,
        on_progress: Callable[[PushCounts], None] | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.target = target
        self.client = client or LabelStudio(
            str(target.url),
            target.token.resolve(config.base_dir),
            target.project,
            timeout=target.timeout,
        )
        self.stop = stop or threading.Event()
        self.on_progress = on_progress
        self.counts = PushCounts()
        self.errors: ErrorList = []
        self._shaper: TaskShaper | None = None

    def open(self) -> TaskShaper:
        """Check the project and read how it shows items (the first request: a wrong token
        or project fails here, before anything is written)."""
        if self._shaper is None:
            project = self.client.project_info()
            self._shaper = TaskShaper(
                self.config, self.target, data_inputs(project), self.client.storages()
            )
        return self._shaper

    # -- deciding --------------------------------------------------------------------------

    def decide_changes(self, changes: Sequence[tuple[str, str]]) -> Plan | None:
        """The plan for items whose changes were read; None when a link awaits its task id
        (only a verify may decide those)."""
        plan = Plan()
        by_driver: dict[str, list[str]] = {}
        for driver, key in dict.fromkeys(changes):
            by_driver.setdefault(driver, []).append(key)
        for driver, keys in by_driver.items():
            items = self.catalog.rows_of(self.target.dataset, driver, keys)
            links = self.catalog.task_links(self.target.name, driver, keys)
            for key in keys:
                item = items.get(key)
                link = links.get(key)
                live = item is not None and not item.deleted
                if link is not None and link.task_id is None:
                    return None
                if item is not None and live:
                    if link is None:
                        plan.imports.append(item)
                    elif link.task_id is not None and stale(link, item):
                        plan.updates.append((link.task_id, item, None))
                    else:
                        plan.unchanged += 1
                elif link is not None and link.task_id is not None and link.marked is None:
                    plan.removals.append((link.task_id, None, (driver, key)))
        return plan

    def decide_verify(self) -> Plan:
        """The plan that makes the project's syncd tasks equal the dataset's live items."""
        dataset = self.target.dataset
        found: dict[tuple[str, str], list[Task]] = {}
        #: Tasks without syncd's meta (another tool replaced it): adopted through a link.
        unmarked: dict[int, Task] = {}
        for task in self.client.tasks():
            ident = task_identity(task.meta, dataset)
            if ident is not None:
                found.setdefault(ident, []).append(task)
            else:
                unmarked[task.id] = task
        links = {
            (link.driver, link.key): link for link in self.catalog.all_task_links(self.target.name)
        }
        plan = Plan()
        for item in self.catalog.items(dataset):
            ident = (item.driver, item.key)
            tasks = found.pop(ident, [])
            link = links.pop(ident, None)
            keeper = _keeper(tasks, link)
            plan.duplicates.extend(t for t in tasks if t is not keeper)
            if keeper is None and link is not None and link.task_id in unmarked:
                keeper = unmarked[link.task_id]
            if keeper is None:
                plan.imports.append(item)
                continue
            shown = _shown(keeper, ident)
            if stale(shown, item) or task_identity(keeper.meta, dataset) is None:
                plan.updates.append((keeper.id, item, keeper.meta))
            elif link is None or link.task_id != keeper.id or stale(link, item):
                plan.relinks.append(link_of(item, keeper.id))
            else:
                plan.unchanged += 1
        for ident, tasks in found.items():
            link = links.pop(ident, None)
            for task in tasks:
                if not task.meta.get("source_deleted"):
                    plan.removals.append((task.id, task, ident))
                elif link is None or link.task_id != task.id:
                    plan.relinks.append(_shown(task, ident))
        plan.drops.extend(links)
        return plan

    # -- applying --------------------------------------------------------------------------

    def apply(self, plan: Plan, check: Callable[[], None]) -> None:
        shaper = self.open()
        if plan.relinks:
            self.catalog.save_task_links(self.target.name, plan.relinks)
        if plan.drops:
            self.catalog.drop_task_links(self.target.name, plan.drops)
        self.counts.unchanged += plan.unchanged
        batch = self.target.batch
        for start in range(0, len(plan.imports), batch):
            check()
            self._import(plan.imports[start : start + batch], shaper)
        reimport: list[Item] = []
        for task_id, item, meta in plan.updates:
            check()
            try:
                data = shaper.data(item)
            except ItemNotShown as exc:
                self.errors.append(str(exc))
                continue
            if meta is None:
                current = self.client.task(task_id)
                meta = current.meta if current is not None else None
            ours = shaper.meta(item, changed=True)
            if meta is not None and self.client.update_task(task_id, data, _merged(meta, ours)):
                self.catalog.save_task_links(self.target.name, [link_of(item, task_id)])
                self.counts.updated += 1
            else:
                reimport.append(item)  # deleted by hand in the UI
            self._progress()
        for start in range(0, len(reimport), batch):
            self._import(reimport[start : start + batch], shaper)
        for start in range(0, len(plan.removals), DELETE_BATCH):
            check()
            self._remove(plan.removals[start : start + DELETE_BATCH])
        for start in range(0, len(plan.duplicates), DELETE_BATCH):
            check()
            self._remove_duplicates(plan.duplicates[start : start + DELETE_BATCH])

    def _import(self, items: Sequence[Item], shaper: TaskShaper) -> None:
        bodies, shown = [], []
        for item in items:
            try:
                bodies.append({"data": shaper.data(item), "meta": shaper.meta(item)})
            except ItemNotShown as exc:
                self.errors.append(str(exc))
                continue
            shown.append(item)
        if not shown:
            return
        self.catalog.save_task_links(self.target.name, [link_of(i, None) for i in shown])
        ids = self.client.import_tasks(bodies)
        self.catalog.save_task_links(
            self.target.name, [link_of(i, t) for i, t in zip(shown, ids, strict=True)]
        )
        self.counts.imported += len(ids)
        self._progress()

    def _remove(self, removals: Sequence[tuple[int, Task | None, tuple[str, str]]]) -> None:
        gone: list[tuple[str, str]] = []
        candidates: list[tuple[int, tuple[str, str]]] = []
        keep: list[tuple[Task, tuple[str, str]]] = []
        for task_id, task, ident in removals:
            current = task if task is not None else self.client.task(task_id)
            if current is None:
                gone.append(ident)  # already deleted by hand
            elif current.has_work:
                keep.append((current, ident))
            else:
                candidates.append((task_id, ident))
        self.client.delete_untouched([task_id for task_id, _ in candidates])
        for task_id, ident in candidates:
            # The server held back any task that gained work since it was read.
            after = self.client.task(task_id)
            if after is None:
                gone.append(ident)
                self.counts.deleted += 1
            else:
                keep.append((after, ident))
        kept_links = []
        for task, ident in keep:
            if not task.meta.get("source_deleted"):
                self.client.update_meta(task.id, {**task.meta, "source_deleted": True})
            kept_links.append(replace(_shown(task, ident), marked="deleted"))
            self.counts.kept += 1
        if kept_links:
            self.catalog.save_task_links(self.target.name, kept_links)
        if gone:
            self.catalog.drop_task_links(self.target.name, gone)
        self._progress()

    def _remove_duplicates(self, tasks: Sequence[Task]) -> None:
        untouched = [t.id for t in tasks if not t.has_work]
        self.client.delete_untouched(untouched)
        for task_id in untouched:
            if self.client.task(task_id) is None:
                self.counts.deleted += 1
        self._progress()

    def _progress(self) -> None:
        self.counts.writes = self.client.writes
        if self.on_progress is not None:
            self.on_progress(self.counts)


def _merged(theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> dict[str, Any]:
    """A task's meta with syncd's keys replaced and everyone else's kept."""
    meta = {k: v for k, v in theirs.items() if k not in ("syncd", "source_deleted")}
    meta.update(ours)
    return meta


def _keeper(tasks: Sequence[Task], link: TaskLink | None) -> Task | None:
    """Which of an item's tasks stays: the linked one, else one holding work, else the
    oldest."""
    if not tasks:
        return None
    if link is not None:
        for task in tasks:
            if task.id == link.task_id:
                return task
    for task in tasks:
        if task.has_work:
            return task
    return min(tasks, key=lambda t: t.id)


def _shown(task: Task, ident: tuple[str, str]) -> TaskLink:
    """The link a task's meta describes."""
    mark = task.meta.get("syncd")
    mark = mark if isinstance(mark, dict) else {}
    return TaskLink(
        ident[0],
        ident[1],
        task.id,
        mark.get("etag"),
        mark.get("version"),
        int(mark.get("change_id") or 0),
        "deleted" if task.meta.get("source_deleted") else None,
    )


def _changes(
    catalog: Catalog, dataset: str, since: int, head: int
) -> Iterator[list[tuple[str, str, int]]]:
    """(driver, key, change id) of changes after `since` through `head`, in steps."""
    step: list[tuple[str, str, int]] = []
    for change in catalog.changes(dataset, since=since):
        if change.id > head:
            break
        step.append((change.driver, change.key, change.id))
        if len(step) >= CHANGE_CHUNK:
            yield step
            step = []
    if step:
        yield step


def push(
    config: Config,
    catalog: Catalog,
    target: LabelStudioTarget,
    *,
    dry_run: bool = False,
    verify: bool | None = None,
    stop: threading.Event | None = None,
    owner: str | None = None,
    client: LabelStudio | None = None,
    on_progress: Callable[[PushCounts], None] | None = None,
) -> PushResult:
    """Push what changed in `target.dataset` since the last push into its project.

    `verify` None checks the whole project when it is due (first push, links awaiting ids,
    `target.verify_every` elapsed); True always; False only when a link awaits its id.
    """
    pusher = Pusher(config, catalog, target, client=client, stop=stop, on_progress=on_progress)
    state = catalog.push_state(target.name) or PushState(target.name, 0, 0.0)
    if verify is None:
        verify = state.verified_at == 0 or time.time() - state.verified_at >= target.verify_every
    verify = verify or catalog.count_pending_links(target.name) > 0
    if dry_run:
        return _dry_run(pusher, state, catalog.last_change_id(), verify)
    owner = owner or f"{socket.gethostname()}:{os.getpid()}"
    lease = f"push:{target.name}"
    epoch = catalog.claim_lease(lease, owner, LEASE_TTL)
    if epoch is None:
        holder = next((x.owner for x in catalog.leases() if x.name == lease), "")
        if not _gone(holder):
            raise PushBusy(
                f"target {target.name}: a push by {holder or 'another process'} is running; "
                "try again later"
            )
        # A killed push on this machine cannot release its lease; claiming it under its
        # name takes it over at once (the epoch still moves on).
        owner = holder
        epoch = catalog.claim_lease(lease, owner, LEASE_TTL)
        if epoch is None:
            raise PushBusy(f"target {target.name}: another push took the lease; try again")

    def check() -> None:
        if pusher.stop.is_set():
            raise Stopped(f"target {target.name}: stopped between batches")
        if not catalog.renew_lease(lease, owner, epoch, LEASE_TTL):
            raise LeaseLost(f"target {target.name}: another process took the push lease")

    run_id = catalog.begin_push_run(target.name, target.dataset)
    status, reason = RunStatus.SUCCEEDED, None
    attempt = 0
    try:
        while True:
            attempt += 1
            try:
                _push_once(pusher, verify, check)
                break
            except TransientError as exc:
                # An import whose answer was lost may have created tasks: the next attempt
                # checks the whole project, which adopts them instead of importing again.
                if attempt >= ATTEMPTS or pusher.stop.is_set():
                    raise
                log.warning(
                    "push failed; checking the project and trying again",
                    target=target.name,
                    error=scrub(str(exc)),
                    attempt=attempt,
                )
                verify = True
                pusher.stop.wait(min(30.0, 2.0**attempt))
        if pusher.errors:
            status = RunStatus.COMPLETED_WITH_ERRORS
            reason = f"{len(pusher.errors)} item(s) not pushed"
    except BaseException as exc:
        interrupted = isinstance(exc, Stopped | KeyboardInterrupt)
        status = RunStatus.INTERRUPTED if interrupted else RunStatus.FAILED
        reason = scrub(str(exc)) or type(exc).__name__
        _finish(catalog, run_id, pusher, status, reason)
        raise
    finally:
        catalog.release_lease(lease, owner, epoch)
    through = _finish(catalog, run_id, pusher, status, reason)
    log.info(
        "push finished",
        target=target.name,
        dataset=target.dataset,
        status=str(status),
        **pusher.counts.as_dict(),
    )
    return PushResult(
        target.name,
        target.dataset,
        status,
        pusher.counts,
        through,
        verify,
        False,
        run_id,
        pusher.errors,
        reason,
    )


def _push_once(pusher: Pusher, verify: bool, check: Callable[[], None]) -> None:
    catalog, target = pusher.catalog, pusher.target
    pusher.open()
    state = catalog.push_state(target.name) or PushState(target.name, 0, 0.0)
    head = catalog.last_change_id()
    if verify:
        started = time.time()
        pusher.apply(pusher.decide_verify(), check)
        state = PushState(target.name, head, started)
        catalog.save_push_state(state)
    for step in _changes(catalog, target.dataset, state.pushed_through, head):
        plan = pusher.decide_changes([(d, k) for d, k, _ in step])
        if plan is None:
            # An import's answer was lost while this push ran: check the whole project.
            started = time.time()
            pusher.apply(pusher.decide_verify(), check)
            state = PushState(target.name, head, started)
            catalog.save_push_state(state)
            return
        pusher.apply(plan, check)
        state = PushState(target.name, step[-1][2], state.verified_at)
        catalog.save_push_state(state)
    if state.pushed_through < head:
        # The changes left are other datasets': the cursor may pass them.
        catalog.save_push_state(PushState(target.name, head, state.verified_at))


def _gone(owner: str) -> bool:
    """The lease holder is a `host:pid` push on this machine whose process has exited."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _finish(
    catalog: Catalog, run_id: int, pusher: Pusher, status: RunStatus, reason: str | None
) -> int:
    pusher.counts.writes = pusher.client.writes
    saved = catalog.push_state(pusher.target.name)
    through = saved.pushed_through if saved is not None else 0
    catalog.finish_push_run(run_id, status, pusher.counts, through, pusher.errors[:100], reason)
    return through


def _dry_run(pusher: Pusher, state: PushState, head: int, verify: bool) -> PushResult:
    pusher.open()
    plan = Plan()
    if not verify:
        for step in _changes(pusher.catalog, pusher.target.dataset, state.pushed_through, head):
            decided = pusher.decide_changes([(d, k) for d, k, _ in step])
            if decided is None:
                verify = True
                break
            plan.absorb(decided)
    if verify:
        plan = pusher.decide_verify()
    counts = PushCounts(
        imported=len(plan.imports),
        updated=len(plan.updates),
        deleted=len(plan.removals) + len(plan.duplicates),
        unchanged=plan.unchanged,
    )
    return PushResult(
        pusher.target.name,
        pusher.target.dataset,
        RunStatus.SUCCEEDED,
        counts,
        state.pushed_through,
        verify,
        True,
        plan=plan,
    )


def targets_of(config: Config, names: Iterable[str] | None) -> list[LabelStudioTarget]:
    if not names:
        return list(config.targets)
    return [config.target(name) for name in names]
