"""Reading and rewriting an inference request's JSON body for admission control: its priority, an
estimate of its prompt length, and a cap on the tokens it may generate.

Why here and not in the middleware: only an admission policy with a per-request limit (priority
cutoff, prompt length, ``max_tokens`` cap) needs the body, so the middleware calls this module only
then. The body is buffered (bounded by ``max_bytes``: past it the request passes uninspected),
parsed once, and replayed to the application through a ``receive`` of our own, so the engine reads
exactly the bytes we decided on — rewritten or, when anything is odd (not JSON, not an object, too
large, a client gone), the original ones, unchanged: the engine answers malformed requests itself.

Token estimate: text counts ``ceil(chars / 4)`` (the usual English-text rule of thumb; no tokenizer
on the event loop), token-id prompts count their ids. It bounds cost, it does not bill.
"""
from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

# Bodies larger than this pass through uninspected (counted): parsing megabytes of JSON on the
# engine's event loop would stall every stream it serves.
DEFAULT_MAX_INSPECT_BYTES = 8 * 1024 * 1024
CHARS_PER_TOKEN = 4
# Fields that bound the generated tokens: clamped wherever present.
MAX_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# Routes where ``max_tokens`` is the known field, so it is set when the client left it out
# (elsewhere an unknown field would be ignored with a warning per request, or refused).
SET_MAX_TOKENS_PATHS = frozenset({"/v1/completions", "/v1/chat/completions"})


class BodyOutcome(str, Enum):
    """What the middleware did with a body it was asked to inspect (counted per outcome)."""

    INSPECTED = "inspected"  # parsed, nothing rewritten
    REWRITTEN = "rewritten"  # parsed, max_tokens capped
    OVERSIZED = "oversized"  # larger than max_bytes: passed through uninspected
    UNPARSABLE = "unparsable"  # not JSON, or not a JSON object: passed through unchanged
    NOT_JSON = "not_json"  # a content type other than JSON (e.g. multipart audio): not read
    INCOMPLETE = "incomplete"  # the client went away while sending it: passed through as received

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RequestFacts:
    """What admission needs to know about one request. ``prompt_tokens`` is 0 when not estimated."""

    priority: int = 0
    prompt_tokens: int = 0


@dataclass
class BufferedBody:
    """The request messages read so far. ``complete``: the whole body is in ``chunks``; otherwise
    ``pending`` holds what ended the read early (a disconnect) or reading stopped at the size cap."""

    chunks: list[bytes]
    complete: bool
    size: int
    pending: Message | None = None

    @property
    def body(self) -> bytes:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)


# -- reading and replaying -------------------------------------------------------------------------
async def read_body(receive: Receive, max_bytes: int) -> BufferedBody:
    """Read the request body until its end, a disconnect, or more than ``max_bytes``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message.get("type") != "http.request":  # http.disconnect: the client went away
            return BufferedBody(chunks, False, size, message)
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
            size += len(chunk)
        if not message.get("more_body", False):
            return BufferedBody(chunks, True, size)
        if size > max_bytes:
            return BufferedBody(chunks, False, size)


def replay(buffered: BufferedBody, receive: Receive, body: bytes | None = None) -> Receive:
    """A ``receive`` that hands the application the buffered body (``body`` instead, when given:
    the rewritten one) and then defers to the server's own ``receive`` (the disconnect an app
    waits for while streaming)."""
    queue: list[Message] = [{"type": "http.request", "body": buffered.body if body is None else body,
                             "more_body": not buffered.complete}]
    if buffered.pending is not None:
        queue.append(buffered.pending)
    queue.reverse()

    async def replaying_receive() -> Message:
        if queue:
            return queue.pop()
        return await receive()

    return replaying_receive


def header(scope: MutableMapping[str, Any], name: bytes) -> bytes | None:
    """The first value of the (lower-case) request header ``name``."""
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value)
    return None


def is_json(content_type: bytes | None) -> bool:
    """A missing content type is tried as JSON (clients often omit it); any other is not read."""
    return content_type is None or b"json" in content_type.lower()


def set_content_length(scope: MutableMapping[str, Any], length: int) -> None:
    """After a rewrite: the headers the application sees describe the body it reads."""
    headers = scope.get("headers")
    if headers is None:
        return
    value = str(length).encode()
    scope["headers"] = [(k, value) if k == b"content-length" else (k, v) for k, v in headers]


# -- parsing and rewriting ---------------------------------------------------------------------------
def parse(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None (malformed, another JSON type, too deeply nested)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def facts(doc: dict[str, Any], *, estimate_prompt: bool) -> RequestFacts:
    """Priority (vLLM/Aphrodite's ``priority``: lower is served first, default 0) and, when asked,
    the estimated prompt length."""
    priority = _integer(doc.get("priority"))
    prompt = estimate_prompt_tokens(doc) if estimate_prompt else 0
    return RequestFacts(0 if priority is None else priority, prompt)


def estimate_prompt_tokens(doc: dict[str, Any]) -> int:
    """``prompt`` / ``input`` (text, list of texts, token ids, list of token-id lists) and the text
    of ``messages`` (string contents or text parts); images and other parts do not count."""
    tokens = 0
    for key in ("prompt", "input"):
        tokens += _prompt_tokens(doc.get(key))
    messages = doc.get("messages")
    if isinstance(messages, list):
        chars = 0
        for message in messages:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        chars += len(part["text"])
                    elif isinstance(part, str):
                        chars += len(part)
        tokens += _text_tokens(chars)
    return tokens


def cap_max_tokens(doc: dict[str, Any], cap: int, *, set_when_absent: bool) -> bool:
    """Clamp every generation bound in ``doc`` to ``cap`` (in place); with ``set_when_absent`` set
    ``max_tokens`` when none is given. Values of the wrong type are left for the engine to refuse.
    True if ``doc`` changed."""
    changed = False
    present = False
    for key in MAX_TOKEN_FIELDS:
        value = doc.get(key)
        if value is None:
            continue
        present = True
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap:
            doc[key] = cap
            changed = True
    if not present and set_when_absent:
        doc["max_tokens"] = cap
        changed = True
    return changed


def serialize(doc: dict[str, Any]) -> bytes | None:
    """The rewritten body, or None if it cannot be written back (e.g. lone surrogates)."""
    try:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    except (ValueError, TypeError):
        return None


def _prompt_tokens(prompt: Any) -> int:
    if isinstance(prompt, str):
        return _text_tokens(len(prompt))
    if not isinstance(prompt, list) or not prompt:
        return 0
    first = prompt[0]
    if isinstance(first, int):  # token ids
        return len(prompt)
    if isinstance(first, str):
        return sum(_text_tokens(len(p)) for p in prompt if isinstance(p, str))
    if isinstance(first, list):  # a batch of token-id prompts
        return sum(len(p) for p in prompt if isinstance(p, list))
    return 0


def _text_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


__all__ = [
    "DEFAULT_MAX_INSPECT_BYTES", "BodyOutcome", "BufferedBody", "RequestFacts", "cap_max_tokens", "estimate_prompt_tokens", "facts",
    "header", "is_json", "parse", "read_body", "replay", "serialize", "set_content_length",
]
