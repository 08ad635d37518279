"""belfry: a client for the clustered Celery beat replacement, and `belfry-celery`, which moves
Celery beat schedules into it.

Invariant: importing `belfry` needs only grpcio and protobuf; the exporters import Celery,
Django or RedBeat only when they run.
"""

from .client import Client, has_field, schedule_spec
from .errors import (AlreadyExists, BelfryError, DeadlineExceeded, FailedPrecondition,
                     InvalidArgument, NotFound, PermissionDenied, Unauthenticated, Unavailable)
from .v1 import cluster_pb2, schedules_pb2

__version__ = "0.1.0"
__all__ = [
    "Client", "schedule_spec", "has_field", "schedules_pb2", "cluster_pb2",
    "BelfryError", "InvalidArgument", "NotFound", "AlreadyExists", "FailedPrecondition",
    "Unavailable", "Unauthenticated", "PermissionDenied", "DeadlineExceeded",
]
