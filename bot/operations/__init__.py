"""The use cases behind every front end: the CLI, the Slack commands and the playground parse input,
call one of these and format its typed report. Each takes the parts it needs as arguments; the long
ones take a progress callback and should_stop, a cancel check asked between steps."""

from .adapters import (
    AdapterChange,
    GateRefusedError,
    RetrainReport,
    promote,
    retrain,
    retrain_plan,
    rollback,
)
from .evaluate import CORRECTIONS, EvalHistory, EvalReport, evaluate, qa_eval
from .index import ReindexReport, reindex
from .progress import OperationCancelled, Progress, ProgressFn, ShouldStop

__all__ = [
    "CORRECTIONS",
    "AdapterChange",
    "EvalHistory",
    "EvalReport",
    "GateRefusedError",
    "OperationCancelled",
    "Progress",
    "ProgressFn",
    "ReindexReport",
    "RetrainReport",
    "ShouldStop",
    "evaluate",
    "promote",
    "qa_eval",
    "reindex",
    "retrain",
    "retrain_plan",
    "rollback",
]
