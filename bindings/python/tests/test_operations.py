"""Every operation of the client through the `huddle` package, and the error mapping."""

import asyncio

import pytest

import huddle
from conftest import until


def test_rooms_messages_and_queries(server):
    async def main():
        alice = await server.connect("alice", display_name="Alice")
        assert (await alice.next_event()).kind == "connecting"
        ev = await alice.next_event()
        assert ev.kind == "connected" and ev.session_id == alice.session_id, ev
        assert alice.state == huddle.ConnectionState.CONNECTED == "connected"
        assert alice.user_id == "alice"
        bob = await server.connect("bob", reconnect_window_s=10)

        room = await alice.create_room("r1", "Room one", attributes={"topic": "py"})
        assert (room.room_id, room.room_name, room.created, room.attributes) == (
            "r1", "Room one", True, {"topic": "py"}), room
        room = await bob.join_room("r1")
        assert (room.created, room.already_member, room.member_count) == (False, False, 2), room
        again = await bob.enter_room("r1")
        assert again.already_member and again.attributes == {"topic": "py"}, again
        ev = await until(alice, "members_joined")
        assert ev.room_id == "r1" and [(m.user_id, m.user_name) for m in ev.members] == [
            ("bob", "")], ev

        acks = [await bob.send_text("r1", f"hello {i}") for i in range(3)]
        assert [a.seq for a in acks] == [1, 2, 3] and not any(a.duplicate for a in acks), acks
        for i, ack in enumerate(acks):
            ev = await until(alice, "room_message")
            assert (ev.room_id, ev.text, ev.sender, ev.seq, ev.message_id, ev.priority) == (
                "r1", f"hello {i}", "bob", ack.seq, ack.message_id, "medium"), ev
            assert ev.custom is None and ev.timestamp_ms == ack.timestamp_ms
        cid = alice.next_client_msg_id()
        assert cid != alice.next_client_msg_id()
        ack = await alice.send_custom("r1", 7, b"\x00\x01\xff", priority=huddle.Priority.HIGH,
                                      client_msg_id=cid)
        dup = await alice.send_custom("r1", 7, b"\x00\x01\xff", priority="high",
                                      client_msg_id=cid)
        assert dup.duplicate and dup.seq == ack.seq, (ack, dup)
        ev = await until(bob, "room_message")
        assert (ev.custom.sub_type, ev.custom.data, ev.text, ev.priority) == (
            7, b"\x00\x01\xff", None, huddle.Priority.HIGH), ev
        await bob.send_text("r1", "low", priority=huddle.Priority.LOW)

        page = await alice.query_history("r1", count=10)
        assert [m.seq for m in page.messages] == [1, 2, 3, 4, 5] and not page.has_more, page
        assert page.messages[3].custom.data == b"\x00\x01\xff"
        page = await alice.query_history("r1", before_seq=3, count=1)
        assert [m.text for m in page.messages] == ["hello 1"] and page.has_more, page
        page = await alice.query_history("r1", after_seq=3, count=10)
        assert [m.seq for m in page.messages] == [4, 5], page
        with pytest.raises(ValueError):
            await alice.query_history("r1", before_seq=1, after_seq=1)

        assert await alice.query_room_online_count("r1") == 2
        first = await alice.query_room_members("r1", count=1)
        assert [m.user_id for m in first.members] == ["alice"] and first.next_flag, first
        rest = await alice.query_room_members("r1", next_flag=first.next_flag, count=10)
        assert [m.user_id for m in rest.members] == ["bob"] and rest.next_flag == "", rest
        found = await alice.query_room_members_by_id("r1", ["bob", "zed"])
        assert ([m.user_id for m in found.members], found.not_found) == (["bob"], ["zed"])
        rooms = await bob.query_joined_rooms()
        assert [(r.room_id, r.room_name, r.member_count) for r in rooms] == [
            ("r1", "Room one", 2)], rooms

        # Room and member attributes, and a batch.
        assert await alice.set_room_attributes("r1", {"a": "1"}) == []
        ev = await until(bob, "room_attributes_updated")
        assert (ev.set, ev.deleted) == ({"a": "1"}, []), ev
        failed = await bob.delete_room_attributes("r1", ["a"])
        assert [(f.key, f.code, f.name) for f in failed] == [("a", 6004, "attribute_not_owned")]
        async with alice.room_attributes_batch("r1") as batch:
            batch.set({"b": "2"})
            batch.delete(["topic"])
        assert await bob.query_room_attributes("r1") == {"a": "1", "b": "2"}
        ev = await until(bob, "room_attributes_updated")
        assert (ev.set, ev.deleted) == ({"b": "2"}, ["topic"]), ev
        changed = await alice.set_room_members_attributes("r1", ["bob", "zed"], {"role": "op"})
        assert [(m.user_id, m.attributes) for m in changed.members] == [("bob", {"role": "op"})]
        assert changed.failed_user_ids == ["zed"]
        ev = await until(bob, "room_member_attributes_updated")
        assert ev.operated_by == "alice" and ev.members[0].attributes == {"role": "op"}, ev
        got = await bob.query_room_members_attributes("r1", ["bob", "alice"])
        assert [(m.user_id, m.attributes) for m in got] == [
            ("bob", {"role": "op"}), ("alice", {})], got
        listed = await bob.query_room_member_attributes_list("r1")
        assert [m.user_id for m in listed.members] == ["bob"] and listed.next_flag == ""

        assert await alice.renew_token(server.token("alice")) > 0

        # Switch, leave all, leave and logout, seen by the other member.
        switched = await bob.switch_room("r1", "r2", "Room two")
        assert (switched.room_id, switched.created) == ("r2", True), switched
        ev = await until(alice, "members_left")
        assert [m.user_id for m in ev.members] == ["bob"] and ev.reason == "left", ev
        assert await bob.leave_all_rooms() == ["r2"]
        await bob.join_room("r1")
        await until(alice, "members_joined")
        await bob.leave_room("r1")
        ev = await until(alice, "members_left")
        assert ev.reason == huddle.LeaveReason.LEFT, ev
        await bob.logout()
        ev = await until(bob, "disconnected")
        assert bob.state == huddle.ConnectionState.DISCONNECTED
        await bob.close()
        async with alice:
            pass
        # Closed: the events end at once.
        assert [e async for e in alice.events()] == []

    asyncio.run(main())


async def expect(coro, kind, code, name):
    """Awaits `coro`, which must raise a HuddleError of `kind` with `code` and `name`."""
    with pytest.raises(huddle.HuddleError) as info:
        await coro
    e = info.value
    assert (e.kind, e.code, e.name) == (kind, code, name), (e.kind, e.code, e.name, e.detail)
    assert e.detail and name in str(e)
    return e


def test_errors_carry_the_protocols_code_and_name(server):
    async def main():
        alice = await server.connect("alice")
        bob = await server.connect("bob")
        await alice.create_room("r1", destroy_delay_s=60)
        await bob.create_room("mine")
        await expect(bob.send_text("r1", "x"), "server", 3003, "not_in_room")
        await expect(bob.join_room("nowhere"), "server", 3002, "room_does_not_exist")
        # To a non-member, a room that does not exist looks like any room it is not in.
        await expect(bob.send_text("nowhere", "x"), "server", 3003, "not_in_room")
        await expect(bob.create_room("r1"), "server", 3001, "room_already_exists")
        await expect(bob.send_text("mine", "x" * 40_000), "server", 5000, "message_too_large")
        # Over the client's own frame limit: refused before it is sent, with the same code.
        await expect(bob.send_text("mine", "x" * 100_000), "server", 5000, "message_too_large")
        await expect(huddle.connect(server=server.addr, user_id="mallory",
                                    token="hd1:not-a-token", ca_pem=server.ca_pem),
                     "server", 2010, "token_malformed")
        await expect(huddle.connect(server=server.addr, user_id="mallory",
                                    token=server.token("eve"), ca_pem=server.ca_pem),
                     "server", 2001, "token_invalid")
        e = await expect(huddle.connect(server=server.addr, user_id="x", token="t",
                                        ca_pem="no certificate here"),
                         "invalid_argument", None, "invalid_argument")
        assert "ca_pem" in e.detail
        await expect(huddle.connect(server="nowhere.invalid:1", user_id="x", token="t",
                                    ca_pem=server.ca_pem),
                     "invalid_argument", None, "invalid_argument")
        with pytest.raises(ValueError):
            await bob.send_text("mine", "x", priority="urgent")
        await bob.close()
        e = await expect(bob.send_text("mine", "x"), "connection", None, "connection")
        assert e.ended == huddle.Ended.SESSION, e.ended
        await alice.close()

    asyncio.run(main())
