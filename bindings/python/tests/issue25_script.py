# The script of issue 25, exactly as the issue gives it (test_issue_script.py runs its main).

import asyncio
import huddle

async def until(client, kind, timeout=5.0):
    async def wait():
        while True:
            ev = await client.next_event()
            if ev.kind == kind:
                return ev
    return await asyncio.wait_for(wait(), timeout)

async def main(server, ca_pem, token_alice, token_bob):
    alice = await huddle.connect(server=server, user_id="alice", token=token_alice, ca_pem=ca_pem)
    bob = await huddle.connect(server=server, user_id="bob", token=token_bob, ca_pem=ca_pem)
    room = await alice.enter_room("py1", "Python room")
    assert room.room_id == "py1"
    await bob.enter_room("py1", "Python room")
    ev = await until(alice, "members_joined")
    assert [m.user_id for m in ev.members] == ["bob"], ev
    ack = await bob.send_text("py1", "hello from python", priority=huddle.Priority.MEDIUM)
    ev = await until(alice, "room_message")
    assert (ev.text, ev.sender, ev.seq) == ("hello from python", "bob", ack.seq), ev
    try:
        await bob.send_text("elsewhere", "x", priority=huddle.Priority.MEDIUM)
        raise SystemExit("a send to a room bob is not in succeeded")
    except huddle.HuddleError as e:
        assert e.name == "not_in_room" and e.code == 3003, (e.name, e.code)
    await bob.close()
    ev = await until(alice, "members_left")
    assert [m.user_id for m in ev.members] == ["bob"], ev
    await alice.close()
