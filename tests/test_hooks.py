"""Operator hooks with real subprocesses and a real local HTTP server."""
from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aphrodite_sla.recovery.hooks import OUTPUT_TAIL_BYTES, CommandHook, HookConfigError, HookContext, HttpHook, hooks_from_config
from aphrodite_sla.recovery.model import RecoveryAction

CTX = HookContext(action="deployment_rollback", sla="ttft; rm -rf / #", severity="major", episode="abc-1", observed=812.5, bound=550.0)


def py(code: str, *args: str, timeout_s: float = 10.0, env: dict[str, str] | None = None) -> CommandHook:
    return CommandHook((sys.executable, "-c", code, *args), timeout_s=timeout_s, env=env)


def gone(pid: int) -> bool:
    """The process no longer runs (absent, or a zombie waiting for a reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_gone(pid: int, timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not gone(pid):
        time.sleep(0.02)
    return gone(pid)


# -- commands ------------------------------------------------------------------------------------
async def test_command_hook_passes_placeholders_as_whole_arguments() -> None:
    hook = py("import sys, json; print(json.dumps(sys.argv[1:]))", "--sla", "{sla}", "{severity}", "{episode}", "{action}", "{observed}", "{bound}")
    result = await hook.run(CTX)
    assert result.ok and result.code == 0 and result.error == ""
    assert json.loads(result.output) == ["--sla", "ttft; rm -rf / #", "major", "abc-1", "deployment_rollback", "812.5", "550.0"]
    assert 0 < result.duration_s < 10 and "ok (code 0" in result.describe()


async def test_command_hook_non_zero_exit_fails_with_output_tail() -> None:
    result = await py("import sys; print('x' * 10000); print('rollback target missing'); sys.exit(4)").run(CTX)
    assert not result.ok and result.code == 4 and result.error == "exited with 4"
    assert len(result.output.encode()) <= OUTPUT_TAIL_BYTES and result.output.rstrip().endswith("rollback target missing")
    assert result.describe() == "failed: exited with 4 — rollback target missing"


async def test_command_hook_is_killed_with_its_children_at_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    result = await py(code, timeout_s=1.0).run(CTX)
    assert time.monotonic() - started < 6
    assert not result.ok and result.code is None and result.error == "timed out after 1 s (killed)"
    assert "started" in result.output
    assert wait_gone(int(pidfile.read_text()))


async def test_command_hook_cancelled_kills_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    hook = py(f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)", timeout_s=60)
    task = asyncio.ensure_future(hook.run(CTX))
    for _ in range(300):
        if pidfile.exists() and pidfile.read_text():
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wait_gone(int(pidfile.read_text()))


async def test_command_hook_signal_missing_program_and_env() -> None:
    killed = await py("import os, signal; os.kill(os.getpid(), signal.SIGTERM)").run(CTX)
    assert not killed.ok and killed.code == -15 and killed.error == "killed by signal 15"
    missing = await CommandHook(("/nonexistent/rollback.sh",), timeout_s=5).run(CTX)
    assert not missing.ok and missing.code is None and "could not start '/nonexistent/rollback.sh'" in missing.error
    env = await py("import os; print(os.environ['SLA_HOOK_TOKEN'], 'PATH' in os.environ)", env={"SLA_HOOK_TOKEN": "t0k"}).run(CTX)
    assert env.ok and env.output.split() == ["t0k", "True"]


@pytest.mark.parametrize(("argv", "match"), [
    ((), "non-empty list"),
    ("rollback.sh --now", "non-empty list"),
    (("",), r"argv\[0\]"),
    (("{sla}",), r"argv\[0\]"),
    (("rollback.sh", "--sla={sla}"), r"argv\[1\]: a placeholder must be a whole argument"),
    (("rollback.sh", "{user}"), r"argv\[1\]: unknown placeholder '\{user\}'"),
    (("rollback.sh", 3), "every element must be a string"),
])
def test_command_hook_validation(argv: Any, match: str) -> None:
    with pytest.raises(HookConfigError, match=match):
        CommandHook(argv, timeout_s=5)


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan"), 3601, True, "5"])
def test_timeouts_are_bounded(timeout: Any) -> None:
    with pytest.raises(HookConfigError, match="timeout_s"):
        CommandHook(("true",), timeout_s=timeout)
    with pytest.raises(HookConfigError, match="timeout_s"):
        HttpHook("http://127.0.0.1/", timeout_s=timeout)


# -- HTTP ----------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})  # type: ignore[attr-defined]
        if self.path.startswith("/slow"):
            time.sleep(3)
        status = {"/fail": 500, "/redirect": 302}.get(self.path, 200)
        payload = b"scaled to 3" if status == 200 else b"upstream exploded"
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/ok")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    httpd.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.seen  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


async def test_http_hook_posts_the_context_as_json(server: tuple[str, list[dict[str, Any]]]) -> None:
    base, seen = server
    result = await HttpHook(f"{base}/scale?token=s3cret", headers={"Authorization": "Bearer x"}, timeout_s=5).run(CTX)
    assert result.ok and result.code == 200 and result.output == "scaled to 3"
    (req,) = seen
    assert req["method"] == "POST" and req["headers"]["Authorization"] == "Bearer x"
    assert req["headers"]["Content-Type"] == "application/json"
    assert json.loads(req["body"]) == {
        "action": "deployment_rollback", "sla": "ttft; rm -rf / #", "severity": "major", "episode": "abc-1", "observed": 812.5, "bound": 550.0,
    }
    assert "s3cret" not in HttpHook(f"{base}/scale?token=s3cret").describe()


async def test_http_hook_get_has_no_body(server: tuple[str, list[dict[str, Any]]]) -> None:
    base, seen = server
    assert (await HttpHook(f"{base}/ok", method="get", timeout_s=5).run(CTX)).ok
    assert seen[0]["method"] == "GET" and seen[0]["body"] == b""


async def test_http_hook_error_status_and_redirect_fail(server: tuple[str, list[dict[str, Any]]]) -> None:
    base, seen = server
    failed = await HttpHook(f"{base}/fail", timeout_s=5).run(CTX)
    assert not failed.ok and failed.code == 500 and failed.error == "HTTP 500" and failed.output == "upstream exploded"
    redirected = await HttpHook(f"{base}/redirect", timeout_s=5).run(CTX)
    assert not redirected.ok and redirected.code == 302
    assert [r["path"] for r in seen] == ["/fail", "/redirect"]  # the redirect was not followed


async def test_http_hook_times_out(server: tuple[str, list[dict[str, Any]]]) -> None:
    base, _ = server
    started = time.monotonic()
    result = await HttpHook(f"{base}/slow", timeout_s=0.5).run(CTX)
    assert time.monotonic() - started < 2.5
    assert not result.ok and result.code is None and "timed out" in result.error


async def test_http_hook_connection_refused() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = await HttpHook(f"http://127.0.0.1:{port}/", timeout_s=2).run(CTX)
    assert not result.ok and result.code is None and result.error.startswith("request failed")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"url": "ftp://host/x"}, "http:// or https://"),
    ({"url": "file:///etc/passwd"}, "http:// or https://"),
    ({"url": "http:///path"}, "with a host"),
    ({"url": "http://h/", "method": "DELETE"}, "method"),
    ({"url": "http://h/", "headers": {"X-A": "b\r\nX-Injected: 1"}}, "line breaks"),
])
def test_http_hook_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(HookConfigError, match=match):
        HttpHook(**kwargs)


# -- configuration -------------------------------------------------------------------------------
def test_hooks_from_config_parses_both_kinds() -> None:
    hooks = hooks_from_config({
        "deployment_rollback": {"argv": ["/opt/rollback.sh", "{sla}"], "timeout_s": 60, "env": {"KUBECONFIG": "/k"}},
        "resource_scaling": {"url": "https://scaler.internal/up", "timeout_s": 5, "verify_tls": False, "headers": {"X-Token": "t"}},
    })
    rollback, scaling = hooks[RecoveryAction.DEPLOYMENT_ROLLBACK], hooks[RecoveryAction.RESOURCE_SCALING]
    assert isinstance(rollback, CommandHook) and rollback.argv == ("/opt/rollback.sh", "{sla}") and rollback.timeout_s == 60
    assert rollback.env == {"KUBECONFIG": "/k"}
    assert isinstance(scaling, HttpHook) and scaling.method == "POST" and not scaling.verify_tls and scaling.timeout_s == 5
    assert hooks_from_config(None) == {} and hooks_from_config({}) == {}


@pytest.mark.parametrize(("mapping", "match"), [
    ({"reboot": {"argv": ["x"]}}, r"hooks\['reboot'\]: not a recovery action"),
    ({"service_restart": ["x"]}, r"hooks\['service_restart'\]: a mapping"),
    ({"service_restart": {"argv": ["x"], "url": "http://h/"}}, r"hooks\['service_restart'\]: exactly one of"),
    ({"service_restart": {"timeout_s": 5}}, r"hooks\['service_restart'\]: exactly one of"),
    ({"service_restart": {"argv": ["x"], "shell": True}}, r"hooks\['service_restart'\]: unknown field\(s\) shell"),
    ({"service_restart": {"argv": "systemctl restart vllm"}}, r"hooks\['service_restart'\]: argv: a list of strings"),
    ({"resource_scaling": {"url": "http://h/", "timeout_s": 0}}, r"hooks\['resource_scaling'\]: timeout_s"),
    ({"resource_scaling": {"url": "gopher://h/"}}, r"hooks\['resource_scaling'\]: HttpHook.url"),
    ("rollback.sh", "a mapping of action -> hook"),
])
def test_hooks_from_config_errors_name_the_key(mapping: Any, match: str) -> None:
    with pytest.raises(HookConfigError, match=match):
        hooks_from_config(mapping)


def test_no_shell_anywhere() -> None:
    """The module never imports a shell-running API (a guard against a later 'quick fix')."""
    source = Path(__file__).resolve().parents[1].joinpath("aphrodite_sla/recovery/hooks.py").read_text()
    for banned in ("create_subprocess_shell", "shell=True", "os.system", "os.popen"):
        assert banned not in source
