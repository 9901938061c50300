"""Huddle's QUIC chat-room client for asyncio.

A thin layer over the module that UniFFI generates from `bindings/ffi` (`huddle._ffi`): keyword
arguments with defaults, events with a `kind` and the field names of the CLI's JSON events,
attributes as dicts, string enums, and one exception class. The reconnect supervisor,
resumption and exactly-once replay run in Rust, on threads of the library's own::

    client = await huddle.connect(server="127.0.0.1:7443", user_id="alice",
                                  token=token, ca_pem=open("certs/ca.pem").read())
    await client.enter_room("lobby", "Lobby")
    ack = await client.send_text("lobby", "hello", priority=huddle.Priority.MEDIUM)
    async for ev in client.events():
        if ev.kind == "room_message":
            print(ev.seq, ev.sender, ev.text)
"""

import logging

from . import _ffi
from ._values import (
    ConnectionState,
    Ended,
    Event,
    HuddleError,
    LeaveReason,
    Priority,
    Record,
    attributes_in,
    priority_in,
    room_config,
    value,
)

__all__ = [
    "AttributesBatch",
    "Client",
    "ConnectionState",
    "Ended",
    "Event",
    "HuddleError",
    "LeaveReason",
    "Priority",
    "Record",
    "connect",
]


async def _call_raw(coro):
    """Awaits a call into the library; its errors become `HuddleError`."""
    try:
        return await coro
    except _ffi.HuddleError as e:
        raise HuddleError.from_ffi(e) from None


async def _call(coro):
    """Awaits a call into the library; its answer made idiomatic."""
    return value(await _call_raw(coro))


def _ms(seconds):
    return None if seconds is None else round(seconds * 1000)


def _options(server, user_id, token, ca_pem, display_name, reconnect_window_s, server_name,
             mobile, keep_alive_s):
    return _ffi.ConnectOptions(server=server, user_id=user_id, token=token, ca_pem=ca_pem,
                               display_name=display_name,
                               reconnect_window_ms=_ms(reconnect_window_s),
                               server_name=server_name, mobile=mobile,
                               keep_alive_ms=_ms(keep_alive_s))


class _Listener(_ffi.EventListener):
    """Hands each event, made idiomatic, to the application's callable."""

    def __init__(self, on_event):
        self._on_event = on_event

    def on_event(self, event):
        try:
            self._on_event(value(event))
        except Exception:
            # Nothing may cross back into the library; the next events still come.
            logging.getLogger("huddle").exception("on_event raised")


async def connect(*, server, user_id, token, ca_pem, display_name=None,
                  reconnect_window_s=None, server_name=None, on_event=None, mobile=False,
                  keep_alive_s=None):
    """Connects to `server` (`host:port`) and logs in as `user_id` with `token`, trusting the
    CA certificates in `ca_pem` (PEM text).

    `reconnect_window_s`: how long to keep trying to resume after the connection is lost (0:
    never; the library's default, 60 s, when None). `server_name`: the name the certificate is
    checked against (the host of `server`, or `localhost` for an IP address). `on_event`: a
    callable that gets every event instead of `next_event`; it is called in order on a thread
    of the library's own that holds none of the client's locks (so it may call the client, for
    example with `asyncio.run(...)` or `loop.call_soon_threadsafe`), and the next events wait
    while it runs. `mobile`: the mobile profile (an idle keep-alive every 25 s instead of 5 s,
    a 60 s idle timeout, a patient stall watchdog; the app calls `network_changed` when the
    network changes). `keep_alive_s`: the idle keep-alive interval, overriding the profile's.
    Raises `HuddleError` (for example `token_invalid`, 2001).
    """
    options = _options(server, user_id, token, ca_pem, display_name, reconnect_window_s,
                       server_name, mobile, keep_alive_s)
    if on_event is None:
        inner = await _call_raw(_ffi.connect(options))
    else:
        inner = await _call_raw(_ffi.connect_with_listener(options, _Listener(on_event)))
    return Client(inner)


class Client:
    """A logged-in session (from `connect`). Every operation is a coroutine and raises
    `HuddleError`; answers are `Record`s. `async with` closes it; so does dropping the last
    reference, from any thread."""

    def __init__(self, inner):
        self._c = inner

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    @property
    def user_id(self):
        """The user id this client logged in as."""
        return self._c.user_id()

    @property
    def session_id(self):
        """The current session's id."""
        return self._c.session_id()

    @property
    def state(self):
        """Where the connection stands (a `ConnectionState`)."""
        return value(self._c.state())

    @property
    def listener_failures(self):
        """How many `on_event` calls failed in the library's listener thread (this layer
        already logs and swallows the callable's exceptions, so normally 0)."""
        return self._c.listener_failures()

    async def next_event(self):
        """The next `Event`; None once the connection is over and every event was read, once
        the client is closed (a pending call then returns None), and always for a client
        connected with `on_event`. Cancelling it (`asyncio.wait_for`, `task.cancel()`) loses
        no event: the next call gets it."""
        return value(await self._c.next_event())

    async def events(self):
        """Every event, as an async iterator that ends with the connection."""
        while (ev := await self.next_event()) is not None:
            yield ev

    async def create_room(self, room_id, room_name="", *, destroy_delay_s=0, attributes=None):
        """Creates a room and joins it; `attributes` (a dict) are its initial attributes."""
        return await _call(self._c.create_room(room_id, room_name,
                                               room_config(destroy_delay_s, attributes)))

    async def join_room(self, room_id):
        """Joins an existing room."""
        return await _call(self._c.join_room(room_id))

    async def enter_room(self, room_id, room_name="", *, destroy_delay_s=0, attributes=None):
        """Creates the room or joins it."""
        return await _call(self._c.enter_room(room_id, room_name,
                                              room_config(destroy_delay_s, attributes)))

    async def leave_room(self, room_id):
        """Leaves a room."""
        await _call(self._c.leave_room(room_id))

    async def leave_all_rooms(self):
        """Leaves every room; returns their ids."""
        return await _call(self._c.leave_all_rooms())

    async def switch_room(self, from_room_id, to_room_id, to_room_name="", *,
                          create_if_missing=True, destroy_delay_s=0, attributes=None):
        """Leaves `from_room_id` and enters `to_room_id` in one request."""
        return await _call(self._c.switch_room(from_room_id, to_room_id, to_room_name,
                                               create_if_missing,
                                               room_config(destroy_delay_s, attributes)))

    async def send_text(self, room_id, text, *, priority=Priority.MEDIUM, client_msg_id=None):
        """Sends a text message; returns the ack (`seq`, `message_id`, `timestamp_ms`,
        `duplicate`). Without a `client_msg_id` the library makes one, so that a send survives
        a lost connection and still counts once."""
        return await _call(self._c.send_text(room_id, text, priority_in(priority),
                                             client_msg_id))

    async def send_custom(self, room_id, sub_type, data, *, priority=Priority.MEDIUM,
                          client_msg_id=None):
        """Sends an application-defined message (`sub_type`, `data` bytes)."""
        return await _call(self._c.send_custom(room_id, sub_type, bytes(data),
                                               priority_in(priority), client_msg_id))

    def next_client_msg_id(self):
        """A `client_msg_id` no other send of this client has."""
        return self._c.next_client_msg_id()

    async def query_room_members(self, room_id, *, next_flag="", count=100):
        """One page of members (`members`, `next_flag`: pass it on, empty after the last)."""
        return await _call(self._c.query_room_members(room_id, next_flag, count))

    async def query_room_online_count(self, room_id):
        """Members in a room."""
        return await _call(self._c.query_room_online_count(room_id))

    async def query_room_members_by_id(self, room_id, user_ids):
        """Those of `user_ids` (at most 10) that are members (`members`) and not
        (`not_found`)."""
        return await _call(self._c.query_room_members_by_id(room_id, list(user_ids)))

    async def query_joined_rooms(self):
        """The rooms this session is in (`room_id`, `room_name`, `member_count`)."""
        return await _call(self._c.query_joined_rooms())

    async def query_history(self, room_id, *, count=20, before_seq=None, after_seq=None):
        """One page of history (`messages` in ascending seq, `has_more`): the latest, or those
        below `before_seq`, or above `after_seq`."""
        if before_seq is not None and after_seq is not None:
            raise ValueError("before_seq and after_seq exclude each other")
        if before_seq is not None:
            anchor = _ffi.HistoryAnchor.BEFORE_SEQ(seq=before_seq)
        elif after_seq is not None:
            anchor = _ffi.HistoryAnchor.AFTER_SEQ(seq=after_seq)
        else:
            anchor = _ffi.HistoryAnchor.LATEST()
        return await _call(self._c.query_history(room_id, anchor, count))

    async def set_room_attributes(self, room_id, attributes, *, is_force=False,
                                  is_update_owner=False, is_delete_after_owner_left=False):
        """Sets room attributes (a dict); returns the keys that failed (`key`, `code`,
        `name`) while the others were applied."""
        return await _call(self._c.set_room_attributes(
            room_id, attributes_in(attributes), is_force, is_update_owner,
            is_delete_after_owner_left))

    async def delete_room_attributes(self, room_id, keys, *, is_force=False):
        """Deletes room attributes; returns the keys that failed."""
        return await _call(self._c.delete_room_attributes(room_id, list(keys), is_force))

    async def query_room_attributes(self, room_id):
        """A room's attributes, as a dict."""
        return dict(await _call(self._c.query_room_attributes(room_id)))

    def room_attributes_batch(self, room_id):
        """Room-attribute changes applied all or none and announced as one event::

            async with client.room_attributes_batch("lobby") as batch:
                batch.set({"topic": "news"})
                batch.delete(["draft"])
        """
        return AttributesBatch(self, room_id)

    async def set_room_members_attributes(self, room_id, user_ids, attributes):
        """Merges `attributes` into those of members; returns `members` (with all their
        attributes now) and `failed_user_ids` (not members)."""
        return await _call(self._c.set_room_members_attributes(
            room_id, list(user_ids), attributes_in(attributes)))

    async def query_room_members_attributes(self, room_id, user_ids):
        """Attributes of some members (`user_id`, `attributes`)."""
        return await _call(self._c.query_room_members_attributes(room_id, list(user_ids)))

    async def query_room_member_attributes_list(self, room_id, *, next_flag="", count=100):
        """One page of the members that have attributes (`members`, `next_flag`)."""
        return await _call(self._c.query_room_member_attributes_list(room_id, next_flag,
                                                                     count))

    async def renew_token(self, token):
        """Replaces the session's token (answer to `token_will_expire`); returns the new
        expiry, Unix seconds."""
        return await _call(self._c.renew_token(token))

    async def logout(self):
        """Leaves every room, ends the session and closes the connection."""
        await _call(self._c.logout())

    async def network_changed(self):
        """Call when the device's network changed: the client moves to a new UDP socket and
        probes the server from it at once. A `migrated` event (`probe_ms`) follows when the
        connection survived the move, else `reconnecting` and `resumed`; the session, rooms
        and missed messages are kept either way."""
        await _call(self._c.network_changed())

    async def suspend(self):
        """Call when the app goes to the background: closes the connection without logging
        out (nothing more is sent); the server keeps the session for its offline grace, and
        the other members see no change. A `suspended` event follows; requests fail until
        `resume`."""
        await self._c.suspend()

    async def resume(self):
        """Call when the app comes back: reconnects (in 0-RTT when possible) and resumes the
        session; `reconnecting` then `resumed` follow, and the messages missed meanwhile arrive
        exactly once, in order."""
        await self._c.resume()

    async def close(self, *, logout=True):
        """Ends the session (a logout: the other members see this one leave at once) and closes
        the connection, waiting for it, bounded. With `logout=False`, or when the connection
        is not up, it only closes: the server then keeps the session, and its rooms, for its
        offline grace period. A pending `next_event` then returns None, as do later ones."""
        if logout and self._c.state() == _ffi.ConnectionState.CONNECTED:
            try:
                await self._c.logout()
            except _ffi.HuddleError:
                pass
        await self._c.close()


class AttributesBatch:
    """Room-attribute changes collected by `Client.room_attributes_batch`, sent on a clean
    exit from `async with`."""

    def __init__(self, client, room_id):
        self._client = client
        self._room_id = room_id
        self._ops = []

    def set(self, attributes, *, is_force=False, is_update_owner=False,
            is_delete_after_owner_left=False):
        """Sets keys, as `Client.set_room_attributes`."""
        self._ops.append(_ffi.AttributeOp.SET(
            attributes=attributes_in(attributes), is_force=is_force,
            is_update_owner=is_update_owner,
            is_delete_after_owner_left=is_delete_after_owner_left))

    def delete(self, keys, *, is_force=False):
        """Deletes keys, as `Client.delete_room_attributes`."""
        self._ops.append(_ffi.AttributeOp.DELETE(keys=list(keys), is_force=is_force))

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        if exc_type is None:
            await _call(self._client._c.batch_room_attributes(self._room_id, self._ops))
