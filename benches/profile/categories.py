#!/usr/bin/env python3
"""Shares of a server's CPU by where in Huddle's delivery path each sample was taken.

Reads `perf script` output with call chains (BENCHMARKS.md, "W3 against Redis with TLS, cost by
cost"):

    perf record -F 797 --call-graph dwarf,16384 -p <server pid> -o w3.data -- sleep 4
    perf script -i w3.data -F comm,tid,ip,sym --no-inline > w3.script
    benches/profile/categories.py w3.script 21.3          # µs per delivery of the run, optional
    benches/profile/categories.py w3.script --under Connection::handle_event \\
        "decrypt=decrypt_in_place|HeaderProtectionKey|ring::aead|ring_core" \\
        "acked stream data=received_ack_of|SendBuffer::ack"

A sample goes to the first category (in the order below, or of the arguments after --under)
one of whose patterns is a substring of any frame of its call chain. With --under, only the
samples with ROOT in their chain count, and those matching no category are shown by their leaf.
"""
import collections
import sys

# The delivery path of the server, in the order that resolves overlaps (a `sendmsg` made from
# the connection driver is a send, not "driver: other").
PATH = [
    ("send: sendmsg (kernel + libc)", ["AsyncUdpSocket>::try_send"]),
    ("ack: recvmmsg (kernel)", ["__recvmmsg", "UdpSocketState::recv"]),
    ("ack: endpoint routing (Endpoint::handle, queue)", ["EndpointDriver"]),
    ("ack: handle_event (decrypt, ACK frame, loss/cc)", ["Connection::handle_event"]),
    ("send: poll_transmit (build, encrypt, track)", ["Connection::poll_transmit"]),
    ("timers and parking", ["Sleep::reset", "Timer::reset", "time::wheel", "time::Driver",
                            "park_internal", "epoll_wait"]),
    ("send: stream writer tasks", ["spawn_writer", "SendStream"]),
    ("send: dispatch (room fan-out)", ["timed_core", "server::dispatch", "accept::"]),
    ("driver: other (event queue, app events)", ["ConnectionDriver"]),
]


def stacks(path):
    """Each sample's frames, leaf first."""
    frames = []
    for line in open(path, errors="replace"):
        if not line.strip() or line[0] not in " \t":
            if frames:
                yield frames
            frames = []
            continue
        parts = line.split(None, 1)
        frames.append(parts[1].strip() if len(parts) > 1 else "?")
    if frames:
        yield frames


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    us, root, cats = None, None, PATH
    rest = argv[2:]
    if rest and rest[0] == "--under":
        root = rest[1]
        cats = [(c.split("=", 1)[0], c.split("=", 1)[1].split("|")) for c in rest[2:]]
    elif rest:
        us = float(rest[0])
    counts, total = collections.Counter(), 0
    for frames in stacks(argv[1]):
        if root and not any(root in f for f in frames):
            continue
        total += 1
        name = next((n for n, pats in cats if any(p in f for f in frames for p in pats)), None)
        counts[name or "leaf: " + frames[0][:70]] += 1
    if not total:
        sys.exit("no samples")
    small = 0
    for name, n in counts.most_common():
        if name.startswith("leaf: ") and n / total < 0.01:
            small += n
            continue
        cost = f"  ~{us * n / total:.1f} us" if us else ""
        print(f"{100 * n / total:5.1f}%  {name}{cost}")
    print(f"{100 * small / total:5.1f}%  other leaves, each under 1%")
    print(f"{total} samples")


if __name__ == "__main__":
    main(sys.argv)
