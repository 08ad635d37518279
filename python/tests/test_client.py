"""`belfry.Client` against a real belfry server: every method, and the typed errors with the
gRPC status and the refused field."""

from __future__ import annotations

import grpc
import pytest

from belfry import (AlreadyExists, Client, FailedPrecondition, InvalidArgument, NotFound,
                    Unavailable, schedule_spec, schedules_pb2)
from conftest import free_port, wait_for


def test_every_method_against_a_server(belfry_node):
    c = belfry_node.client
    spec = schedule_spec("heartbeat", "tasks.ping", every="1s", args=[1], kwargs={"a": "b"},
                         labels={"team": "ops"})
    created = c.create(spec)
    assert (created.revision, created.definition.spec.every) == (1, "1s")
    with pytest.raises(AlreadyExists):
        c.create(spec)
    assert c.get("heartbeat").definition.args_json == "[1]"
    assert [s.definition.name for s in c.list(labels={"team": "ops"})] == ["heartbeat"]
    runs = wait_for("a run", 30, lambda: [r for r in c.list_runs("heartbeat")
                                          if r.outcome == schedules_pb2.RUN_OUTCOME_SENT] or None)
    assert runs[0].task_id
    spec.spec.every = "2s"
    assert c.update(spec, expected_revision=1).revision == 2
    with pytest.raises(FailedPrecondition):
        c.update(spec, expected_revision=1)
    assert len(c.preview("heartbeat", count=3)) == 3
    assert c.preview(schedules_pb2.Spec(crontab="0 9 * * mon", timezone="Asia/Tokyo"),
                     count=2, after="2027-01-01T00:00:00Z") == [
        "2027-01-04T00:00:00Z", "2027-01-11T00:00:00Z"]
    assert not c.pause("heartbeat").definition.enabled
    assert c.resume("heartbeat").definition.enabled
    assert c.trigger("heartbeat").task_id
    reply = c.apply([schedule_spec("nightly", "tasks.report", crontab="30 2 * * *")])
    assert (reply.created, reply.updated) == (1, 0)
    assert c.delete("heartbeat") >= 2
    with pytest.raises(NotFound):
        c.get("heartbeat")
    assert c.cluster_status().leader_id == 1


def test_invalid_arguments_name_the_field(belfry_node):
    c = belfry_node.client
    with pytest.raises(InvalidArgument) as err:
        c.create(schedule_spec("bad", "tasks.ping", crontab="61 * * * *"))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    # The server names a spec's parse errors by the spec field alone ("crontab").
    assert err.value.field in ("crontab", "spec.crontab")
    with pytest.raises(InvalidArgument) as err:
        c.apply([schedule_spec("ok", "tasks.ping", every="1m"),
                 schedule_spec("bad name!", "tasks.ping", every="1m")])
    assert err.value.field == "schedules[1].name"


def test_no_server_is_unavailable():
    with Client(f"127.0.0.1:{free_port()}", timeout=2) as c:
        with pytest.raises(Unavailable):
            c.get("anything")
