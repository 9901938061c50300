"""The Python binding against a real `huddle serve` on 127.0.0.1 (bindings/test.sh runs it).

Needs HUDDLE_BIN (the `huddle` binary) and HUDDLE_FFI_PY (the folder with the generated
`huddle_ffi.py` and `libhuddle_ffi.so`). Plain asserts: any mismatch exits non-zero.
"""

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.environ["HUDDLE_FFI_PY"])
import huddle_ffi as h  # noqa: E402

HUDDLE = os.environ["HUDDLE_BIN"]


def kind(ev):
    """The event's snake_case name, as in the CLI's JSON events (`room_message`, ...)."""
    return type(ev).__name__.rsplit(".", 1)[-1].lower()


async def until(client, wanted, timeout=5.0):
    """The next event of kind `wanted`, skipping others; fails after `timeout` seconds."""

    async def wait():
        while True:
            ev = await client.next_event()
            assert ev is not None, f"events ended while waiting for {wanted}"
            if kind(ev) == wanted:
                return ev

    return await asyncio.wait_for(wait(), timeout)


def start_server(certs):
    """Starts `huddle serve` on a free port; returns the process and its address."""
    proc = subprocess.Popen(
        [HUDDLE, "serve", "--listen", "127.0.0.1:0", "--certs-dir", certs],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("huddle listening on "):
            return proc, line.split()[3]
    proc.kill()
    raise SystemExit("huddle serve did not start")


def token(certs, user):
    out = subprocess.run(
        [HUDDLE, "token", "--user", user, "--dir", certs],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


async def expect_error(coro, variant, code, name):
    """Awaits `coro`, which must fail with HuddleError.`variant` carrying `code` and `name`."""
    try:
        await coro
    except h.HuddleError as e:
        assert isinstance(e, variant), repr(e)
        assert (e.code, e.name) == (code, name) and e.detail, repr(e)
        return e
    raise AssertionError(f"expected {name} ({code}), the call succeeded")


async def main(server, ca_pem, certs):
    def options(user, tok=None, **kw):
        kw.setdefault("ca_pem", ca_pem)
        return h.ConnectOptions(server=server, user_id=user, token=tok or token(certs, user),
                                **kw)

    alice = await h.connect(options("alice", display_name="Alice"))
    assert kind(await alice.next_event()) == "connecting"
    ev = await alice.next_event()
    assert kind(ev) == "connected" and ev.session_id == alice.session_id(), ev
    assert alice.state() == h.ConnectionState.CONNECTED
    bob = await h.connect(options("bob", reconnect_window_ms=10_000))

    room = await alice.enter_room("py1", "Python room", h.RoomConfig())
    assert (room.room_id, room.room_name, room.created) == ("py1", "Python room", True), room
    room = await bob.enter_room("py1", "Python room", h.RoomConfig())
    assert (room.created, room.member_count) == (False, 2), room
    ev = await until(alice, "members_joined")
    assert ev.room_id == "py1" and [m.user_id for m in ev.members] == ["bob"], ev

    # Messages both ways, in order, with the acks' seqs.
    acks = []
    for i in range(5):
        acks.append(await bob.send_text("py1", f"hello {i}", h.Priority.MEDIUM, None))
    assert [a.seq for a in acks] == list(range(1, 6)), acks
    for i, ack in enumerate(acks):
        ev = await until(alice, "room_message")
        assert (ev.text, ev.sender, ev.seq, ev.priority) == (
            f"hello {i}", "bob", ack.seq, h.Priority.MEDIUM), ev
    ack = await alice.send_custom("py1", 7, b"\x00\x01\xff", h.Priority.HIGH, "alice-1")
    again = await alice.send_custom("py1", 7, b"\x00\x01\xff", h.Priority.HIGH, "alice-1")
    assert again.duplicate and again.seq == ack.seq, (ack, again)
    ev = await until(bob, "room_message")
    assert (ev.custom.sub_type, ev.custom.data, ev.sender, ev.seq) == (
        7, b"\x00\x01\xff", "alice", ack.seq), ev
    assert ev.text is None

    # Errors carry the protocol's code and name.
    await expect_error(bob.send_text("py1", "x" * 40_000, h.Priority.MEDIUM, None),
                       h.HuddleError.Server, 5000, "message_too_large")
    await expect_error(bob.send_text("py1", "x" * 100_000, h.Priority.MEDIUM, None),
                       h.HuddleError.Server, 5000, "message_too_large")
    await expect_error(bob.send_text("nowhere", "x", h.Priority.MEDIUM, None),
                       h.HuddleError.Server, 3002, "room_does_not_exist")
    await alice.create_room("elsewhere", "", h.RoomConfig(destroy_delay_s=60))
    await expect_error(bob.send_text("elsewhere", "x", h.Priority.MEDIUM, None),
                       h.HuddleError.Server, 3003, "not_in_room")
    await expect_error(bob.create_room("elsewhere", "", h.RoomConfig()),
                       h.HuddleError.Server, 3001, "room_already_exists")
    await alice.leave_room("elsewhere")
    await expect_error(h.connect(options("mallory", tok="hd1:not-a-token")),
                       h.HuddleError.Server, 2010, "token_malformed")
    await expect_error(h.connect(options("mallory", tok=token(certs, "eve"))),
                       h.HuddleError.Server, 2001, "token_invalid")
    try:
        await h.connect(options("alice2", ca_pem="no certificate here"))
        raise AssertionError("a CA without a certificate was taken")
    except h.HuddleError.InvalidArgument:
        pass

    # Queries.
    page = await alice.query_history("py1", h.HistoryAnchor.LATEST(), 10)
    assert [m.seq for m in page.messages] == list(range(1, 7)), page
    assert [m.text for m in page.messages[:5]] == [f"hello {i}" for i in range(5)], page
    assert page.messages[5].custom.data == b"\x00\x01\xff" and not page.has_more, page
    page = await alice.query_history("py1", h.HistoryAnchor.BEFORE_SEQ(seq=4), 2)
    assert [m.seq for m in page.messages] == [2, 3] and page.has_more, page
    assert await alice.query_room_online_count("py1") == 2
    members = await alice.query_room_members("py1", "", 10)
    assert [(m.user_id, m.user_name) for m in members.members] == [
        ("alice", "Alice"), ("bob", "")], members
    found = await alice.query_room_members_by_id("py1", ["bob", "zed"])
    assert ([m.user_id for m in found.members], found.not_found) == (["bob"], ["zed"]), found
    rooms = await alice.query_joined_rooms()
    assert [(r.room_id, r.member_count) for r in rooms] == [("py1", 2)], rooms

    # Attributes.
    failed = await alice.set_room_attributes("py1", [h.Attribute(key="topic", value="py")],
                                             False, False, False)
    assert failed == [], failed
    ev = await until(bob, "room_attributes_updated")
    assert [(a.key, a.value) for a in ev.set] == [("topic", "py")], ev
    failed = await bob.delete_room_attributes("py1", ["topic"], False)
    assert [(f.key, f.code, f.name) for f in failed] == [
        ("topic", 6004, "attribute_not_owned")], failed
    await alice.batch_room_attributes("py1", [
        h.AttributeOp.SET(attributes=[h.Attribute(key="a", value="1")], is_force=False,
                          is_update_owner=False, is_delete_after_owner_left=False),
        h.AttributeOp.DELETE(keys=["topic"], is_force=False),
    ])
    attrs = await bob.query_room_attributes("py1")
    assert [(a.key, a.value) for a in attrs] == [("a", "1")], attrs
    changed = await alice.set_room_members_attributes("py1", ["bob", "zed"],
                                                      [h.Attribute(key="role", value="op")])
    assert ([m.user_id for m in changed.members], changed.failed_user_ids) == (
        ["bob"], ["zed"]), changed
    got = await bob.query_room_members_attributes("py1", ["bob"])
    assert [(m.user_id, [(a.key, a.value) for a in m.attributes]) for m in got] == [
        ("bob", [("role", "op")])], got
    listed = await bob.query_room_member_attributes_list("py1", "", 10)
    assert [m.user_id for m in listed.members] == ["bob"] and listed.next_flag == "", listed
    assert await alice.renew_token(token(certs, "alice")) > 0

    # A listener hears the same events, off the client's tasks.
    heard = []
    got_message = threading.Event()

    class Listener(h.EventListener):
        def on_event(self, event):
            heard.append(event)
            if kind(event) == "room_message":
                got_message.set()

    carol = await h.connect_with_listener(options("carol"), Listener())
    await carol.join_room("py1")
    sent = await alice.send_text("py1", "to carol", h.Priority.MEDIUM, None)
    assert await asyncio.to_thread(got_message.wait, 5), [kind(e) for e in heard]
    message = [e for e in heard if kind(e) == "room_message"][0]
    assert (message.text, message.seq) == ("to carol", sent.seq), message
    assert [kind(e) for e in heard[:2]] == ["connecting", "connected"], heard
    assert await carol.next_event() is None
    switched = await carol.switch_room("py1", "py2", "Second", True, h.RoomConfig())
    assert (switched.room_id, switched.created) == ("py2", True), switched
    assert await carol.leave_all_rooms() == ["py2"]
    await carol.close()

    # Leaving and logging out; alice sees both go.
    await until(alice, "members_joined")
    ev = await until(alice, "members_left")
    assert [m.user_id for m in ev.members] == ["carol"], ev
    await bob.leave_room("py1")
    ev = await until(alice, "members_left")
    assert [m.user_id for m in ev.members] == ["bob"] and ev.reason == h.LeaveReason.LEFT, ev
    await bob.logout()
    await alice.close()
    ev = await until(alice, "disconnected")
    assert alice.state() == h.ConnectionState.DISCONNECTED, alice.state()

    # A client dropped on another thread closes without harm; the library goes on.
    holder = [await h.connect(options("dave"))]
    t = threading.Thread(target=holder.clear)
    t.start()
    t.join(5)
    assert not t.is_alive() and holder == []
    erin = await h.connect(options("erin"))
    assert (await erin.enter_room("py1", "", h.RoomConfig())).last_seq == sent.seq
    await erin.logout()


def run():
    with tempfile.TemporaryDirectory() as certs:
        proc, server = start_server(certs)
        try:
            with open(os.path.join(certs, "ca.pem")) as f:
                ca_pem = f.read()
            start = time.monotonic()
            asyncio.run(main(server, ca_pem, certs))
            print(f"python binding: all checks passed in {time.monotonic() - start:.1f} s")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    run()
