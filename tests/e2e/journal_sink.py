#!/usr/bin/env python3
"""A stand-in for journald's native socket, for e2e.journald only.

Binds /run/systemd/journal/socket (inside the test's private mount
namespace: the host's journald, if any, is not touched), decodes every
datagram of the native protocol (KEY=value lines, or KEY, a little-endian
64-bit length and the raw value for values holding a newline) and appends
each record as one JSON object per line to OUT, until SIGTERM.
Large records that libsystemd passes as a memfd (SCM_RIGHTS) are read too.
"""
import array, json, os, signal, socket, struct, sys

path, out = "/run/systemd/journal/socket", sys.argv[1]


def decode(data):
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            i = nl + 1
        else:
            key = line
            (n,) = struct.unpack_from("<Q", data, nl + 1)
            value = data[nl + 9:nl + 9 + n]
            i = nl + 9 + n + 1
        fields[key.decode()] = value.decode(errors="replace")
    return fields


sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
if os.path.exists(path):
    os.unlink(path)
sock.bind(path)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("listening", flush=True)
with open(out, "a") as f:
    while True:
        fds = array.array("i")
        data, anc, _, _ = sock.recvmsg(1 << 20, socket.CMSG_SPACE(4))
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[:4])
        if fds:
            with os.fdopen(fds[0], "rb") as memfd:
                memfd.seek(0)
                data = memfd.read()
        f.write(json.dumps(decode(data)) + "\n")
        f.flush()
