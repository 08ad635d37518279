#!/usr/bin/env python3
"""Creates an interval schedule through belfry's gRPC API, waits until its first runs have
reached Redis, and prints them.

The Python stubs are generated from proto/ at start-up, so they always match the API this
checkout serves. Exits 0 on success, 1 with a one-line error otherwise.
"""

import argparse
import importlib
import importlib.resources
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_tools import protoc

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto"


def load_stubs(out_dir):
    """Generates the schedules stubs into out_dir and imports them."""
    # grpc_tools ships google/protobuf/*.proto, which schedules.proto imports.
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    status = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO_DIR / "belfry/v1/schedules.proto"),
    ])
    if status != 0:
        sys.exit(f"error: protoc failed on {PROTO_DIR}")
    sys.path.insert(0, out_dir)
    return (importlib.import_module("belfry.v1.schedules_pb2"),
            importlib.import_module("belfry.v1.schedules_pb2_grpc"))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--endpoint", default=os.environ.get("BELFRY_ENDPOINT", "127.0.0.1:7400"),
                   help="host:port of any node; https://host:port for TLS (env BELFRY_ENDPOINT)")
    p.add_argument("--token", default=os.environ.get("BELFRY_TOKEN"),
                   help="API token (env BELFRY_TOKEN); omit for a cluster without auth")
    p.add_argument("--tls-ca", help="PEM CA file: use TLS and trust this CA")
    p.add_argument("--name", default="python-example", help="schedule name")
    p.add_argument("--task", default="tasks.example", help="registered Celery task name")
    p.add_argument("--every", default="1s", help="interval, e.g. 1s, 5m, 1h30m")
    p.add_argument("--runs", type=int, choices=range(1, 11), default=3, metavar="1-10",
                   help="runs to wait for (ListRuns returns the latest 10)")
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for them")
    p.add_argument("--cleanup", action="store_true", help="delete the schedule at the end")
    return p.parse_args()


def main():
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="belfry-stubs-") as out_dir:
        pb, pb_grpc = load_stubs(out_dir)
        endpoint = args.endpoint.removeprefix("http://").removeprefix("https://")
        if args.tls_ca or args.endpoint.startswith("https://"):
            # Without --tls-ca, the system's trusted roots.
            ca = Path(args.tls_ca).read_bytes() if args.tls_ca else None
            channel = grpc.secure_channel(endpoint, grpc.ssl_channel_credentials(ca))
        else:
            channel = grpc.insecure_channel(endpoint)
        metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
        stub = pb_grpc.SchedulesStub(channel)
        call = dict(metadata=metadata, timeout=10)
        created = False
        try:
            schedule = stub.CreateSchedule(pb.CreateScheduleRequest(schedule=pb.ScheduleSpec(
                name=args.name,
                task=args.task,
                spec=pb.Spec(every=args.every),
                args_json=json.dumps([args.name]),
                kwargs_json=json.dumps({"source": "python-example"}),
                labels={"example": "python"},
            )), **call)
            created = True
            print(f"created {args.name!r}: revision {schedule.revision}, "
                  f"next run {schedule.next_run.ToJsonString()}")
            runs = wait_for_runs(stub, pb, args, call)
            print(f"{'SCHEDULED AT':<30} {'TASK ID':<36} OUTCOME")
            for run in runs:
                outcome = pb.RunOutcome.Name(run.outcome).removeprefix("RUN_OUTCOME_")
                print(f"{run.scheduled_at.ToJsonString():<30} {run.task_id:<36} {outcome}")
        except grpc.RpcError as err:
            sys.exit(f"error: {err.code().name}: {err.details()}")
        except TimeoutError as err:
            sys.exit(f"error: {err}")
        finally:
            if created and args.cleanup:
                delete(stub, pb, args.name, call)
            channel.close()


def delete(stub, pb, name, call):
    try:
        stub.DeleteSchedule(pb.DeleteScheduleRequest(name=name), **call)
        print(f"deleted {name!r}")
    except grpc.RpcError as err:
        sys.exit(f"error: deleting {name!r}: {err.code().name}: {err.details()}")


def wait_for_runs(stub, pb, args, call):
    """Polls ListRuns until `args.runs` runs are confirmed in Redis; returns them, oldest first."""
    delivered = (pb.RUN_OUTCOME_SENT, pb.RUN_OUTCOME_ALREADY_SENT)
    deadline = time.monotonic() + args.timeout
    runs = []
    while time.monotonic() < deadline:
        try:
            reply = stub.ListRuns(pb.ListRunsRequest(name=args.name), **call)
            runs = [r for r in reply.runs if r.outcome in delivered]
            if len(runs) >= args.runs:
                return list(reversed(runs))  # ListRuns is newest first.
        except grpc.RpcError as err:
            # No leader for a moment (an election): reads are safe to retry.
            if err.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        time.sleep(0.5)
    raise TimeoutError(f"{len(runs)} of {args.runs} runs delivered after {args.timeout:g}s")


if __name__ == "__main__":
    main()
