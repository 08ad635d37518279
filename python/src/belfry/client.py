"""A typed client for belfry's gRPC API (`belfry.v1.Schedules`, `belfry.v1.Cluster`).

Invariant: every method either returns the server's reply message or raises a
`belfry.errors.BelfryError` subclass; no `grpc.RpcError` escapes. The stubs are generated from
the repository's proto/ at build time, so the messages are exactly the server's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator, List, Mapping, Optional, Sequence, TypeVar, Union

import grpc

from .errors import from_rpc_error
from .v1 import cluster_pb2, cluster_pb2_grpc, schedules_pb2, schedules_pb2_grpc

pb = schedules_pb2
T = TypeVar("T")


def _strip_scheme(endpoint: str) -> str:
    for scheme in ("http://", "https://"):
        if endpoint.startswith(scheme):
            return endpoint[len(scheme):]
    return endpoint


def schedule_spec(
    name: str,
    task: str,
    *,
    every: str = "",
    crontab: str = "",
    cron: str = "",
    once: str = "",
    timezone: str = "",
    anchor: str = "",
    start_at: str = "",
    end_at: str = "",
    args: Sequence[Any] = (),
    kwargs: Optional[Mapping[str, Any]] = None,
    options: Optional[schedules_pb2.TaskOptions] = None,
    catchup: Optional[schedules_pb2.CatchupPolicy] = None,
    enabled: Optional[bool] = None,
    labels: Optional[Mapping[str, str]] = None,
    description: str = "",
) -> schedules_pb2.ScheduleSpec:
    """A `ScheduleSpec` from Python values (args and kwargs are encoded as JSON)."""
    spec = schedules_pb2.ScheduleSpec(
        name=name,
        task=task,
        spec=schedules_pb2.Spec(every=every, crontab=crontab, cron=cron, once=once,
                                timezone=timezone, anchor=anchor, start_at=start_at,
                                end_at=end_at),
        args_json=json.dumps(list(args)),
        kwargs_json=json.dumps(dict(kwargs or {})),
        labels=dict(labels or {}),
        description=description,
    )
    if options is not None:
        spec.options.CopyFrom(options)
    if catchup is not None:
        spec.catchup.CopyFrom(catchup)
    if enabled is not None:
        spec.enabled = enabled
    return spec


class Client:
    """A connection to any node of a belfry cluster (followers forward writes to the leader).

    `endpoint` is `host:port`, or `https://host:port` for TLS; `tls_ca` (PEM bytes or a path)
    also turns TLS on, and without it the system's roots are trusted. `token` is sent as
    `authorization: Bearer <token>`, as the CLI's `--token`. `timeout` is per call, in seconds.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        token: Optional[str] = None,
        tls: Optional[bool] = None,
        tls_ca: Union[bytes, str, Path, None] = None,
        timeout: float = 10.0,
    ) -> None:
        use_tls = tls if tls is not None else (tls_ca is not None or endpoint.startswith("https://"))
        target = _strip_scheme(endpoint)
        if use_tls:
            ca = Path(tls_ca).read_bytes() if isinstance(tls_ca, (str, Path)) else tls_ca
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(ca))
        else:
            self._channel = grpc.insecure_channel(target)
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self._timeout = timeout
        self._schedules = schedules_pb2_grpc.SchedulesStub(self._channel)
        self._cluster = cluster_pb2_grpc.ClusterStub(self._channel)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., T], request: Any) -> T:
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    # Schedules.
    def create(self, spec: schedules_pb2.ScheduleSpec) -> schedules_pb2.Schedule:
        return self._call(self._schedules.CreateSchedule,
                          schedules_pb2.CreateScheduleRequest(schedule=spec))

    def update(self, spec: schedules_pb2.ScheduleSpec,
               expected_revision: Optional[int] = None) -> schedules_pb2.Schedule:
        request = schedules_pb2.UpdateScheduleRequest(schedule=spec)
        if expected_revision is not None:
            request.expected_revision = expected_revision
        return self._call(self._schedules.UpdateSchedule, request)

    def get(self, name: str) -> schedules_pb2.Schedule:
        return self._call(self._schedules.GetSchedule, schedules_pb2.GetScheduleRequest(name=name))

    def list(self, *, name_prefix: str = "", labels: Optional[Mapping[str, str]] = None,
             page_size: int = 100) -> Iterator[schedules_pb2.Schedule]:
        """Every matching schedule in name order, fetching a page at a time."""
        token = ""
        while True:
            reply = self._call(self._schedules.ListSchedules, schedules_pb2.ListSchedulesRequest(
                page_size=page_size, page_token=token, name_prefix=name_prefix,
                labels=dict(labels or {})))
            yield from reply.schedules
            token = reply.next_page_token
            if not token:
                return

    def delete(self, name: str, expected_revision: Optional[int] = None) -> int:
        """Deletes a schedule; returns the revision it had."""
        request = schedules_pb2.DeleteScheduleRequest(name=name)
        if expected_revision is not None:
            request.expected_revision = expected_revision
        return self._call(self._schedules.DeleteSchedule, request).revision

    def pause(self, name: str) -> schedules_pb2.Schedule:
        return self._call(self._schedules.PauseSchedule, schedules_pb2.ScheduleName(name=name))

    def resume(self, name: str) -> schedules_pb2.Schedule:
        return self._call(self._schedules.ResumeSchedule, schedules_pb2.ScheduleName(name=name))

    def trigger(self, name: str) -> schedules_pb2.TriggerScheduleResponse:
        return self._call(self._schedules.TriggerSchedule, schedules_pb2.ScheduleName(name=name))

    def preview(self, target: Union[str, schedules_pb2.Spec], count: int = 5,
                after: str = "") -> List[str]:
        """The next occurrences (RFC 3339, UTC) of a stored schedule (by name) or of a spec."""
        request = schedules_pb2.PreviewScheduleRequest(count=count, after=after)
        if isinstance(target, str):
            request.name = target
        else:
            request.spec.CopyFrom(target)
        reply = self._call(self._schedules.PreviewSchedule, request)
        return [ts.ToJsonString() for ts in reply.occurrences]

    def list_runs(self, name: str) -> List[schedules_pb2.Run]:
        """The schedule's recent runs, newest first."""
        return list(self._call(self._schedules.ListRuns,
                               schedules_pb2.ListRunsRequest(name=name)).runs)

    def apply(self, specs: Sequence[schedules_pb2.ScheduleSpec], *, prune: bool = False,
              prune_selector: Optional[Mapping[str, str]] = None
              ) -> schedules_pb2.ApplySchedulesResponse:
        """Declarative bulk upsert (ApplySchedules); with `prune`, deletes what is not in `specs`."""
        return self._call(self._schedules.ApplySchedules, schedules_pb2.ApplySchedulesRequest(
            schedules=list(specs), prune=prune, prune_selector=dict(prune_selector or {})))

    # Cluster.
    def cluster_status(self) -> cluster_pb2.ClusterStatus:
        return self._call(self._cluster.GetStatus, cluster_pb2.GetStatusRequest())


def has_field(message: Any, name: str) -> bool:
    """Whether this build's API knows a field (e.g. `solar`, added in a later API version)."""
    return name in message.DESCRIPTOR.fields_by_name


__all__ = ["Client", "schedule_spec", "has_field", "pb"]
