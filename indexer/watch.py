"""`resources watch`: files that other programs drop into bound slot folders become resources.

For every slot bound to the ``platform`` connection (all workspaces) the watcher follows
``<home>/workspaces/<ws>/storage/<root>/`` recursively with watchfiles. Everything goes
through the service, so blob, record and index entry stay together:

* a file created or changed there is adopted where it lies (``ResourceService.adopt``:
  hashed and extracted in place, never copied over) with that slot and its path under
  the root: a new resource, or the same uri with version + 1 when its bytes differ from
  the record's sha256. Tags, tier, display name, workflow fields and search-index
  overrides of an existing record are carried over to the new version.
* a file removed there loses its record and index entry (``forget_location``); a removed
  folder takes the records below it.
* ignored: the staging folder ``<home>/tmp``, any ``tmp/`` folder inside a root, names
  ending in ``.part`` and editor droppings (watchfiles' default filter: ``*.swp``, ``~``,
  ``.git/`` ...). Symlinks are not followed.

Events are handled by looking at each path as it is now, so a debounced burst of changes
is one persist per file, and a delete followed by a re-create is an update. Once the
watcher is live, and again whenever the set of slots changes or a root folder vanishes (a
delete tidies empty folders away), the roots are scanned, so files written while nobody
watched are registered too (removals are only acted on as events).

A file that changes while it is being adopted is recorded with the hash that was read;
its next change event adopts it again, so the record catches up (doctor reports the
sha256 mismatch in between). Write, close, then let the watcher pick the file up.
"""
from __future__ import annotations

import hashlib
import os
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import watchfiles
from watchfiles import Change, DefaultFilter

from storage.config import DEFAULT_CONNECTION
from storage.errors import NotFound, ResourceError

class WatchedService(Protocol):
    """What the watcher needs of the service facade. A protocol, not an import: the
    indexer layer never imports the faces above it."""
    catalog: Any
    backends: Any
    lifecycle: Any

    def adopt(self, workspace: str, spec: Any) -> Any: ...
    def forget_location(self, connection: str, key: str) -> Any: ...

CONNECTION = DEFAULT_CONNECTION
IGNORED_SUFFIXES = (".part",)
IGNORED_FOLDERS = ("tmp",)


@dataclass(frozen=True)
class WatchedRoot:
    workspace: str
    slots: tuple[str, ...]     # slot names bound to this root (sorted); the first is used
    root: str
    folder: Path               # absolute folder on disk
    key_prefix: str            # storage key of the folder: workspaces/<ws>/storage/<root>


@dataclass
class WatchStats:
    registered: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    skipped_links: int = 0
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"registered": self.registered, "updated": self.updated,
                "removed": self.removed, "unchanged": self.unchanged, "failed": self.failed}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1024 * 1024)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


class SlotWatcher:
    def __init__(self, service: WatchedService, log: Callable[[str], None] | None = None,
                 debounce_ms: int = 1000, step_ms: int = 200,
                 check_interval: float = 1.0) -> None:
        self.service = service
        self.home = service.settings.home.resolve()
        self.tmp_dir = Path(service.settings.tmp_dir).resolve()
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        self.check_interval = check_interval
        self.stats = WatchStats()
        #: Set once the watcher is live and the first scan is done (tests wait on it).
        self.ready = threading.Event()
        self._default_filter = DefaultFilter()
        self._told: set[tuple[str, str]] = set()

    # -- which folders -------------------------------------------------------------------
    def roots(self) -> list[WatchedRoot]:
        grouped: dict[tuple[str, str], list[str]] = {}
        for slot in self.service.catalog.slots.list():
            if slot.connection == CONNECTION:
                grouped.setdefault((slot.workspace, slot.root), []).append(slot.name)
            elif (slot.workspace, slot.name) not in self._told:
                # Object storage has no change feed to follow: say so once per slot.
                self._told.add((slot.workspace, slot.name))
                self.log(f"watch: slot {slot.name!r} ({slot.workspace}) is on connection "
                         f"{slot.connection!r}; watch follows local folders only, use "
                         f"`resources sync-slot {slot.name}`")
        out = []
        for (ws, root), names in sorted(grouped.items()):
            key_prefix = "/".join(["workspaces", ws, "storage", root])
            out.append(WatchedRoot(ws, tuple(sorted(names)), root,
                                   self.home / key_prefix, key_prefix))
        return out

    @staticmethod
    def _signature(roots: list[WatchedRoot]) -> tuple:
        return tuple((r.workspace, r.slots, r.root) for r in roots)

    @staticmethod
    def _identity(roots: list[WatchedRoot]) -> list[tuple[int, int] | None]:
        """Which directories are watched: a root removed and made again is a new one."""
        out: list[tuple[int, int] | None] = []
        for r in roots:
            try:
                st = r.folder.stat()
                out.append((st.st_dev, st.st_ino))
            except OSError:
                out.append(None)
        return out

    def _root_of(self, path: Path, roots: list[WatchedRoot]) -> WatchedRoot | None:
        """The most specific root holding ``path`` (roots may nest)."""
        best = None
        for r in roots:
            if path != r.folder and path.is_relative_to(r.folder):
                if best is None or len(r.folder.parts) > len(best.folder.parts):
                    best = r
        return best

    def ignored(self, path: Path, root: WatchedRoot | None = None) -> bool:
        if path.is_relative_to(self.tmp_dir) or path.name.endswith(IGNORED_SUFFIXES):
            return True
        if not self._default_filter(Change.added, str(path)):
            return True
        if root is not None:
            rel = path.relative_to(root.folder).parts
            if any(seg in IGNORED_FOLDERS for seg in rel[:-1]):
                return True
        return False

    def _watch_filter(self, change: Change, path: str) -> bool:
        p = Path(path)
        return not (p.is_relative_to(self.tmp_dir) or p.name.endswith(IGNORED_SUFFIXES)
                    or not self._default_filter(change, path))

    # -- one path ------------------------------------------------------------------------
    def _key(self, root: WatchedRoot, path: Path) -> str:
        return f"{root.key_prefix}/{path.relative_to(root.folder).as_posix()}"

    def register(self, root: WatchedRoot, path: Path, trust_mtime: bool = False) -> str | None:
        """Persist ``path`` when it is new or its bytes changed; returns what was done.
        ``trust_mtime`` (scans): a file of the record's size not modified since the record
        was written is taken as unchanged without hashing it."""
        svc = self.service
        key = self._key(root, path)
        try:
            # Never through a symbolic link (the file itself, a folder on its way, or the
            # slot folder): a link could lead to the catalog, the secret or another
            # workspace's blobs. The backend refuses such a key; skip it quietly here.
            svc.backends[CONNECTION].path_for(key)
        except ResourceError:
            self.stats.skipped_links += 1
            return None
        try:
            before = path.lstat()
            if not stat.S_ISREG(before.st_mode):
                return None
            if trust_mtime:
                known = svc.catalog.resources.by_location(CONNECTION, key)
                if known is not None and known.size == before.st_size \
                        and before.st_mtime <= known.updated_at:
                    self.stats.unchanged += 1
                    return None
            sha = _sha256(path)
            after = path.lstat()
        except FileNotFoundError:
            return None                       # gone again: its delete event follows
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
            return None                       # still being written: another event follows
        with svc.lifecycle.lock.held():       # a persist of another process is atomic to us
            current = svc.catalog.resources.by_location(CONNECTION, key)
        if current is not None and current.sha256 == sha:
            self.stats.unchanged += 1
            return None
        rel = path.relative_to(root.folder).parts
        spec: dict[str, Any] = {"slot": root.slots[0], "path": "/".join(rel[:-1]) or None,
                                "filename": rel[-1]}
        if current is not None:
            if current.slot in root.slots:
                spec["slot"] = current.slot
            spec.update(_carried_over(current))
        try:
            res = svc.adopt(root.workspace, spec).resource
        except (FileNotFoundError, NotFound):
            return None
        except ResourceError as exc:
            self.stats.failed += 1
            self.stats.errors.append(f"{key}: {exc.message}")
            self.log(f"watch: cannot register {key}: {exc.message}")
            return None
        if current is None:
            self.stats.registered += 1
            self.log(f"watch: registered {res.uri} ({spec['slot']}:{res.path_under_root})")
            return "registered"
        self.stats.updated += 1
        self.log(f"watch: updated {res.uri} to version {res.version} "
                 f"({spec['slot']}:{res.path_under_root})")
        return "updated"

    def forget(self, root: WatchedRoot, path: Path) -> int:
        """``path`` is gone: forget the record there, or every record below a folder."""
        svc = self.service
        key = self._key(root, path)
        keys = [key]
        prefix = key + "/"
        keys += [r.path for r in svc.catalog.resources.under(CONNECTION, prefix)]
        removed = 0
        for k in keys:
            res = svc.forget_location(CONNECTION, k)
            if res is not None:
                removed += 1
                self.stats.removed += 1
                self.log(f"watch: removed {res.uri} ({res.slot}:{res.path_under_root})")
        return removed

    def handle_path(self, path: Path, roots: list[WatchedRoot]) -> None:
        root = self._root_of(path, roots)
        if root is None or self.ignored(path, root):
            return
        try:
            if path.is_symlink():
                return
            if path.is_dir():
                self.scan([root], under=path, roots=roots, trust_mtime=False)   # moved in
            elif path.is_file():
                self.register(root, path)
            elif not path.exists():
                self.forget(root, path)
        except OSError as exc:
            self.stats.failed += 1
            self.log(f"watch: {path}: {exc}")

    def handle(self, changes: Iterable[tuple[Change, str]], roots: list[WatchedRoot]) -> None:
        for path in sorted({Path(p) for _, p in changes}):
            self.handle_path(path, roots)

    def scan(self, targets: list[WatchedRoot], under: Path | None = None,
             roots: list[WatchedRoot] | None = None, trust_mtime: bool = True) -> None:
        """Register every new or changed file below the given roots."""
        roots = roots if roots is not None else targets
        for root in targets:
            base = under or root.folder
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames.sort()
                for name in sorted(filenames):
                    path = Path(dirpath) / name
                    if self._root_of(path, roots) is not root or self.ignored(path, root) \
                            or path.is_symlink():
                        continue
                    try:
                        self.register(root, path, trust_mtime=trust_mtime)
                    except OSError as exc:
                        self.stats.failed += 1
                        self.log(f"watch: {path}: {exc}")

    # -- the loop ------------------------------------------------------------------------
    def run(self, stop_event: threading.Event | None = None,
            once_for: float | None = None) -> WatchStats:
        """Watch until ``stop_event`` is set (or ``once_for`` seconds passed, or Ctrl-C)."""
        stop = stop_event or threading.Event()
        deadline = time.monotonic() + once_for if once_for else None

        def expired() -> bool:
            return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

        while not expired():
            roots = self.roots()
            if not roots:
                self.ready.set()
                self.log("watch: no slot is bound to the platform connection; waiting")
                while not expired() and not self.roots():
                    stop.wait(self.check_interval)
                continue
            for r in roots:
                r.folder.mkdir(parents=True, exist_ok=True)
            signature = self._signature(roots)
            identity = self._identity(roots)
            self.log(f"watch: watching {len(roots)} folder(s): "
                     + ", ".join(f"{r.workspace}:{'/'.join(r.slots)}={r.root}" for r in roots))
            last_check = time.monotonic()
            scanned = False
            for changes in watchfiles.watch(
                    *[r.folder for r in roots], watch_filter=self._watch_filter,
                    debounce=self.debounce_ms, step=self.step_ms, stop_event=stop,
                    rust_timeout=int(self.check_interval * 1000), yield_on_timeout=True,
                    recursive=True):
                if not scanned:        # the watcher is live now: nothing can slip between
                    self.scan(roots)
                    scanned = True
                    self.ready.set()
                if changes:
                    self.handle(changes, roots)
                if expired():
                    break
                if any(r.folder == Path(p) or r.folder.is_relative_to(p)
                       for _, p in changes for r in roots):
                    # A root itself went away (a delete tidies empty folders; a new one
                    # may even reuse the inode): watch the folders afresh.
                    self.log("watch: a watched folder was removed; re-reading the slots")
                    break
                if time.monotonic() - last_check >= self.check_interval:
                    last_check = time.monotonic()
                    if self._signature(self.roots()) != signature or \
                            self._identity(roots) != identity:
                        self.log("watch: slots or folders changed; re-reading them")
                        break
        return self.stats


def _carried_over(res: Any) -> dict[str, Any]:
    """The spec fields of an existing record that a changed file keeps."""
    spec: dict[str, Any] = {"tier": res.tier}
    if res.type == "result":
        spec["type"] = "kv"
    if res.display_name and res.display_name != res.filename:
        spec["display-name"] = res.display_name
    for key, value in (("flow", res.flow), ("step", res.step),
                       ("workflow-id", res.workflow_id)):
        if value:
            spec[key] = value
    if res.tags:
        spec["tags"] = list(res.tags)
    if not res.search_index.is_empty():
        spec["search-index"] = res.search_index.to_json()
        spec["search-index"] = {k: v for k, v in spec["search-index"].items()
                                if v not in (None, [])}
    return spec
