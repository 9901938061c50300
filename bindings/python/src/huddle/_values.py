"""What the idiomatic layer hands out and takes in: string enums, events and records with the
names and fields of the CLI's JSON events, attributes as dicts, and the one error class."""

import enum
import types

from . import _ffi


class Priority(str, enum.Enum):
    """Message priority; compares equal to its name as in the CLI's JSON (`"medium"`)."""

    LOW = "low"
    """Best effort; may be dropped for a slow or lossy receiver."""
    MEDIUM = "medium"
    """Reliable, in order."""
    HIGH = "high"
    """Reliable, in order, sent before medium under congestion."""


class LeaveReason(str, enum.Enum):
    """Why members left a room (`members_left`, `removed_from_room`)."""

    LEFT = "left"
    OFFLINE = "offline"
    KICKED = "kicked"


class ConnectionState(str, enum.Enum):
    """Where a client's connection stands (`Client.state`)."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"
    SUSPENDED = "suspended"


class Ended(str, enum.Enum):
    """What a connection failure ended (`HuddleError.ended`)."""

    CONNECTION = "connection"
    SESSION = "session"
    RECONNECT_WINDOW = "reconnect_window"


_ENUMS = {
    _ffi.Priority: Priority,
    _ffi.LeaveReason: LeaveReason,
    _ffi.ConnectionState: ConnectionState,
    _ffi.Ended: Ended,
}


class Record(types.SimpleNamespace):
    """An answer or part of one: fields as attributes (`room.room_id`, `ack.seq`)."""


class Event(Record):
    """An event: `kind` is the CLI's JSON event name (`room_message`, `members_joined`,
    `resumed`, ...) and the other attributes are that event's fields."""

    kind: str


def snake(name):
    """`HuddleEvent.ROOM_MESSAGE` or `RoomMessage` as `room_message`."""
    name = name.rsplit(".", 1)[-1]
    if name.isupper() or "_" in name:
        return name.lower()
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def fields(obj):
    """The fields of a generated record or enum variant, in declaration order."""
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


def value(v):
    """A value of the generated module as the idiomatic layer hands it out."""
    if isinstance(v, (str, bytes, int, float, bool)) or v is None:
        return v
    for generated, ours in _ENUMS.items():
        if isinstance(v, generated):
            return ours[v.name]
    if isinstance(v, _ffi.Attribute):
        return (v.key, v.value)
    if isinstance(v, (list, tuple)):
        items = [value(x) for x in v]
        if items and all(isinstance(x, _ffi.Attribute) for x in v):
            return dict(items)
        return items
    if isinstance(v, _ffi.HuddleEvent):
        return Event(kind=snake(type(v).__name__), **{k: attr(k, x) for k, x in fields(v).items()})
    return Record(**{k: attr(k, x) for k, x in fields(v).items()})


def attr(key, v):
    """A field's value; attribute lists (`attributes`, `set`) become dicts even when empty."""
    if key in ("attributes", "set") and isinstance(v, list):
        return {a.key: a.value for a in v}
    return value(v)


def attributes_in(attrs):
    """A dict (or pairs) of attributes as the generated module takes them."""
    items = attrs.items() if hasattr(attrs, "items") else attrs
    return [_ffi.Attribute(key=k, value=v) for k, v in items]


def priority_in(p):
    """`Priority.MEDIUM` or `"medium"` as the generated enum."""
    return _ffi.Priority[Priority(p).name]


def room_config(destroy_delay_s, attributes):
    """The configuration a request that creates a room carries."""
    return _ffi.RoomConfig(destroy_delay_s=destroy_delay_s,
                           attributes=attributes_in(attributes or {}))


class HuddleError(Exception):
    """Why an operation failed.

    `kind`: `server` (the server answered with an error code), `connection`, `protocol`,
    `invalid_argument` or `internal` (a fault inside the library, a caught panic).
    `code`: the protocol's numeric code (3003), or None when there is none.
    `name`: the code's stable name (`not_in_room`), or the kind when there is no code.
    `detail`: a description. `ended`: for `connection`, what ended (an `Ended`), else None.
    """

    def __init__(self, kind, code, name, detail, ended=None):
        super().__init__(f"{name} ({code}): {detail}" if code is not None else f"{name}: {detail}")
        self.kind = kind
        self.code = code
        self.name = name
        self.detail = detail
        self.ended = ended

    @classmethod
    def from_ffi(cls, e):
        """The error for one of the generated module's `HuddleError` variants."""
        kind = snake(type(e).__name__)
        f = fields(e)
        code = f.get("code")
        name = f.get("name") or kind
        ended = value(f["ended"]) if "ended" in f else None
        return cls(kind, code, name, f.get("detail", str(e)), ended)
