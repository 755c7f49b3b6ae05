"""Red-team probing: a versioned attack catalogue, detectors that grade answers, and a runner."""

from llmloop.evaluators.redteam.catalogue import Catalogue, Probe, load_catalogue
from llmloop.evaluators.redteam.runner import ProbeResult, RedTeamReport, run_redteam

__all__ = ["Catalogue", "Probe", "ProbeResult", "RedTeamReport", "load_catalogue", "run_redteam"]
