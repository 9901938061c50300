"""The script of issue 25, run as written (issue25_script.py) against a fresh server."""

import asyncio

import issue25_script


def test_issue_script_runs_as_written(server):
    asyncio.run(issue25_script.main(server.addr, server.ca_pem, server.token("alice"),
                                    server.token("bob")))
