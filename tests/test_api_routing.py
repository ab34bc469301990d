"""The recovery API's router: authentication of mutations, validation, errors, OpenAPI."""
from __future__ import annotations

import json

import pytest

from aphrodite_sla.recovery.api_routing import ApiError, ApiRequest, Field, Route, Router, validated

PREFIX = "/api/auto-recovery"


def _router(token: str | None = "s3cret") -> tuple[Router, list]:
    calls: list = []

    def read(p, b):
        return {"id": p.get("id"), "limit": p.get("limit")}

    def write(p, b):
        calls.append((p, b))
        return 202, {"accepted": True, **b}

    def boom(p, b):
        raise RuntimeError("secret detail")

    routes = [
        Route("GET", "/things/{id}", read, "read one", query={"limit": Field(int, minimum=1, maximum=10)}),
        Route("POST", "/things/{id}/poke", write, "poke", mutating=True,
              body={"by": Field(str), "count": Field(int, required=True, minimum=1, maximum=5), "mode": Field(str, choices=("a", "b"))}),
        Route("GET", "/boom", boom, "fails"),
    ]
    return Router(PREFIX, routes, token), calls


def _req(method: str, path: str, body: object = None, token: str | None = None, query: dict | None = None) -> ApiRequest:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return ApiRequest(method, PREFIX + path, query or {}, headers, raw)


def _answer(router: Router, request: ApiRequest) -> tuple[int, dict]:
    response = router.handle(request)
    return response.status, json.loads(response.body)


def test_reads_need_no_token_and_parse_path_and_query() -> None:
    router, _ = _router()
    assert _answer(router, _req("GET", "/things/abc", query={"limit": "3"})) == (200, {"id": "abc", "limit": "3"})
    assert _answer(router, _req("HEAD", "/things/abc"))[0] == 200


def test_mutation_needs_the_exact_bearer_token() -> None:
    router, calls = _router()
    body = {"count": 2}
    assert _answer(router, _req("POST", "/things/x/poke", body))[0] == 401
    assert _answer(router, _req("POST", "/things/x/poke", body, token="wrong"))[0] == 401
    assert _answer(router, _req("POST", "/things/x/poke", body, token="s3cret" + "x"))[0] == 401
    assert calls == []
    status, payload = _answer(router, _req("POST", "/things/x/poke", body, token="s3cret"))
    assert status == 202 and payload == {"accepted": True, "count": 2}
    assert calls == [({"id": "x"}, {"count": 2})]


def test_no_token_configured_refuses_every_mutation() -> None:
    router, calls = _router(token=None)
    status, payload = _answer(router, _req("POST", "/things/x/poke", {"count": 1}, token=""))
    assert status == 403 and "APHRODITE_SLA_API_TOKEN" in payload["error"]
    assert _answer(router, _req("POST", "/things/x/poke", {"count": 1}, token="anything"))[0] == 403
    assert calls == [] and not router.mutations_enabled


@pytest.mark.parametrize(("body", "needle"), [
    ({}, "'count' is required"),
    ({"count": "2"}, "must be of type integer"),
    ({"count": True}, "must be of type integer"),
    ({"count": 9}, "must be in [1, 5]"),
    ({"count": 1, "mode": "c"}, "must be one of a, b"),
    ({"count": 1, "extra": 1}, "unknown field(s) extra"),
    (b"{not json", "not valid JSON"),
    ([1, 2], "must be a JSON object"),
])
def test_invalid_bodies_are_a_400_naming_the_field(body: object, needle: str) -> None:
    router, calls = _router()
    status, payload = _answer(router, _req("POST", "/things/x/poke", body, token="s3cret"))
    assert status == 400 and needle in payload["error"]
    assert calls == []


def test_unknown_routes_methods_and_failures() -> None:
    router, _ = _router()
    assert _answer(router, _req("GET", "/nothing"))[0] == 404
    assert _answer(router, _req("DELETE", "/things/x"))[0] == 405
    assert _answer(router, _req("GET", "/things/x/poke"))[0] == 405
    assert _answer(router, _req("GET", "/things/x", query={"limit": "0"}))[0] == 400
    assert _answer(router, _req("GET", "/things/x", query={"limit": "many"}))[0] == 400
    assert _answer(router, _req("GET", "/things/x", query={"other": "1"}))[0] == 400
    assert _answer(router, _req("GET", "/things/" + "a" * 200))[0] == 404  # ids are bounded
    status, payload = _answer(router, _req("GET", "/boom"))
    assert status == 500 and "secret detail" not in payload["error"] and "RuntimeError" in payload["error"]


def test_oversized_body_is_refused() -> None:
    router, calls = _router()
    status, _ = _answer(router, _req("POST", "/things/x/poke", b'{"count": 1, "by": "' + b"x" * 70_000 + b'"}', token="s3cret"))
    assert status == 413 and calls == []


def test_openapi_describes_every_route_with_security_on_mutations() -> None:
    router, _ = _router()
    paths = router.openapi_paths()
    assert set(paths) == {PREFIX + "/things/{id}", PREFIX + "/things/{id}/poke", PREFIX + "/boom"}
    poke = paths[PREFIX + "/things/{id}/poke"]["post"]
    assert poke["security"] == [{"bearer": []}]
    schema = poke["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["count"] and schema["additionalProperties"] is False
    assert "security" not in paths[PREFIX + "/things/{id}"]["get"]


def test_validated_converts_whole_floats_and_rejects_non_finite() -> None:
    spec = {"n": Field(int), "x": Field(float)}
    assert validated({"n": 3.0, "x": 2}, spec) == {"n": 3, "x": 2.0}
    with pytest.raises(ApiError, match="finite"):
        validated({"x": float("inf")}, spec)


def test_the_standalone_exporter_forwards_api_calls_to_the_monitor_process() -> None:
    """The exporter's server process answers /metrics from memory but passes API calls (with
    their headers and body) to the engine's process, where the router checks the token."""
    import urllib.error
    import urllib.request

    from aphrodite_sla.export.server import start_exporter
    from aphrodite_sla.sla.manager import SLAManager

    router, calls = _router()
    exporter, port, _ = start_exporter(SLAManager([]), 0, api=router.handle)
    try:
        base = f"http://127.0.0.1:{port}{PREFIX}"
        with urllib.request.urlopen(f"{base}/things/abc?limit=2", timeout=10) as r:
            assert json.loads(r.read()) == {"id": "abc", "limit": "2"}
        request = urllib.request.Request(f"{base}/things/abc/poke", data=b'{"count": 3}', method="POST",
                                         headers={"Authorization": "Bearer s3cret", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 202
        assert calls == [({"id": "abc"}, {"count": 3})]
        unauthorised = urllib.request.Request(f"{base}/things/abc/poke", data=b'{"count": 3}', method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(unauthorised, timeout=10)
        assert err.value.code == 401 and len(calls) == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert r.status == 200
    finally:
        exporter.shutdown()
        exporter.server_close()
