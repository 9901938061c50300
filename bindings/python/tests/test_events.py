"""Events through next_event and a listener, a listener that calls back into its client,
closing and dropping clients from other threads, concurrent sends, and a reconnect with replay
through `huddle netsim`."""

import asyncio
import gc
import threading
import time

import huddle
from conftest import until


def test_listener_gets_the_same_events_as_next_event(server):
    async def main():
        heard = []
        got = threading.Event()

        def on_event(ev):
            heard.append((threading.current_thread(), ev))
            if ev.kind == "room_message" and ev.seq == 3:
                got.set()
            if ev.kind == "connecting":
                # Logged by the layer; the next events still come.
                raise RuntimeError("a faulty listener")

        carol = await server.connect("carol", on_event=on_event)
        dave = await server.connect("dave")
        await carol.enter_room("r1")
        await dave.enter_room("r1")
        acks = [await dave.send_text("r1", f"m{i}") for i in range(3)]
        assert await asyncio.to_thread(got.wait, 5), [ev.kind for _, ev in heard]
        kinds = [ev.kind for _, ev in heard]
        assert kinds[:2] == ["connecting", "connected"], kinds
        assert "members_joined" in kinds, kinds
        messages = [ev for _, ev in heard if ev.kind == "room_message"]
        assert [(m.seq, m.text, m.sender) for m in messages] == [
            (a.seq, f"m{i}", "dave") for i, a in enumerate(acks)], messages
        assert all(t is not threading.main_thread() for t, _ in heard)
        assert await carol.next_event() is None
        # next_event of the other client sees the same kinds in the same order.
        seen = [ev.kind async for ev in _take(dave, 2)]
        assert seen == ["connecting", "connected"], seen
        await carol.logout()
        await dave.close()

    asyncio.run(main())


async def _take(client, n):
    for _ in range(n):
        yield await asyncio.wait_for(client.next_event(), 5)


def test_a_listener_that_calls_back_into_its_client_does_not_deadlock(server):
    """On each message the listener queries and sends through its own client (blocking its
    thread until the answers come): every echo arrives, so no client lock is held across the
    listener call."""

    async def main():
        loop = asyncio.get_running_loop()
        echoes = []
        holder = {}

        def on_event(ev):
            if ev.kind == "room_message" and ev.sender == "alice":
                client = holder["bob"]
                assert client.state == "connected" and client.user_id == "bob"
                count = asyncio.run(client.query_room_online_count("r1"))
                ack = asyncio.run(client.send_text("r1", f"echo {ev.text} {count}"))
                # And through the application's own loop, waiting for the answer.
                fut = asyncio.run_coroutine_threadsafe(client.query_joined_rooms(), loop)
                rooms = fut.result(10)
                echoes.append((ack.seq, [r.room_id for r in rooms]))

        holder["bob"] = await server.connect("bob", on_event=on_event)
        alice = await server.connect("alice")
        await alice.enter_room("r1")
        await holder["bob"].enter_room("r1")
        for i in range(5):
            await alice.send_text("r1", str(i))
        texts = []
        while len(texts) < 5:
            ev = await until(alice, "room_message", timeout=10)
            texts.append(ev.text)
        assert texts == [f"echo {i} 2" for i in range(5)], texts
        for _ in range(500):
            if len(echoes) == 5:
                break
            await asyncio.sleep(0.01)
        assert [rooms for _, rooms in echoes] == [["r1"]] * 5, echoes
        await holder.pop("bob").close()
        await alice.close()

    asyncio.run(main())


def test_close_and_drop_from_other_threads(server):
    async def main():
        alice = await server.connect("alice")
        await alice.enter_room("r1")
        await until(alice, "connected")
        waiting = asyncio.ensure_future(alice.next_event())
        await asyncio.sleep(0.1)
        # Closed on another thread (with its own event loop) while this loop awaits an event:
        # the logout's `disconnected` if it came before the close, else None.
        t = threading.Thread(target=lambda: asyncio.run(alice.close()))
        t.start()
        await asyncio.to_thread(t.join, 10)
        assert not t.is_alive()
        ev = await asyncio.wait_for(waiting, 3)
        assert ev is None or ev.kind == "disconnected", ev
        assert await alice.next_event() is None

        # Dropped on other threads, idle and with a read pending on this loop.
        for n in range(3):
            holder = [await server.connect(f"dave{n}")]
            pending = asyncio.ensure_future(holder[0].next_event())
            t = threading.Thread(target=holder.clear)
            t.start()
            await asyncio.to_thread(t.join, 10)
            assert not t.is_alive() and holder == []
            gc.collect()
            await asyncio.wait_for(pending, 10)
            pending = None
        # The library goes on: a new client works; alice's close logged her out, so her room
        # is gone.
        erin = await server.connect("erin")
        assert (await erin.enter_room("r1")).created
        assert (await erin.send_text("r1", "still here")).seq == 1
        await erin.close()

    asyncio.run(main())


def test_many_coroutines_sending_at_once(server):
    async def main():
        alice = await server.connect("alice")
        bob = await server.connect("bob")
        await alice.enter_room("r1")
        await bob.enter_room("r1")
        n = 200
        acks = await asyncio.gather(*[
            alice.send_text("r1", f"m{i}", priority=huddle.Priority.HIGH if i % 2 else "medium")
            for i in range(n)])
        seqs = [a.seq for a in acks]
        assert sorted(seqs) == list(range(1, n + 1)), seqs
        assert len({a.message_id for a in acks}) == n
        got = []
        while len(got) < n:
            ev = await until(bob, "room_message")
            got.append((ev.seq, ev.text))
        assert [s for s, _ in got] == list(range(1, n + 1)), got
        by_seq = {a.seq: f"m{i}" for i, a in enumerate(acks)}
        assert all(by_seq[s] == text for s, text in got)
        await alice.close()
        await bob.close()

    asyncio.run(main())


def _runs(kinds):
    """`kinds` with each run of equal kinds written once with its length, short enough that an
    assertion shows all of it."""
    runs = []
    for kind in kinds:
        if runs and runs[-1][0] == kind:
            runs[-1][1] += 1
        else:
            runs.append([kind, 1])
    return " ".join(k if n == 1 else f"{k}x{n}" for k, n in runs)


def test_reconnect_replays_missed_messages_once_in_order(server, netsim):
    """Bob is behind `huddle netsim` with a 5 s blackhole from 2 s on; alice, straight to the
    server, sends every 0.1 s until 6 s. Bob's stall detector gives up on the dead connection, reconnects
    when the link is back, resumes the session, and gets every medium and high message exactly
    once and in seq order."""

    async def main():
        proxy, started = netsim("--blackhole", "2:5", "--seed", "25")
        alice = await server.connect("alice")
        bob = await server.connect("bob", via=proxy, reconnect_window_s=30)
        await alice.enter_room("r1")
        await bob.enter_room("r1")
        session = bob.session_id
        acks, in_blackhole, own = [], 0, None
        # Alice keeps the room busy into the outage, so that bob's watchdog has data to miss.
        # Bob also sends once inside it: a request waiting for its answer keeps the watchdog
        # probing even if, on a loaded machine, alice's messages paused for a second just
        # before the outage (after a quiet second the watchdog otherwise leaves a link alone).
        while time.monotonic() < started + 6.0:
            prio = huddle.Priority.HIGH if len(acks) % 3 == 0 else huddle.Priority.MEDIUM
            in_blackhole += time.monotonic() > started + 2.1
            if own is None and time.monotonic() > started + 2.3:
                own = asyncio.ensure_future(bob.send_text("r1", "from bob in the outage"))
            acks.append(await alice.send_text("r1", f"m{len(acks)}", priority=prio))
            await asyncio.sleep(0.1)
        assert in_blackhole >= 10 and len(acks) > in_blackhole, (len(acks), in_blackhole)

        # The replayed messages and `resumed` travel on different streams and may come in
        # either order (docs/PROTOCOL.md, "Resume"): read until both are in.
        kinds, seqs = [], []
        deadline = time.monotonic() + 30
        while (len(seqs) < len(acks) or "resumed" not in kinds) and time.monotonic() < deadline:
            ev = await asyncio.wait_for(bob.next_event(), deadline - time.monotonic())
            kinds.append(ev.kind)
            if ev.kind == "room_message":
                seqs.append(ev.seq)
            elif ev.kind == "resumed":
                assert ev.session_resumed, ev
                assert [(r.room_id, r.rejoined, r.recovered) for r in ev.rooms] == [
                    ("r1", True, True)], ev
        assert "reconnecting" in kinds and "resumed" in kinds, _runs(kinds)
        assert kinds.index("reconnecting") < kinds.index("resumed"), _runs(kinds)
        assert seqs == [a.seq for a in acks], (seqs, [a.seq for a in acks])
        assert bob.session_id == session and bob.state == "connected"
        # Bob's own send, made in the outage, was carried to the resumed connection.
        own = await asyncio.wait_for(own, 10)
        assert own.seq not in seqs, (own, seqs)
        # Nothing more arrives: exactly once.
        ack = await alice.send_text("r1", "after")
        ev = await until(bob, "room_message")
        assert ev.seq == ack.seq == max(acks[-1].seq, own.seq) + 1, ev
        await alice.close()
        await bob.close()

    asyncio.run(main())
