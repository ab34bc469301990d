"""A small, framework-neutral HTTP router for the recovery REST API: requests in, JSON out.

Why not FastAPI/Starlette: the same routes are served inside the engine's app by our ASGI
middleware (no second app, no dependency on the engine's framework version) and by the
standalone exporter's WSGI process; both hand us method, path, query, headers and body. The
route table also produces the OpenAPI description, so documentation and behaviour cannot drift.

Rules: every mutating route needs ``Authorization: Bearer <token>`` compared in constant time;
with no token configured mutations are refused (403), never open. Bodies are JSON objects of at
most ``MAX_BODY_BYTES``; unknown fields, wrong types and out-of-range values are a 400 naming the
field. A handler that raises an unexpected error answers 500 with its type, never a traceback.
"""
from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aphrodite_sla.export.endpoints import Response
from aphrodite_sla.recovery.model import plain as _plain

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP request as the router sees it (headers with lower-case names)."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> dict[str, Any]:
        """The body as a JSON object ({} when empty); a 400 for anything else."""
        if not self.body.strip():
            return {}
        if len(self.body) > MAX_BODY_BYTES:
            raise ApiError(413, f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            data = json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as err:
            raise ApiError(400, f"body is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "body must be a JSON object")
        return data


class ApiError(Exception):
    """An answer other than 200, with the message the client sees."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Field:
    """One accepted body or query field: its JSON type, whether required, and its range."""

    kind: type
    required: bool = False
    description: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def schema(self) -> dict[str, Any]:
        names = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}
        out: dict[str, Any] = {"type": names[self.kind]}
        if self.description:
            out["description"] = self.description
        if self.choices:
            out["enum"] = list(self.choices)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


def validated(data: Mapping[str, Any], spec: Mapping[str, Field], where: str = "body") -> dict[str, Any]:
    """``data`` checked against ``spec``: unknown or missing fields, wrong types, values out of
    range or not among the choices are a 400 naming the field."""
    unknown = sorted(set(data) - set(spec))
    if unknown:
        raise ApiError(400, f"{where}: unknown field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(spec)) or 'none'}")
    out: dict[str, Any] = {}
    for name, f in spec.items():
        if name not in data:
            if f.required:
                raise ApiError(400, f"{where}: field {name!r} is required")
            continue
        value = data[name]
        if f.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if f.kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if (isinstance(value, bool) and f.kind is not bool) or not isinstance(value, f.kind):
            raise ApiError(400, f"{where}: field {name!r} must be of type {f.schema()['type']}, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ApiError(400, f"{where}: field {name!r} must be finite")
        if f.choices and value not in f.choices:
            raise ApiError(400, f"{where}: field {name!r} must be one of {', '.join(f.choices)}, got {value!r}")
        number = value if isinstance(value, (int, float)) else None
        if number is not None and ((f.minimum is not None and number < f.minimum) or (f.maximum is not None and number > f.maximum)):
            raise ApiError(400, f"{where}: field {name!r} must be in [{f.minimum}, {f.maximum}], got {value!r}")
        if isinstance(value, str) and len(value) > 1024:
            raise ApiError(400, f"{where}: field {name!r} longer than 1024 characters")
        out[name] = value
    return out


Handler = Callable[[dict[str, str], dict[str, Any]], Any]  # (path and query parameters, validated body)


@dataclass(frozen=True)
class Route:
    """One route: ``/circuit-breaker/circuits/{id}/reset`` style templates under the prefix."""

    method: str
    template: str
    handler: Handler
    summary: str
    mutating: bool = False
    body: Mapping[str, Field] = field(default_factory=dict)
    query: Mapping[str, Field] = field(default_factory=dict)
    pattern: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        parts = _PARAM.split(self.template)  # literal, name, literal, name, ..., literal
        regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[A-Za-z0-9_.:-]{{1,128}})" for i, p in enumerate(parts))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))


class Router:
    """Matches a request to a route, checks the token for mutations, runs the handler and turns
    the result (a JSON-safe object, or ``(status, object)``) into a ``Response``."""

    def __init__(self, prefix: str, routes: list[Route], token: str | None) -> None:
        self.prefix = prefix.rstrip("/")
        self.routes = routes
        self._token = token.encode() if token else None

    @property
    def mutations_enabled(self) -> bool:
        return self._token is not None

    def owns(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    def handle(self, request: ApiRequest) -> Response:
        try:
            return self._dispatch(request)
        except ApiError as err:
            return _json(err.status, {"error": err.message})
        except Exception as err:  # a broken component must not take the app down
            logger.exception("aphrodite-sla API: %s %s failed", request.method, request.path)
            return _json(500, {"error": f"internal error: {type(err).__name__}"})

    def _dispatch(self, request: ApiRequest) -> Response:
        sub = request.path[len(self.prefix):] or "/"
        allowed = []
        for route in self.routes:
            match = route.pattern.match(sub)
            if match is None:
                continue
            if route.method != request.method and not (route.method == "GET" and request.method == "HEAD"):
                allowed.append(route.method)
                continue
            if route.mutating:
                self._authorise(request)
            params = match.groupdict()
            if route.query:
                params.update({k: str(v) for k, v in validated(_query_values(request.query, route.query), route.query, "query").items()})
            body = validated(request.json(), route.body) if route.body or request.body.strip() else {}
            result = route.handler(params, body)
            status, payload = result if isinstance(result, tuple) else (200, result)
            return _json(status, payload)
        if allowed:
            raise ApiError(405, f"{request.method} not allowed on {request.path}; use {', '.join(sorted(set(allowed)))}")
        raise ApiError(404, f"no route {request.path}; see /openapi.json")

    def _authorise(self, request: ApiRequest) -> None:
        if self._token is None:
            raise ApiError(403, "mutations are disabled: no API token is configured (set APHRODITE_SLA_API_TOKEN)")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "a bearer token is required: Authorization: Bearer <token>")
        if not hmac.compare_digest(given.strip().encode(), self._token):
            raise ApiError(401, "invalid token")

    def openapi_paths(self) -> dict[str, Any]:
        """The OpenAPI ``paths`` object of every route."""
        paths: dict[str, dict[str, Any]] = {}
        for route in self.routes:
            op: dict[str, Any] = {"summary": route.summary, "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": {"description": "invalid input"}, "404": {"description": "unknown route or id"}}}
            parameters = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in _PARAM.findall(route.template)]
            parameters += [{"name": n, "in": "query", "required": f.required, "schema": f.schema()} for n, f in route.query.items()]
            if parameters:
                op["parameters"] = parameters
            if route.mutating:
                op["security"] = [{"bearer": []}]
                op["responses"].update({"401": {"description": "missing or invalid bearer token"},
                                        "403": {"description": "mutations disabled: no token configured"}})
            if route.body:
                op["requestBody"] = {"required": any(f.required for f in route.body.values()), "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False,
                    "properties": {n: f.schema() for n, f in route.body.items()},
                    "required": [n for n, f in route.body.items() if f.required]}}}}
            paths.setdefault(self.prefix + route.template, {})[route.method.lower()] = op
        return paths


def _query_values(query: Mapping[str, str], spec: Mapping[str, Field]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in query.items():
        f = spec.get(name)
        if f is None:
            out[name] = raw  # reported as unknown by validated()
            continue
        try:
            out[name] = f.kind(raw) if f.kind in (int, float) else raw
        except ValueError:
            raise ApiError(400, f"query: {name!r} must be of type {f.schema()['type']}, got {raw!r}") from None
    return out


def _json(status: int, payload: Any) -> Response:
    return Response(status, "application/json", json.dumps(payload, allow_nan=False, default=_default).encode())


def _default(value: Any) -> Any:
    """JSON for our records: ``to_dict()`` where they have one, dataclasses field by field, enums
    by value; non-finite floats become null."""
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return _plain(to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    value_attr = getattr(value, "value", None)
    if value_attr is not None and isinstance(value_attr, (str, int)):
        return value_attr
    return str(value)
