"""Mobile life and the library's robustness through the asyncio layer, against a real server:
network_changed() migrates without a reconnect, suspend()/resume() replays what was missed
exactly once with no member flap, the mobile profile connects, a cancelled next_event loses no
event, close() ends a pending next_event, and a listener that throws (Kotlin's and Swift's
path, the generated interface used directly) still gets the next events."""

import asyncio
import threading

import huddle
from huddle import _ffi
from conftest import until

KINDS_OF_A_RECONNECT = {"reconnecting", "resumed", "disconnected"}


async def drain(client, quiet_s=0.3):
    """The events of `client` until none comes for `quiet_s`."""
    seen = []
    while True:
        try:
            ev = await asyncio.wait_for(client.next_event(), quiet_s)
        except asyncio.TimeoutError:
            return seen
        assert ev is not None, seen
        seen.append(ev)


async def messages(client, n, timeout=5.0):
    """Events of `client` until `n` room messages came; returns (messages, all events)."""
    seen = []

    async def wait():
        while sum(ev.kind == "room_message" for ev in seen) < n:
            ev = await client.next_event()
            assert ev is not None, [e.kind for e in seen]
            seen.append(ev)

    await asyncio.wait_for(wait(), timeout)
    return [ev for ev in seen if ev.kind == "room_message"], seen


def test_network_changed_migrates_without_a_reconnect(server):
    async def main():
        alice = await server.connect("alice", mobile=True)
        bob = await server.connect("bob")
        await alice.enter_room("m1")
        await bob.enter_room("m1")
        await drain(alice)
        acks = [await bob.send_text("m1", f"a{i}") for i in range(3)]
        await alice.network_changed()
        acks += [await bob.send_text("m1", f"b{i}") for i in range(3)]
        got, seen = await messages(alice, 6)
        seen += await drain(alice, 1.0)
        kinds = [ev.kind for ev in seen]
        migrated = [ev for ev in seen if ev.kind == "migrated"]
        assert len(migrated) == 1, kinds
        assert isinstance(migrated[0].probe_ms, int) and migrated[0].probe_ms >= 0
        assert not KINDS_OF_A_RECONNECT & set(kinds), kinds
        assert [(m.seq, m.text) for m in got] == [
            (a.seq, t) for a, t in zip(acks, ["a0", "a1", "a2", "b0", "b1", "b2"])]
        # Her own sends go out from the new socket too.
        ack = await alice.send_text("m1", "from the new path")
        ev = await until(bob, "room_message")
        assert (ev.seq, ev.text, ev.sender) == (ack.seq, "from the new path", "alice")
        assert alice.state == huddle.ConnectionState.CONNECTED
        await alice.close()
        await bob.close()

    asyncio.run(main())


def test_suspend_and_resume_replay_once_without_a_member_flap(server):
    async def main():
        alice = await server.connect("alice", mobile=True, keep_alive_s=10)
        bob = await server.connect("bob")
        await alice.enter_room("m1")
        await bob.enter_room("m1")
        await drain(alice)
        await drain(bob)
        session = alice.session_id
        await alice.suspend()
        await until(alice, "suspended")
        assert alice.state == huddle.ConnectionState.SUSPENDED
        try:
            await alice.send_text("m1", "while away")
            raise AssertionError("a send while suspended succeeded")
        except huddle.HuddleError as e:
            assert e.kind == "connection", e
        acks = [await bob.send_text("m1", f"m{i}") for i in range(5)]
        await asyncio.sleep(0.5)
        await alice.resume()
        got, seen = await messages(alice, 5, timeout=10)
        seen += await drain(alice, 1.0)
        kinds = [ev.kind for ev in seen]
        resumed = [ev for ev in seen if ev.kind == "resumed"]
        assert len(resumed) == 1 and resumed[0].session_resumed, kinds
        assert kinds.count("room_message") == 5, kinds
        assert [(m.seq, m.text) for m in got] == [(a.seq, f"m{i}") for i, a in enumerate(acks)]
        assert alice.session_id == session
        assert alice.state == huddle.ConnectionState.CONNECTED
        # Bob never saw her leave or come back.
        flap = [ev.kind for ev in await drain(bob, 1.0)
                if ev.kind in ("members_left", "members_joined")]
        assert flap == [], flap
        ack = await bob.send_text("m1", "after")
        ev = await until(alice, "room_message")
        assert (ev.seq, ev.text) == (ack.seq, "after")
        await alice.close()
        await bob.close()

    asyncio.run(main())


def test_a_cancelled_next_event_loses_no_event(server):
    async def main():
        alice = await server.connect("alice")
        bob = await server.connect("bob")
        await alice.enter_room("r1")
        await bob.enter_room("r1")
        await drain(alice)
        for i in range(5):
            try:
                await asyncio.wait_for(alice.next_event(), 0.05)
                raise AssertionError("an event was pending")
            except asyncio.TimeoutError:
                pass
            ack = await bob.send_text("r1", f"m{i}")
            await asyncio.sleep(0.1)
            ev = await until(alice, "room_message")
            assert (ev.seq, ev.text) == (ack.seq, f"m{i}"), ev
        await alice.close()
        await bob.close()

    asyncio.run(main())


def test_close_ends_a_pending_next_event(server):
    async def main():
        alice = await server.connect("alice")
        await until(alice, "connected")
        pending = asyncio.ensure_future(alice.next_event())
        await asyncio.sleep(0.1)
        await alice.close(logout=False)
        assert await asyncio.wait_for(pending, 3) is None
        assert await alice.next_event() is None

    asyncio.run(main())


class _Throwing(_ffi.EventListener):
    """A listener of the generated interface (as a Kotlin or Swift app implements it) that
    throws on the connection events."""

    def __init__(self):
        self.texts = []
        self.three = threading.Event()

    def on_event(self, event):
        if isinstance(event, (_ffi.HuddleEvent.CONNECTING, _ffi.HuddleEvent.CONNECTED)):
            raise RuntimeError("a faulty listener")
        if isinstance(event, _ffi.HuddleEvent.ROOM_MESSAGE):
            self.texts.append(event.text)
            if len(self.texts) == 3:
                self.three.set()


def test_a_listener_that_throws_still_gets_the_next_events(server):
    async def main():
        listener = _Throwing()
        options = _ffi.ConnectOptions(server=server.addr, user_id="carol",
                                      token=server.token("carol"), ca_pem=server.ca_pem)
        carol = huddle.Client(await _ffi.connect_with_listener(options, listener))
        dave = await server.connect("dave")
        await carol.enter_room("r1")
        await dave.enter_room("r1")
        for i in range(3):
            await dave.send_text("r1", f"m{i}")
        assert await asyncio.to_thread(listener.three.wait, 5), listener.texts
        assert listener.texts == ["m0", "m1", "m2"]
        assert carol.listener_failures == 2
        await carol.close()
        await dave.close()

    asyncio.run(main())
