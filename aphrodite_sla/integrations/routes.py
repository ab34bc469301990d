"""Which HTTP routes of an engine's server run inference: the requests the middleware measures and
the admission controller sheds.

Why a maintained list: the engines serve inference far beyond ``/v1/`` (SageMaker's
``/invocations``, the token-in/token-out ``/inference/v1/generate``, Cohere's ``/cohere/v2/chat``,
pooling, scoring, reranking, classification, Aphrodite's KoboldAI ``/api/v1/generate``), and
under ``/v1/`` they also serve listings, tokenizers, template renders and admin calls that are not
inference and would dilute a latency SLA. The contract tests scan every POST route the installed
vLLM and Aphrodite wheels register and fail on one that is in neither list, so a new engine
release cannot add an inference route we silently miss (``tests/contract/test_routes.py``).
"""
from __future__ import annotations

# Inference outside /v1/ (vLLM 0.32, Aphrodite 0.24).
INFERENCE_PATHS = frozenset({
    "/invocations",
    "/inference/v1/generate",
    "/cohere/v2/chat",
    "/pooling",
    "/classify",
    "/score",
    "/rerank",
    "/v2/rerank",
    "/v2/embed",
    "/generative_scoring",
    "/api/v1/generate",
    "/api/latest/generate",
    "/api/extra/generate/stream",
})

# Under /v1/ but not inference: listings, tokenizer utilities, LoRA administration, cancellation.
NOT_INFERENCE_V1 = frozenset({
    "/v1/models",
    "/v1/tokenize",
    "/v1/detokenize",
    "/v1/load_lora_adapter",
    "/v1/unload_lora_adapter",
    "/v1/messages/count_tokens",
})
# Suffixes of /v1/ routes that only template or cancel (no model run).
NOT_INFERENCE_SUFFIXES = ("/render", "/derender", "/cancel")

# POST routes of the engines' servers that are not inference (administration, weights, profiling,
# tokenizers, cache resets, sleep/wake, distributed control). The contract test requires every
# POST route to be inference or in this set.
NOT_INFERENCE_PATHS = frozenset({
    "/abort_requests", "/inference/v1/abort_requests", "/api/extra/abort", "/api/extra/generate/check",
    "/api/extra/tokencount", "/api/latest/config/soft_prompt", "/api/v1/config/soft_prompt", "/clear",
    "/collective_rpc", "/detokenize", "/tokenize", "/fault_tolerance/apply", "/finish_weight_update",
    "/init_weight_transfer_engine", "/is_scaling_elastic_ep", "/scale_elastic_ep", "/pause", "/resume", "/ping",
    "/release_kv_cache_memory", "/reset_encoder_cache", "/reset_mm_cache", "/reset_prefix_cache", "/sleep",
    "/wake_up", "/start_draft_weight_update", "/start_profile", "/stop_profile", "/start_weight_update",
    "/shutdown_weight_transfer_engine", "/update_weight_version", "/update_weights", "/weight_checker",
    "/cohere/v2/chat/render", "/keys/batch_allocate", "/keys/batch_exists", "/keys/confirm_write",
    "/keys/get_locations", "/register", "/rank/{rank}/initialize",
})


def is_inference(path: str) -> bool:
    """True for a route that runs the model (see the module docstring)."""
    if path in INFERENCE_PATHS:
        return True
    if not path.startswith("/v1/"):
        return False
    if path in NOT_INFERENCE_V1 or path.startswith("/v1/models/"):
        return False
    return not path.endswith(NOT_INFERENCE_SUFFIXES)
