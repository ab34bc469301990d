"""Every POST route the real engine servers register is classified: inference (measured and shed
by the middleware) or known not to be (administration, tokenizers, renders). A new engine release
that adds a route fails here until it is classified in ``aphrodite_sla.integrations.routes``."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

from aphrodite_sla.integrations import routes

ENTRYPOINTS = {"vllm": "vllm.entrypoints", "aphrodite": "aphrodite.entrypoints"}


def registered_routes(package: str) -> set[tuple[str, str]]:
    """(method, path) of every route a module under ``package`` registers (decorators such as
    ``@router.post("/x")`` and calls such as ``app.add_api_route("/x", ...)``), read from source."""
    root = Path(importlib.import_module(package).__file__).parent  # type: ignore[arg-type]
    found = set()
    for path in root.rglob("*.py"):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("get", "post", "put", "delete", "api_route", "add_api_route")
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                    and node.args[0].value.startswith("/")):
                found.add((node.func.attr, node.args[0].value))
    return found


def test_every_post_route_is_classified(engine):
    post = {path for method, path in registered_routes(ENTRYPOINTS[engine.name]) if method in ("post", "api_route", "add_api_route")}
    assert len(post) > 20, f"found only {len(post)} routes: is the scan still reading the engine's server?"
    unclassified = sorted(p for p in post if not routes.is_inference(p) and p not in routes.NOT_INFERENCE_PATHS
                          and not p.startswith("/v1/"))
    assert unclassified == [], f"{engine.name} {engine.version}: classify these routes in integrations/routes.py"
    for path in ("/v1/chat/completions", "/v1/completions"):
        assert path in post and routes.is_inference(path)
    inference = sorted(p for p in post if routes.is_inference(p))
    assert {"/invocations", "/inference/v1/generate", "/pooling", "/score", "/rerank", "/classify"} <= set(inference)


def test_the_classification_has_no_stale_entries(engine):
    """Each inference path outside /v1/ exists in at least one of the engines (no dead entries)."""
    post = set()
    for package in ENTRYPOINTS.values():
        try:
            post |= {p for _m, p in registered_routes(package)}
        except ModuleNotFoundError:
            continue
    assert sorted(routes.INFERENCE_PATHS - post) == []
