"""Fixtures: a real `huddle serve` on 127.0.0.1 per test, its tokens and CA, and the seeded UDP
impairment proxy `huddle netsim`. The `huddle` binary is $HUDDLE_BIN, else the repository's
target/debug/huddle (bindings/test.sh builds it)."""

import asyncio
import os
import pathlib
import subprocess
import time

import pytest

import huddle

ROOT = pathlib.Path(__file__).resolve().parents[3]
HUDDLE = os.environ.get("HUDDLE_BIN") or str(ROOT / "target" / "debug" / "huddle")


def start(args, banner, timeout=20):
    """Starts `huddle ARGS` and waits for the stdout line starting with `banner`; returns the
    process and that line's words."""
    proc = subprocess.Popen([HUDDLE, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(banner):
            return proc, line.split()
    stop(proc)
    raise RuntimeError(f"huddle {args[0]} did not start")


def stop(proc):
    """Stops a process started by `start`, by its PID."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    proc.stdout.close()


class Server:
    """A running `huddle serve`: its address, CA, and tokens for any user."""

    def __init__(self, certs):
        self.certs = certs
        self.proc, words = start(["serve", "--listen", "127.0.0.1:0", "--certs-dir", certs],
                                 "huddle listening on ")
        self.addr = words[3]
        self.ca_pem = pathlib.Path(certs, "ca.pem").read_text()

    def token(self, user):
        """A login token for `user` from `huddle token`."""
        out = subprocess.run([HUDDLE, "token", "--user", user, "--dir", self.certs],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    async def connect(self, user, *, via=None, **kw):
        """`huddle.connect` as `user`, straight to the server or `via` a proxy address."""
        return await huddle.connect(server=via or self.addr, user_id=user,
                                    token=self.token(user), ca_pem=self.ca_pem, **kw)


@pytest.fixture
def server(tmp_path):
    """A fresh `huddle serve` on 127.0.0.1:0 with its own certificates folder."""
    s = Server(str(tmp_path))
    yield s
    stop(s.proc)


@pytest.fixture
def netsim(server):
    """Starts `huddle netsim` in front of the server with the given flags; returns its
    listening address and the time.monotonic() at which it reported it (blackholes count from
    its start)."""
    procs = []

    def run(*flags):
        proc, words = start(["netsim", "--listen", "127.0.0.1:0", "--upstream", server.addr,
                             "--duration", "120", *flags], "netsim listening on ")
        procs.append(proc)
        return words[3], time.monotonic()

    yield run
    for proc in procs:
        stop(proc)


async def until(client, kind, timeout=5.0):
    """The next event of `kind`, skipping others."""

    async def wait():
        while True:
            ev = await client.next_event()
            assert ev is not None, f"events ended while waiting for {kind}"
            if ev.kind == kind:
                return ev

    return await asyncio.wait_for(wait(), timeout)
