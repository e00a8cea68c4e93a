"""`python -m bench.server HOME PORT`: a real uvicorn serving
``create_app(service=ResourceService(HOME))`` on 127.0.0.1 (what `resources serve` runs,
with the service built by the benchmark so it points at the benchmark's data home)."""
from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    import uvicorn

    from search_api.app import create_app
    from search_api.service import ResourceService
    from storage.config import Settings

    home, port = Path(sys.argv[1]), int(sys.argv[2])
    settings = Settings.from_env(home)
    settings.public_url = f"http://127.0.0.1:{port}"
    service = ResourceService(settings, log=lambda msg: print(msg, file=sys.stderr))
    uvicorn.run(create_app(service=service), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
