"""Agents, the messages they exchange, and parsing of their outputs."""

from hyperteam.agents.agent import Agent
from hyperteam.agents.messages import AgentOutput, TraceEvent
from hyperteam.agents.parsing import extract_answer, extract_flexible, extract_strict

__all__ = ["Agent", "AgentOutput", "TraceEvent", "extract_answer", "extract_flexible", "extract_strict"]
