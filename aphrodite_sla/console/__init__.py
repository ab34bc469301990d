"""The incident console: server-rendered pages for the on-call engineer (overview, incidents,
timeline, metrics, components, one incident with its charts), served standalone
(``aphrodite-sla incidents dashboard``), inside the engine's app under ``/console`` and on the
exporter. Every action goes through the incidents and recovery APIs, as the CLI's do."""
from aphrodite_sla.console.app import ConsoleApp
from aphrodite_sla.console.settings import ConsoleSettings

__all__ = ["ConsoleApp", "ConsoleSettings"]
