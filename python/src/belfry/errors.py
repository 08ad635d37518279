"""Typed errors of the belfry client: one class per gRPC status a caller acts on.

Invariant: every failed call raises a `BelfryError` carrying the gRPC status code and details;
an INVALID_ARGUMENT names the field the server refused (`spec.crontab`, `schedules[3].name`).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Type

import grpc


class BelfryError(Exception):
    """A call to belfry failed; `code` is the gRPC status, `details` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str, field: Optional[str] = None) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.field = field


class InvalidArgument(BelfryError):
    """The request was refused; `field` names the offending field when the server said."""


class NotFound(BelfryError):
    pass


class AlreadyExists(BelfryError):
    pass


class FailedPrecondition(BelfryError):
    """A stale `expected_revision`, or a command the cluster's version does not allow yet."""


class Unavailable(BelfryError):
    """No leader for the moment (an election): safe to retry."""


class Unauthenticated(BelfryError):
    pass


class PermissionDenied(BelfryError):
    pass


class DeadlineExceeded(BelfryError):
    pass


_BY_CODE: Dict[grpc.StatusCode, Type[BelfryError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def _varint(buf: bytes, i: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> Sequence[Tuple[int, object]]:
    """The (field number, value) pairs of one protobuf message: varints and byte strings."""
    out = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            out.append((number, value))
        elif wire == 2:
            size, i = _varint(buf, i)
            out.append((number, buf[i:i + size]))
            i += size
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")
    return out


def bad_request_field(status_details: bytes) -> Optional[str]:
    """The first field violation of a `google.rpc.BadRequest` inside `grpc-status-details-bin`.

    Decoded by hand (google.rpc.Status → Any → BadRequest → FieldViolation.field) so the client
    needs no googleapis-common-protos.
    """
    try:
        for number, any_msg in _fields(status_details):
            if number != 3 or not isinstance(any_msg, bytes):
                continue
            parts = dict(_fields(any_msg))
            if not str(parts.get(1, b""), "utf-8", "replace").endswith("google.rpc.BadRequest"):
                continue
            for vnum, violation in _fields(bytes(parts.get(2, b""))):  # type: ignore[arg-type]
                if vnum == 1 and isinstance(violation, bytes):
                    field = dict(_fields(violation)).get(1)
                    if isinstance(field, bytes):
                        return field.decode("utf-8", "replace")
    except ValueError:
        return None
    return None


def from_rpc_error(err: grpc.RpcError) -> BelfryError:
    """The typed error for a failed call."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN  # type: ignore[attr-defined]
    details = (err.details() if hasattr(err, "details") else str(err)) or ""  # type: ignore[attr-defined]
    field = None
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None  # type: ignore[attr-defined]
        for key, value in trailers or ():
            if key == "grpc-status-details-bin" and isinstance(value, bytes):
                field = bad_request_field(value)
        if field is None and ": " in details:
            field = details.split(": ", 1)[0]
    return _BY_CODE.get(code, BelfryError)(code, details, field)
