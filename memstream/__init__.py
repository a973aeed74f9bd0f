"""memstream: an event-driven memory bus for AI agents."""

from memstream.client import Client, EventTooLarge
from memstream.schemas import Feedback, Memory, Observation

__version__ = "0.1.0"

__all__ = ["Client", "EventTooLarge", "Feedback", "Memory", "Observation", "__version__"]
