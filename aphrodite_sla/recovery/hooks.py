"""Operator hooks: what recovery runs for actions that live outside the engine (rollback, scaling,
restart by the orchestrator): an argv command or an HTTP call, each bounded by a timeout.

Why so strict: incident data (an SLA name, a severity) comes from configuration and metrics, and
a hook runs with the server's privileges. A command is an argv list run without a shell, ever;
incident fields reach it only as whole argv elements drawn from a fixed set of placeholders
(``{sla}``, ``{severity}``, ``{episode}``, ``{action}``, ``{observed}``, ``{bound}``), or as fields
of an HTTP hook's JSON body. A hook that exits non-zero, answers outside 2xx or times out failed.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import math
import os
import re
import signal
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aphrodite_sla.events import STALL_ALERT, VIOLATION_ALERT, episode_id, fingerprint
from aphrodite_sla.recovery.model import RecoveryAction
from aphrodite_sla.sla.threshold import SLAViolation, ViolationRule

PLACEHOLDERS = ("sla", "severity", "episode", "action", "observed", "bound")
MAX_TIMEOUT_S = 3600.0
OUTPUT_TAIL_BYTES = 4096
HTTP_METHODS = ("POST", "PUT", "PATCH", "GET")
_BRACED = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class HookConfigError(ValueError):
    """A hook's configuration is invalid (the message names the hook and the field)."""


# -- data ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HookContext:
    """The incident fields a hook may receive (placeholders / JSON body); all plain values."""

    action: str
    sla: str = ""
    severity: str = ""
    episode: str = ""
    observed: float | None = None
    bound: float | None = None

    @classmethod
    def for_violation(cls, action: RecoveryAction | str, violation: SLAViolation | None) -> HookContext:
        """The context of ``action`` run for ``violation`` (None: run by an operator). The episode
        id is rebuilt the way the lifecycle builds it (fingerprint + first breach)."""
        name = str(action)
        if violation is None:
            return cls(action=name)
        alert = fingerprint(STALL_ALERT) if violation.rule is ViolationRule.STALL else fingerprint(VIOLATION_ALERT, sla=violation.metric_name)
        return cls(
            action=name, sla=violation.metric_name, severity=violation.worst_severity.value,
            episode=episode_id(alert, violation.first_breach_time), observed=violation.observed_value, bound=violation.bound,
        )

    def values(self) -> dict[str, str]:
        """Placeholder name -> argv text (numbers in repr-exact form, missing ones empty)."""
        return {
            "sla": self.sla, "severity": self.severity, "episode": self.episode, "action": self.action,
            "observed": _num(self.observed), "bound": _num(self.bound),
        }

    def to_json(self) -> dict[str, Any]:
        """The JSON body of an HTTP hook (non-finite numbers as null)."""
        out: dict[str, Any] = {"action": self.action, "sla": self.sla, "severity": self.severity, "episode": self.episode}
        for key, value in (("observed", self.observed), ("bound", self.bound)):
            out[key] = value if value is not None and math.isfinite(value) else None
        return out


@dataclass(frozen=True)
class HookResult:
    """How one hook run ended: ``code`` is the exit code (negative: killed by that signal) or the
    HTTP status, None when it never got one (not started, timed out, connection failed)."""

    ok: bool
    code: int | None
    output: str  # the tail of stdout+stderr / the response body
    duration_s: float
    error: str = ""  # why it failed, when it did

    def describe(self) -> str:
        if self.ok:
            return f"ok (code {self.code}, {self.duration_s:.2f} s)"
        tail = self.output.strip().splitlines()[-1:] if self.output.strip() else []
        return f"failed: {self.error}" + (f" — {tail[0][:200]}" if tail else "")


class Hook(Protocol):
    """What an action runs: ``run`` never raises for the hook's own failures (they are a result)."""

    timeout_s: float

    async def run(self, context: HookContext) -> HookResult: ...

    def describe(self) -> str: ...


# -- command hooks -------------------------------------------------------------------------------
class CommandHook:
    """An argv command run without a shell; killed (with its process group) at ``timeout_s``."""

    def __init__(self, argv: tuple[str, ...] | list[str], timeout_s: float = 60.0, env: Mapping[str, str] | None = None) -> None:
        self.argv = _checked_argv(argv)
        self.timeout_s = _checked_timeout(timeout_s)
        if env is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise HookConfigError("CommandHook.env: names and values must be strings")
        self.env = dict(env) if env is not None else None

    def describe(self) -> str:
        return f"command {self.argv[0]} ({len(self.argv) - 1} args, timeout {self.timeout_s:g} s)"

    def render(self, context: HookContext) -> list[str]:
        """The argv with each whole-element placeholder replaced (nothing is ever re-parsed)."""
        values = context.values()
        out = []
        for arg in self.argv:
            m = _BRACED.fullmatch(arg)
            out.append(values[m.group(1)] if m else arg)
        return out

    async def run(self, context: HookContext) -> HookResult:
        started = time.monotonic()
        argv = self.render(context)
        env = {**os.environ, **self.env} if self.env is not None else None
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                env=env, start_new_session=True,  # its own process group: a timeout kills its children too
            )
        except OSError as err:
            return HookResult(False, None, "", time.monotonic() - started, f"could not start {argv[0]!r}: {err}")
        assert proc.stdout is not None
        reader = asyncio.ensure_future(_read_tail(proc.stdout, OUTPUT_TAIL_BYTES))
        timed_out = False
        try:
            await asyncio.wait_for(proc.wait(), self.timeout_s)
        except asyncio.TimeoutError:
            timed_out = True
            _kill_group(proc)
            await proc.wait()
        finally:
            if proc.returncode is None:  # we were cancelled: the command must not outlive the action
                _kill_group(proc)
                reader.cancel()
                await proc.wait()
        output = await _finish_reader(reader)
        duration = time.monotonic() - started
        if timed_out:
            return HookResult(False, None, output, duration, f"timed out after {self.timeout_s:g} s (killed)")
        code = proc.returncode
        if code != 0:
            why = f"exited with {code}" if code is not None and code > 0 else f"killed by signal {-(code or 0)}"
            return HookResult(False, code, output, duration, why)
        return HookResult(True, code, output, duration)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass


async def _read_tail(stream: asyncio.StreamReader, limit: int) -> bytes:
    """Everything the command writes, keeping only the last ``limit`` bytes (bounded memory)."""
    buf = bytearray()
    while chunk := await stream.read(65536):
        buf += chunk
        if len(buf) > limit:
            del buf[:-limit]
    return bytes(buf)


async def _finish_reader(reader: asyncio.Future[bytes]) -> str:
    try:
        data = await asyncio.wait_for(reader, 2.0)  # a grandchild outside the group could hold the pipe open
    except asyncio.TimeoutError:  # (wait_for cancelled the reader; our own cancellation propagates)
        return ""
    return data.decode("utf-8", "replace")


# -- HTTP hooks ----------------------------------------------------------------------------------
class HttpHook:
    """An HTTP call with the context as its JSON body (no body for GET); redirects are not followed
    (a hook endpoint that redirects is misconfigured, and following could send the body elsewhere)."""

    def __init__(
        self, url: str, method: str = "POST", headers: Mapping[str, str] | None = None, timeout_s: float = 10.0, verify_tls: bool = True,
    ) -> None:
        self.url = _checked_url(url)
        method = str(method).upper()
        if method not in HTTP_METHODS:
            raise HookConfigError(f"HttpHook.method: one of {', '.join(HTTP_METHODS)}, got {method!r}")
        self.method = method
        self.headers = _checked_headers(headers or {})
        self.timeout_s = _checked_timeout(timeout_s)
        self.verify_tls = bool(verify_tls)

    def describe(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        return f"{self.method} {parts.scheme}://{parts.hostname}{parts.path} (timeout {self.timeout_s:g} s)"  # no query: it may hold a token

    async def run(self, context: HookContext) -> HookResult:
        started = time.monotonic()
        try:
            # urllib's timeout is per socket operation; the outer wait bounds the whole call
            status, body = await asyncio.wait_for(asyncio.to_thread(self._send, context), self.timeout_s + 0.5)
        except asyncio.TimeoutError:
            return HookResult(False, None, "", time.monotonic() - started, f"timed out after {self.timeout_s:g} s")
        except (OSError, ValueError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", err)
            return HookResult(False, None, "", time.monotonic() - started, f"request failed: {reason}")
        duration = time.monotonic() - started
        text = body[-OUTPUT_TAIL_BYTES:].decode("utf-8", "replace")
        if 200 <= status < 300:
            return HookResult(True, status, text, duration)
        return HookResult(False, status, text, duration, f"HTTP {status}")

    def _send(self, context: HookContext) -> tuple[int, bytes]:
        data = None if self.method == "GET" else json.dumps(context.to_json()).encode()
        headers = {"User-Agent": "aphrodite-sla-recovery", **self.headers}
        if data is not None:
            headers.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(self.url, data=data, headers=headers, method=self.method)
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if self.url.startswith("https:"):
            ctx = ssl.create_default_context()
            if not self.verify_tls:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=ctx))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(request, timeout=self.timeout_s) as response:
                return response.status, response.read(1 << 20)
        except urllib.error.HTTPError as err:  # >= 300 without a followed redirect: an answer, not an outage
            try:
                return err.code, err.read(1 << 20) if err.fp is not None else b""
            finally:
                err.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# -- configuration -------------------------------------------------------------------------------
_COMMAND_KEYS = frozenset({"argv", "timeout_s", "env"})
_HTTP_KEYS = frozenset({"url", "method", "headers", "timeout_s", "verify_tls"})


def hooks_from_config(mapping: Mapping[str, Any] | None) -> dict[RecoveryAction, Hook]:
    """``{"deployment_rollback": {"argv": [...], "timeout_s": 60}, "resource_scaling": {"url": ...}}``
    -> hooks by action; every error names the action key and the field."""
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise HookConfigError(f"recovery hooks: a mapping of action -> hook is required, got {type(mapping).__name__}")
    out: dict[RecoveryAction, Hook] = {}
    valid = ", ".join(a.value for a in RecoveryAction)
    for key, spec in mapping.items():
        try:
            action = RecoveryAction(key)
        except ValueError:
            raise HookConfigError(f"recovery hooks[{key!r}]: not a recovery action (one of {valid})") from None
        if not isinstance(spec, Mapping):
            raise HookConfigError(f"recovery hooks[{key!r}]: a mapping with 'argv' or 'url' is required, got {type(spec).__name__}")
        if ("argv" in spec) == ("url" in spec):
            raise HookConfigError(f"recovery hooks[{key!r}]: exactly one of 'argv' (a command) or 'url' (an HTTP call) is required")
        allowed = _COMMAND_KEYS if "argv" in spec else _HTTP_KEYS
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise HookConfigError(f"recovery hooks[{key!r}]: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
        try:
            if "argv" in spec:
                argv = spec["argv"]
                if isinstance(argv, str):
                    raise HookConfigError("argv: a list of strings is required, not one string (no shell is ever used)")
                out[action] = CommandHook(tuple(argv), spec.get("timeout_s", 60.0), spec.get("env"))
            else:
                out[action] = HttpHook(
                    spec["url"], spec.get("method", "POST"), spec.get("headers"), spec.get("timeout_s", 10.0), spec.get("verify_tls", True),
                )
        except (HookConfigError, TypeError) as err:
            raise HookConfigError(f"recovery hooks[{key!r}]: {err}") from None
    return out


def _checked_argv(argv: Any) -> tuple[str, ...]:
    if isinstance(argv, str) or not isinstance(argv, (list, tuple)) or not argv:
        raise HookConfigError("CommandHook.argv: a non-empty list of strings is required (no shell is ever used)")
    if not all(isinstance(a, str) for a in argv):
        raise HookConfigError(f"CommandHook.argv: every element must be a string, got {argv!r}")
    if not argv[0].strip() or _BRACED.search(argv[0]):
        raise HookConfigError(f"CommandHook.argv[0]: the program must be a fixed, non-empty string, got {argv[0]!r}")
    for i, arg in enumerate(argv):
        whole = _BRACED.fullmatch(arg)
        if whole:
            if whole.group(1) not in PLACEHOLDERS:
                raise HookConfigError(f"CommandHook.argv[{i}]: unknown placeholder {arg!r} (known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
        elif _BRACED.search(arg):
            raise HookConfigError(f"CommandHook.argv[{i}]: a placeholder must be a whole argument, got {arg!r}")
    return tuple(argv)


def _checked_timeout(timeout_s: Any) -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not math.isfinite(timeout_s) or not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise HookConfigError(f"timeout_s: a number in (0, {MAX_TIMEOUT_S:g}] seconds is required, got {timeout_s!r}")
    return float(timeout_s)


def _checked_url(url: Any) -> str:
    if not isinstance(url, str):
        raise HookConfigError(f"HttpHook.url: a string is required, got {type(url).__name__}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HookConfigError(f"HttpHook.url: an http:// or https:// URL with a host is required, got {url!r}")
    return url


def _checked_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    if not isinstance(headers, Mapping):
        raise HookConfigError(f"HttpHook.headers: a mapping is required, got {type(headers).__name__}")
    out = {}
    for k, v in headers.items():
        if not isinstance(k, str) or not isinstance(v, str) or any(c in k + v for c in "\r\n\0") or not k.strip():
            raise HookConfigError(f"HttpHook.headers[{k!r}]: a non-empty name and a value, both strings without line breaks, are required")
        out[k] = v
    return out


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


__all__ = ["PLACEHOLDERS", "CommandHook", "Hook", "HookConfigError", "HookContext", "HookResult", "HttpHook", "hooks_from_config"]
