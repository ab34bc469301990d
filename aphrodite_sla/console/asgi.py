"""The console inside the engine's ASGI app: the middleware hands ``/console`` requests here.

Why a worker thread: pages read the incident store (which blocks); the engine's event loop only
awaits ``asyncio.to_thread`` and never renders or queries."""
from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from aphrodite_sla.console.app import CLIENT_HEADER, MAX_FORM_BYTES, ConsoleApp
from aphrodite_sla.recovery.api_routing import ApiRequest


async def serve_console(app: ConsoleApp, scope: MutableMapping[str, Any], path: str, receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        if message.get("type") != "http.request":
            return  # the client went away
        body += message.get("body", b"")
        if len(body) > MAX_FORM_BYTES or not message.get("more_body", False):
            break
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
    client = scope.get("client")
    headers[CLIENT_HEADER] = str(client[0]) if client else "unknown"
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    request = ApiRequest(scope.get("method", "GET"), path, query, headers, body[: MAX_FORM_BYTES + 1])
    response = await asyncio.to_thread(app.handle, request)
    await send({"type": "http.response.start", "status": response.status,
                "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]})
    await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else response.body})
