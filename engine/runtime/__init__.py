"""Running jobs: the Job protocol, the context a job reports through, the workspace it loads into."""

from engine.runtime.context import JobContext
from engine.runtime.job import Job
from engine.runtime.workspace import Workspace

__all__ = ["Job", "JobContext", "Workspace"]
