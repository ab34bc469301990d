"""What every receiver is: a name, the configuration it was built from, and ``send``; plus the one
HTTP POST they share (stdlib ``urllib``: no client library at run time for four JSON posts).

``send`` either returns (delivered) or raises ``DeliveryError``; it never blocks past its
configured timeout, so a receiver that does not answer costs one worker for that long and
nothing else. Secrets are read from the environment on every send and never put in an error
message (a URL with a token in it is reported by host only).
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from aphrodite_sla.notify.config import ReceiverConfig
from aphrodite_sla.notify.model import DeliveryError, IncidentFacts

USER_AGENT = "aphrodite-sla-notify/1"


class Receiver(ABC):
    def __init__(self, config: ReceiverConfig, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self._env = env  # None: os.environ at send time (a rotated secret applies at once)

    @property
    def name(self) -> str:
        return self.config.name

    def wants(self, change: str) -> bool:
        return change in self.config.changes

    @abstractmethod
    def send(self, facts: IncidentFacts) -> None:
        """Deliver ``facts`` or raise ``DeliveryError``."""

    def secret(self, key: str) -> str:
        """Secret option ``key`` from its environment variable; a missing one is a retryable
        failure (the operator may set it and restart), named by variable, never by value."""
        var = self.config.secret_env(key)
        if var is None:
            raise DeliveryError(f"{self.name}: {key} is not configured", retryable=False)
        value = (os.environ if self._env is None else self._env).get(var, "")
        if not value:
            raise DeliveryError(f"{self.name}: environment variable {var} ({key}) is not set")
        return value

    def optional_secret(self, key: str) -> str | None:
        return self.secret(key) if key in self.config.options else None


def post_json(url: str, body: Any, *, timeout_s: float, headers: Mapping[str, str] | None = None,
              secret_url: bool = False, accept: tuple[int, ...] = (200, 201, 202, 204)) -> bytes:
    """POST ``body`` as JSON; return the response body on an accepted status. Raises
    ``DeliveryError``: retryable on network errors, timeouts, 408, 429 and 5xx; permanent on other
    4xx (the request itself is wrong). ``secret_url``: the URL holds a token, so errors name its
    host only."""
    shown = urllib.parse.urlsplit(url).netloc if secret_url else url
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            payload = resp.read(65536)
            if resp.status not in accept:
                raise DeliveryError(f"POST {shown}: HTTP {resp.status}")
            return bytes(payload)
    except urllib.error.HTTPError as err:
        detail = err.read(300).decode(errors="replace").strip() if err.fp is not None else ""
        retryable = err.code in (408, 429) or err.code >= 500
        raise DeliveryError(f"POST {shown}: HTTP {err.code} {detail}".rstrip(), retryable=retryable) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DeliveryError(f"POST {shown}: {type(err).__name__}: {reason}") from None
