"""/openapi.json of a real server: a valid OpenAPI document covering every route, and
property-based requests generated from it (schemathesis 4.x) never get a 5xx."""
from __future__ import annotations

import random
import re

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate

from search_api.routes import routes
from server import error_body, internal_errors, ok_body, start_server, stop_server, upload

MAX_EXAMPLES = 20


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("fuzz-server"))
    with server.client("admin") as c:
        ok_body(c.put("/v1/ws-acme/slots/archive", json={"root": "reports/acme"}))
        uris = [ok_body(upload(c, body, spec), 201)["data"]["uri"] for body, spec in (
            (b"fuzz target text\n", {"filename": "t.txt", "workflow-id": "wf-1", "step": "s"}),
            (b'{"k": 1}', {"type": "kv", "workflow-id": "wf-1"}),
            (b"slotted\n", {"slot": "archive", "path": "exports/2026", "filename": "a.txt"}),
        )]
    server.uris = uris
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def document(fuzz_server) -> dict:
    r = httpx.get(f"{fuzz_server.base}/openapi.json", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def test_openapi_document_is_valid(document, fuzz_server):
    validate(document)                          # raises on any violation
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": fuzz_server.base}]


def test_openapi_documents_every_route(document):
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    for route in routes:
        path = route.path
        for method in route.methods - {"HEAD"}:
            assert (path, method.lower()) in documented, f"{method} {path} is not documented"
    # every keyed route declares the bearer scheme and the error envelope
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1/"):
                assert op.get("security") == [{"bearer": []}], (method, path)
                for code in ("400", "401", "403", "404"):
                    assert code in op["responses"], (method, path, code)
            for code, resp in op["responses"].items():
                if code.startswith("4") and "content" in resp and not path.startswith("/api/"):
                    schema = resp["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path)


def test_openapi_error_paths_match_the_document(fuzz_server, document):
    """Every documented error code of a route is one the route really answers with."""
    with fuzz_server.client("admin") as c:
        err = error_body(c.get("/v1/ws-acme/resources/content",
                               params={"uri": fuzz_server.uris[0]}, headers={"Range": "bytes=99999-"}),
                         416)
        assert err["code"] == "range_not_satisfiable"
    assert "416" in document["paths"]["/v1/{ws}/resources/content"]["get"]["responses"]
    assert "413" in document["paths"]["/v1/{ws}/resources"]["post"]["responses"]
    assert "409" in document["paths"]["/v1/{ws}/resources"]["post"]["responses"]


def _operations(base: str):
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    ops = []
    for result in schema.get_all_operations():
        ops.append(result.ok())
    return ops


def test_generated_requests_never_get_a_5xx(fuzz_server):
    """schemathesis builds requests from /openapi.json (positive and negative data);
    the live server answers each with a 2xx/3xx/4xx, never a 5xx."""
    ops = _operations(fuzz_server.base)
    assert len(ops) >= 15
    auth = {"Authorization": f"Bearer {fuzz_server.keys['admin']}"}
    seen: dict[str, set[int]] = {}
    failures: list[str] = []
    session = requests.Session()

    for op in ops:
        label = f"{op.method.upper()} {op.path}"
        statuses = seen.setdefault(label, set())

        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case):
            rng = random.Random(repr((case.path_parameters, case.query)))
            # Aim most requests at the key's workspace and at real resources, so they get
            # past the 404 of a foreign workspace and reach the handlers.
            if case.path_parameters and "ws" in case.path_parameters and rng.random() < 0.85:
                case.path_parameters["ws"] = "ws-acme"
            # (deletes keep their generated targets: the seeded resources stay for the rest)
            destructive = op.method == "delete"
            if isinstance(case.query, dict) and "uri" in case.query and not destructive \
                    and rng.random() < 0.6:
                case.query["uri"] = rng.choice(fuzz_server.uris)
            if case.path_parameters and "workflow_id" in case.path_parameters \
                    and not destructive and rng.random() < 0.3:
                case.path_parameters["workflow_id"] = "wf-1"
            headers = dict(auth) if rng.random() < 0.95 else {}
            try:
                response = case.call(base_url=fuzz_server.base, session=session,
                                     headers=headers, timeout=30)
            except Exception as exc:  # noqa: BLE001 - the server hung up on us
                failures.append(f"{label}: transport error {exc!r} for {case.as_curl_command()}")
                return
            statuses.add(response.status_code)
            # The one designed 5xx: mode=semantic|hybrid on a server that turned semantic
            # search off (issue 19) answers 501 not_enabled, documented on the route.
            off = response.status_code == 501 and "not_enabled" in response.text \
                and "501" in op.definition.raw.get("responses", {})
            if response.status_code >= 500 and not off:
                failures.append(f"{label}: {response.status_code} {response.text[:200]} "
                                f"for {case.as_curl_command()}")
            elif response.status_code >= 400:
                body = response.json()
                # /api/ is the Breyta CLI face: its failures are {"ok": false, "error"}
                shape = {"ok", "error"} if op.path.startswith("/api/") else {"error"}
                assert set(body) == shape and {"code", "message"} <= set(body["error"]), \
                    (label, body)

        run()

    assert not failures, "\n".join(failures[:20])
    content = seen["GET /v1/{ws}/resources/content"] | seen["GET /signed/{token}"]
    assert content & {200, 206, 304} or content & {416}, seen
    assert not internal_errors(fuzz_server), internal_errors(fuzz_server)
    # the fuzzing reached the handlers, not only the 401/404 gate
    assert any(s & {200, 201, 206} for s in seen.values()), seen
    r = httpx.get(f"{fuzz_server.base}/healthz", timeout=10)
    assert r.status_code == 200


def test_schemathesis_checks_on_the_record_routes(fuzz_server):
    """The default schemathesis checks (server errors, status codes and response schemas
    conform to the document) on the read routes, with real uris."""
    ops = [op for op in _operations(fuzz_server.base)
           if op.method == "get" and re.search(r"/(by-uri|search-index|usage|slots|search)$", op.path)]
    assert ops
    auth = {"Authorization": f"Bearer {fuzz_server.keys['admin']}"}
    from schemathesis.checks import (not_a_server_error, response_schema_conformance,
                                     status_code_conformance, content_type_conformance)
    for op in ops:
        @settings(max_examples=10, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case):
            if case.path_parameters:
                case.path_parameters["ws"] = "ws-acme"
            if isinstance(case.query, dict) and "uri" in case.query:
                case.query["uri"] = fuzz_server.uris[0]
            response = case.call(base_url=fuzz_server.base, headers=auth, timeout=30)
            # 501 not_enabled (semantic search off here) is documented, not a fault
            designed = response.status_code == 501 and "not_enabled" in response.text
            case.validate_response(response, checks=[
                *([] if designed else [not_a_server_error]), status_code_conformance,
                content_type_conformance, response_schema_conformance])
        run()
