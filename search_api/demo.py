"""`make run`: the service on 127.0.0.1:8080 with the fixtures loaded, ready to try.

Loads every file of fixtures/ into workspace ws-acme once (a marker in the data home
says it was done), binds slot `archive` to `reports/acme`, creates a fresh API key,
prints it with three example commands, then serves.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from storage.config import Settings

from .service import ResourceService

WORKSPACE = "ws-acme"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SKIP = {"README.md", "make_fixtures.py", "slow_pdf.py"}


def load_fixtures(service: ResourceService, workspace: str = WORKSPACE) -> int:
    marker = service.settings.home / f".fixtures-loaded-{workspace}"
    if marker.exists():
        return 0
    service.bind_slot(workspace, "archive", "reports/acme")
    items: list[tuple[dict, bytes]] = []
    for path in sorted(FIXTURES.iterdir()):
        if path.name in SKIP or not path.is_file() or path.name.startswith("."):
            continue
        spec = {"filename": path.name, "flow": "demo-flow", "step": "load-fixtures",
                "workflow-id": "wf-demo-1", "tags": ["fixture"]}
        if path.suffix in (".pdf", ".png", ".csv"):
            spec.update({"slot": "archive", "path": "exports/{{input.year}}",
                         "params": {"input": {"year": "2026"}}})
        items.append((spec, path.read_bytes()))
    items.append(({"type": "kv", "filename": "summary.json", "flow": "demo-flow",
                   "step": "summarize", "workflow-id": "wf-demo-1"},
                  b'{"rows": 7, "status": "ok", "note": "demo result"}'))
    count = len(service.persist_many(workspace, items))
    marker.write_text("ok\n")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--load-only", action="store_true", help="Load fixtures and exit.")
    args = parser.parse_args()
    settings = Settings.from_env()
    if not os.environ.get("RESOURCES_PUBLIC_URL"):
        settings.public_url = f"http://{args.host}:{args.port}"
    service = ResourceService(settings)
    loaded = load_fixtures(service)
    print(f"data home: {settings.home} ({loaded} fixtures loaded now)")
    if args.load_only:
        service.close()
        return
    _, key = service.keys.create(WORKSPACE, ["resources.read", "resources.write",
                                             "workspace.admin"], "make run", service.now())
    base = settings.public_url
    print(f"""
API key for {WORKSPACE} (shown once): {key}

Try:
  curl -s -H 'Authorization: Bearer {key}' '{base}/v1/{WORKSPACE}/resources/search?q=zephyrquasar' | jq '.data.items[].uri'
  RESOURCES_API_URL={base} RESOURCES_API_KEY={key} RESOURCES_WORKSPACE={WORKSPACE} .venv/bin/resources search revenue --slot archive
  open {base}/ui/login   (sign in with the key)
""", flush=True)
    import uvicorn

    from .app import create_app
    uvicorn.run(create_app(service=service), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
