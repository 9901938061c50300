"""The script of issue 25, run as written (issue25_script.py) against a fresh server."""

import asyncio

import issue25_script


def test_issue_script_runs_as_written(server):
    async def run():
        # The script expects `not_in_room` (3003) for a send to "elsewhere": a room that exists
        # and bob is not in (a room that does not exist is 3002, `room_does_not_exist`).
        carol = await server.connect("carol")
        await carol.create_room("elsewhere", "Someone else's room", destroy_delay_s=60)
        await issue25_script.main(server.addr, server.ca_pem, server.token("alice"),
                                  server.token("bob"))
        await carol.close()

    asyncio.run(run())
