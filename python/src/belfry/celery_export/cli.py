"""The `belfry-celery` command: export Celery beat schedules to a belfry schedules file, or
apply them through belfry's API.

Invariant: nothing is written or applied while any entry is refused, unless `--skip-refused`
says so; every refusal and every difference is one line on stderr naming the entry.
Exit status: 0 done, 1 an error (I/O, API), 2 refused entries or bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, Iterable, List, Optional, Sequence

from .model import Entry, Refusal

HEADER = ("belfry schedules exported from {source} by belfry-celery.\n"
          "Apply with `belfry schedule apply -f FILE`, or set it as the servers' schedules file.")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="belfry-celery", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    app = sub.add_parser("export", help="a Celery app's beat_schedule (and add_periodic_task)")
    app.add_argument("--app", required=True, help="MODULE:ATTR of the Celery app (as celery -A)")
    app.add_argument("--schedule-file", "-s", help="beat's persistent schedule file (celery beat "
                     "-s), for last runs; default: the app's beat_schedule_filename if present")
    dj = sub.add_parser("export-django", help="django-celery-beat's PeriodicTask rows")
    dj.add_argument("--settings", required=True, help="the Django settings module")
    dj.add_argument("--app", help="MODULE:ATTR of the project's Celery app (default: the app "
                    "Django's setup made current)")
    rb = sub.add_parser("export-redbeat", help="RedBeat's entries in Redis")
    rb.add_argument("--redis-url", required=True)
    rb.add_argument("--key-prefix", default="redbeat:", help="redbeat_key_prefix (redbeat:)")
    rb.add_argument("--app", help="MODULE:ATTR of the Celery app, for its time zone and routing")
    for s in (app, dj, rb):
        out = s.add_mutually_exclusive_group()
        out.add_argument("-o", "--output", help="write the schedules file here (default stdout)")
        out.add_argument("--apply", action="store_true", help="apply through the API")
        s.add_argument("--endpoint", default=os.environ.get("BELFRY_ENDPOINT", "127.0.0.1:7400"))
        s.add_argument("--token", default=os.environ.get("BELFRY_TOKEN"))
        s.add_argument("--tls-ca", default=os.environ.get("BELFRY_TLS_CA"))
        s.add_argument("--catchup", choices=("all", "latest", "none"), default="all",
                       help="belfry catch-up policy for every entry (default all: no gap at "
                       "the cut-over; Celery beat itself behaves like latest)")
        s.add_argument("--catchup-window", type=int, metavar="SECONDS",
                       help="catch-up window (belfry's default: 3600)")
        s.add_argument("--skip-refused", action="store_true",
                       help="export the translatable entries even if some are refused")
    return p.parse_args(argv)


def collect(args: argparse.Namespace) -> List[Any]:
    if args.command == "export":
        from .beat_app import export_app, load_app

        app = load_app(args.app)
        path = args.schedule_file
        default = app.conf.beat_schedule_filename
        if path is None and default and any(os.path.exists(default + e) for e in ("", ".db", ".dat")):
            path = default
        if path:
            print(f"last runs from beat's schedule file {path}", file=sys.stderr)
        else:
            print("no beat schedule file (-s): entries carry no last run, so belfry counts them "
                  "from the apply", file=sys.stderr)
        return list(export_app(app, path))
    if args.command == "export-django":
        from .beat_app import load_app
        from .django_beat import celery_app, export_django, setup_django

        setup_django(args.settings)
        return list(export_django(load_app(args.app) if args.app else celery_app()))
    from .beat_app import load_app
    from .redbeat import export_redbeat

    if args.app:
        app = load_app(args.app)
    else:
        from celery import Celery

        app = Celery("belfry-celery-export")
    return list(export_redbeat(app, args.redis_url, args.key_prefix))


def report(results: Iterable[Any]) -> List[Entry]:
    entries = []
    for r in results:
        if isinstance(r, Refusal):
            print(f"refused {r.name!r}: {r.reason}", file=sys.stderr)
        else:
            for note in r.notes:
                print(f"note {r.name!r}: {note}", file=sys.stderr)
            entries.append(r)
    return entries


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .beat_app import named
    from .render import Unwritable

    args = parse_args(argv)
    try:
        results = named(collect(args))
    except Exception as exc:  # the user's app or settings failed to load, Redis unreachable
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    entries = report(results)
    refused = len(results) - len(entries)
    if refused and not args.skip_refused:
        print(f"error: {refused} entr{'y' if refused == 1 else 'ies'} refused; nothing written "
              "(--skip-refused exports the others)", file=sys.stderr)
        return 2
    catchup: Dict[str, Any] = {} if args.catchup == "all" and args.catchup_window is None else {
        "policy": args.catchup}
    if args.catchup_window is not None:
        catchup["window_seconds"] = args.catchup_window
    try:
        return apply(args, entries, catchup) if args.apply else write(args, entries, catchup)
    except Unwritable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def write(args: argparse.Namespace, entries: List[Entry], catchup: Dict[str, Any]) -> int:
    from .render import schedules_toml

    source = {"export": f"Celery app {getattr(args, 'app', '')}",
              "export-django": f"django-celery-beat ({getattr(args, 'settings', '')})",
              "export-redbeat": "RedBeat"}[args.command]
    text = schedules_toml(entries, catchup, HEADER.format(source=source))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    print(f"exported {len(entries)} schedule(s)", file=sys.stderr)
    return 0


def apply(args: argparse.Namespace, entries: List[Entry], catchup: Dict[str, Any]) -> int:
    from ..client import Client
    from ..errors import BelfryError
    from .render import schedule_spec

    specs = [schedule_spec(e, catchup) for e in entries]
    try:
        with Client(args.endpoint, token=args.token, tls_ca=args.tls_ca) as client:
            reply = client.apply(specs)
    except BelfryError as exc:
        where = f" (field {exc.field})" if exc.field else ""
        print(f"error: {exc.code.name}: {exc.details}{where}", file=sys.stderr)
        return 1
    print(f"applied {len(specs)} schedule(s): {reply.created} created, {reply.updated} updated, "
          f"{reply.unchanged} unchanged", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
