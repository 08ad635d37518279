"""Resolves what Celery beat would send for one entry's options into belfry's task options.

Invariant: options are merged and routed exactly as `Task.apply_async` and `Celery.send_task`
do (the task's own options under the entry's, then `task_routes` and the default queue), and
the result names one Redis list; an exchange that would route elsewhere is refused. It must not
connect to the broker.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from .translate import NO_EFFECT_ON_REDIS, Untranslatable

CARRIED = ("queue", "routing_key", "exchange", "priority", "expires", "headers", "time_limit",
           "soft_time_limit", "ignore_result", "serializer", "compression")


def merged_options(app: Any, task: str, options: Mapping[str, Any]) -> Dict[str, Any]:
    """The task's own execution options (queue, priority, expires, …) under the entry's."""
    merged: Dict[str, Any] = {}
    registered = app.tasks.get(task)
    if registered is not None:
        own = {k: v for k, v in registered._get_exec_options().items() if v is not None}
        merged.update(own)
        if registered.ignore_result:
            merged.setdefault("ignore_result", True)
        if getattr(registered, "priority", None) is not None:
            merged.setdefault("priority", registered.priority)
    merged.update(options)
    return merged


def belfry_options(app: Any, task: str, options: Mapping[str, Any], args: Sequence[Any],
                   kwargs: Mapping[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """belfry's `options` table for an entry, and the notes to report."""
    notes: List[str] = []
    opts = merged_options(app, task, options)
    unknown = sorted(k for k in opts if k not in CARRIED and k not in NO_EFFECT_ON_REDIS)
    if unknown:
        raise Untranslatable(f"option(s) {', '.join(unknown)}: belfry cannot send them")
    serializer = opts.get("serializer") or app.conf.task_serializer
    if serializer != "json":
        raise Untranslatable(f"serializer {serializer!r}: belfry sends JSON messages only")
    if opts.get("compression") or app.conf.task_compression:
        raise Untranslatable("compression: belfry sends uncompressed messages")
    out: Dict[str, Any] = {"queue": resolve_queue(app, task, opts, args, kwargs)}
    if opts.get("priority") is not None:
        priority = int(opts["priority"])
        if not 0 <= priority <= 9:
            raise Untranslatable(f"priority {priority}: belfry takes 0-9 (kombu's Redis range)")
        out["priority"] = priority
    expires = opts.get("expires")
    if isinstance(expires, datetime):
        if expires.tzinfo is None:
            raise Untranslatable("expires is a naive datetime: its zone is ambiguous")
        out["expires"] = expires
    elif expires is not None:
        out["expires"] = float(expires) if float(expires) != int(expires) else int(expires)
    headers = opts.get("headers") or {}
    if headers:
        out["headers"] = dict(headers)
    for key in ("time_limit", "soft_time_limit"):
        if opts.get(key) is not None:
            out[key] = opts[key]
    if opts.get("ignore_result"):
        out["ignore_result"] = True
    if out["queue"] == "celery":
        del out["queue"]
    return out, notes


def resolve_queue(app: Any, task: str, opts: Mapping[str, Any], args: Sequence[Any],
                  kwargs: Mapping[str, Any]) -> str:
    """The Redis list Celery's producer would push to, as `send_task_message` decides it."""
    route_in = {k: v for k, v in opts.items() if k in ("queue", "exchange", "routing_key",
                                                     "exchange_type")}
    try:
        routed = app.amqp.router.route(dict(route_in), task, list(args), dict(kwargs),
                                       app.tasks.get(task))
    except Exception as exc:  # QueueNotFound and routers' own errors
        raise Untranslatable(f"routing: {exc}") from None
    queue = routed.get("queue")
    qname = getattr(queue, "name", queue)
    exchange = routed.get("exchange")
    exchange_name = getattr(exchange, "name", exchange)
    routing_key = routed.get("routing_key")
    queue_exchange = getattr(queue, "exchange", None)
    exchange_type = routed.get("exchange_type") or getattr(queue_exchange, "type", None) or "direct"
    # Celery's producer: a direct route without both names goes to the anonymous exchange,
    # straight onto the queue's list.
    if (not exchange_name or not routing_key) and exchange_type == "direct":
        return str(qname)
    # The queue's own direct exchange and binding key reach that same list.
    if (exchange_type == "direct" and exchange_name == getattr(queue_exchange, "name", None)
            and routing_key == qname == getattr(queue, "routing_key", qname)):
        return str(qname)
    raise Untranslatable(
        f"exchange {exchange_name or '(the queue default)'!s} ({exchange_type}) with routing key "
        f"{routing_key!s}: belfry pushes onto one queue's list and does not route exchanges")
