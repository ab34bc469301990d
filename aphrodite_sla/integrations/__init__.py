"""Engine integrations: StatLoggers (vLLM, Aphrodite), ASGI middleware, system sampler, stall detector."""
