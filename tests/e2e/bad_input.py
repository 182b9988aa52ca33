#!/usr/bin/env python3
"""Sends malformed input to an rgpu-server, one connection per case.

    bad_input.py HOST:PORT

For each case prints one line
    CASE <name> port=<local port> closed=<yes|no> session_error=<status|none>
where "closed" says whether the server ended the connection by itself within
5 s and session_error is the status of the SessionError frame it sent last,
if any. Exits 1 if the server refused a connection (it must keep serving).
The frame layout is transport/include/rgpu/frame.h; message numbers are
proto/session.proto.
"""
import os
import socket
import struct
import sys

MAGIC = 0x55504752


def protocol_version():
    """RGPU_PROTOCOL_VERSION, from the source tree's frame.h."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "transport", "include", "rgpu", "frame.h")) as f:
        for line in f:
            if line.startswith("#define RGPU_PROTOCOL_VERSION"):
                return int(line.split()[2].rstrip("u"))
    raise RuntimeError("no RGPU_PROTOCOL_VERSION in frame.h")


VERSION = protocol_version()
OLD_VERSION = VERSION - 1 if VERSION > 1 else VERSION + 1   # a peer from before this one
MSG_HELLO = 1
MSG_HELLO_REPLY = 2
MSG_SESSION_ERROR = 3
MSG_BATCH = 10       # whole frames back to back (rgpu/wire.h)
MSG_FRAGMENT = 11    # a piece of a frame too large for one message
F_LAST = 2           # MSG_FRAGMENT: the last piece
MSG_CL_FINISH = 131
HEADER = struct.Struct("<IHHIIQQ")  # magic version type flags body_len seq bulk_len


def header(msg_type, body_len, seq=1, bulk_len=0, version=VERSION, magic=MAGIC):
    return HEADER.pack(magic, version, msg_type, 0, body_len, seq, bulk_len)


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def hello_body():
    arch = b"x86_64"
    return (b"\x08" + varint(VERSION)                # protocol_version
            + b"\x1a" + varint(len(arch)) + arch     # client_arch
            + b"\x20" + varint(1)                    # api = API_OPENCL
            + b"\x30" + varint(os.getpid()))         # client_pid


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def recv_message(sock):
    """One message as the server's transport sends it: (type, flags, body, bulk)."""
    magic, version, msg_type, flags, body_len, seq, bulk_len = HEADER.unpack(recv_exact(sock, 32))
    if magic != MAGIC:
        raise ValueError("server sent a frame with bad magic %#x" % magic)
    return msg_type, flags, recv_exact(sock, body_len), recv_exact(sock, bulk_len)


def split_frame(data):
    """(type, body, rest) of the whole frame at the start of data."""
    magic, version, msg_type, flags, body_len, seq, bulk_len = HEADER.unpack(data[:32])
    end = 32 + body_len + bulk_len
    return msg_type, data[32:32 + body_len], data[end:]


PENDING = {}  # socket -> frames left of a batch


def recv_frame(sock):
    """The next whole frame: out of a batch, put back together from
    fragments, or as it came. Returns (type, body)."""
    if PENDING.get(sock):
        msg_type, body, PENDING[sock] = split_frame(PENDING[sock])
        return msg_type, body
    msg_type, flags, body, bulk = recv_message(sock)
    if msg_type == MSG_BATCH:
        PENDING[sock] = bulk
        return recv_frame(sock)
    if msg_type == MSG_FRAGMENT:
        whole = bulk
        while not flags & F_LAST:
            msg_type, flags, body, bulk = recv_message(sock)
            if msg_type != MSG_FRAGMENT:
                raise ValueError("server sent a frame of type %d between fragments" % msg_type)
            whole += bulk
        msg_type, body, _ = split_frame(whole)
    return msg_type, body


def session_error_status(body):
    """SessionError.status (field 1, int32 varint), or None."""
    if len(body) < 2 or body[0] != 0x08:
        return None
    v, shift, i = 0, 0, 1
    while i < len(body):
        v |= (body[i] & 0x7F) << shift
        shift += 7
        if not body[i] & 0x80:
            break
        i += 1
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def outcome(sock):
    """Waits up to 5 s for the server to close; returns (closed, status)."""
    sock.settimeout(5.0)
    status = None
    try:
        while True:
            msg_type, body = recv_frame(sock)
            if msg_type == MSG_SESSION_ERROR:
                status = session_error_status(body)
    except (ConnectionError, socket.timeout, OSError) as e:
        closed = not isinstance(e, socket.timeout)
    return closed, status


def connect(addr):
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5.0)
    return sock


def handshake(sock):
    body = hello_body()
    sock.sendall(header(MSG_HELLO, len(body)) + body)
    msg_type, _ = recv_frame(sock)
    if msg_type != MSG_HELLO_REPLY:
        raise RuntimeError("expected a HelloReply, got type %d" % msg_type)


def report(name, sock, closed, status):
    print("CASE %s port=%d closed=%s session_error=%s" % (
        name, sock.getsockname()[1], "yes" if closed else "no",
        "none" if status is None else status), flush=True)


def main():
    addr = sys.argv[1]

    # Kept open, stalled mid-header, while every other case runs: one stuck
    # client must not hold up anyone else.
    stalled = connect(addr)
    stalled.sendall(header(MSG_HELLO, 100)[:10])

    cases = [
        ("garbage", lambda s: s.sendall(os.urandom(4096))),
        ("http", lambda s: s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" + b" " * 64)),
        ("absurd_body_length", lambda s: s.sendall(header(MSG_HELLO, 0xFFFFFFFF))),
        ("absurd_bulk_length", lambda s: s.sendall(header(MSG_HELLO, 4, bulk_len=1 << 62))),
        ("wrong_frame_version", lambda s: s.sendall(header(MSG_HELLO, 0, version=OLD_VERSION))),
        ("hello_does_not_unpack", lambda s: s.sendall(header(MSG_HELLO, 16) + b"\xff" * 16)),
        ("hello_wrong_protocol_version",
         lambda s: s.sendall(header(MSG_HELLO, 2) + b"\x08\x07")),
        ("not_hello_first", lambda s: s.sendall(header(MSG_CL_FINISH, 0))),
        ("unknown_type_after_hello",
         lambda s: (handshake(s), s.sendall(header(9999, 0, seq=2)))),
        ("body_does_not_unpack_after_hello",
         lambda s: (handshake(s), s.sendall(header(MSG_CL_FINISH, 8, seq=2) + b"\xff" * 8))),
    ]
    for name, attack in cases:
        sock = connect(addr)
        try:
            attack(sock)
        except (ConnectionError, OSError):
            pass  # the server may close while we still send: that is fine
        closed, status = outcome(sock)
        report(name, sock, closed, status)
        sock.close()

    # A frame cut short: the header promises 100 bytes of body, 10 come,
    # then the client hangs up.
    sock = connect(addr)
    body = hello_body()
    sock.sendall(header(MSG_HELLO, 100) + body[:10])
    sock.shutdown(socket.SHUT_WR)
    closed, status = outcome(sock)
    report("truncated_frame", sock, closed, status)
    sock.close()

    stalled_port = stalled.getsockname()[1]
    stalled.close()
    print("CASE stalled_header port=%d closed=client session_error=none" % stalled_port,
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
