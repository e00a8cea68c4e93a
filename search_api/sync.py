"""`resources sync-slot SLOT`: adopt objects other programs put under a slot's root.

The object-storage counterpart of `watch` (which follows local folders as they change):
one scan of the slot's prefix, flat, and every object the catalog does not know yet
becomes a resource of that slot, read where it lies and never rewritten. Only keys under
the slot's root are looked at, and each must pass the same path rules as a persist.
"""
from __future__ import annotations

from typing import Any

from storage.errors import BadRequest, InvalidSpec, NotFound, TooLarge

from .service import ResourceService


def sync_slot(svc: ResourceService, workspace: str, name: str) -> dict[str, Any]:
    slot = svc._slot(workspace, name)
    backend = svc.backends.get(slot.connection)
    if backend is None or not backend.can_adopt:
        raise InvalidSpec(f"slot {name!r} is on connection {slot.connection!r}, which "
                          f"cannot adopt objects")
    base = f"workspaces/{workspace}/storage/{slot.root}"
    known = {r.path for r in svc.catalog.resources.under(slot.connection, base + "/")}
    adopted: list[str] = []
    skipped: list[dict[str, str]] = []
    for blob in backend.list(base):
        if blob.key in known:
            continue
        under = blob.key[len(base) + 1:]
        folder, _, leaf = under.rpartition("/")
        try:
            res = svc.adopt(workspace, {"slot": name, "path": folder or None,
                                        "filename": leaf}).resource
            adopted.append(res.uri)
        except NotFound:
            continue                         # deleted since the listing
        except (BadRequest, TooLarge) as exc:
            skipped.append({"path-under-root": under, "reason": exc.message})
    return {"slot": name, "connection": slot.connection, "root": slot.root,
            "adopted": adopted, "skipped": skipped}
