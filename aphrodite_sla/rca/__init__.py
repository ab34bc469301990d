"""Root-cause analysis over the series the monitor keeps (see ``graph`` for the causal model)."""
from aphrodite_sla.rca.engine import RCAEngine, create_production_rca_engine
from aphrodite_sla.rca.model import RCAAnalysis, RootCause

__all__ = ["RCAAnalysis", "RCAEngine", "RootCause", "create_production_rca_engine"]
