"""aphrodite-sla: SLA monitoring inside an LLM inference server."""
