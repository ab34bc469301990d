"""The console inside the engine's ASGI app: the middleware hands ``/console`` requests here.

Why a worker thread: pages read the incident store (which blocks); the engine's event loop only
awaits ``asyncio.to_thread`` and never renders or queries."""
from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from dataclasses import replace
from typing import Any

from aphrodite_sla.console.app import CLIENT_HEADER, MAX_FORM_BYTES, ConsoleApp
from aphrodite_sla.integrations.asgi import read_api_request


async def serve_console(app: ConsoleApp, scope: MutableMapping[str, Any], path: str, receive: Any, send: Any) -> None:
    request = await read_api_request(scope, path, receive, MAX_FORM_BYTES)
    if request is None:
        return
    client = scope.get("client")
    request = replace(request, headers={**request.headers, CLIENT_HEADER: str(client[0]) if client else "unknown"})
    response = await asyncio.to_thread(app.handle, request)
    await send({"type": "http.response.start", "status": response.status,
                "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]})
    await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else response.body})
