#!/usr/bin/env python3
"""Creates an interval schedule through belfry's gRPC API, waits until its first runs have
reached Redis, and prints them.

It uses the `belfry` Python package (`pip install ./python` from a checkout), whose stubs are
generated from proto/ when the package is built. Exits 0 on success, 1 with a one-line error
otherwise.
"""

import argparse
import os
import sys
import time

from belfry import BelfryError, Client, Unavailable, schedule_spec, schedules_pb2


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
    created = False
    with Client(args.endpoint, token=args.token, tls_ca=args.tls_ca) as client:
        try:
            schedule = client.create(schedule_spec(
                args.name, args.task, every=args.every, args=[args.name],
                kwargs={"source": "python-example"}, labels={"example": "python"}))
            created = True
            print(f"created {args.name!r}: revision {schedule.revision}, "
                  f"next run {schedule.next_run.ToJsonString()}")
            runs = wait_for_runs(client, args)
            print(f"{'SCHEDULED AT':<30} {'TASK ID':<36} OUTCOME")
            for run in runs:
                outcome = schedules_pb2.RunOutcome.Name(run.outcome).removeprefix("RUN_OUTCOME_")
                print(f"{run.scheduled_at.ToJsonString():<30} {run.task_id:<36} {outcome}")
        except BelfryError as err:
            sys.exit(f"error: {err.code.name}: {err.details}")
        except TimeoutError as err:
            sys.exit(f"error: {err}")
        finally:
            if created and args.cleanup:
                delete(client, args.name)


def delete(client, name):
    try:
        client.delete(name)
        print(f"deleted {name!r}")
    except BelfryError as err:
        sys.exit(f"error: deleting {name!r}: {err.code.name}: {err.details}")


def wait_for_runs(client, args):
    """Polls ListRuns until `args.runs` runs are confirmed in Redis; returns them, oldest first."""
    delivered = (schedules_pb2.RUN_OUTCOME_SENT, schedules_pb2.RUN_OUTCOME_ALREADY_SENT)
    deadline = time.monotonic() + args.timeout
    runs = []
    while time.monotonic() < deadline:
        try:
            runs = [r for r in client.list_runs(args.name) if r.outcome in delivered]
            if len(runs) >= args.runs:
                return list(reversed(runs))  # ListRuns is newest first.
        except Unavailable:
            pass  # No leader for a moment (an election): reads are safe to retry.
        time.sleep(0.5)
    raise TimeoutError(f"{len(runs)} of {args.runs} runs delivered after {args.timeout:g}s")


if __name__ == "__main__":
    main()
