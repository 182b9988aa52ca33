#!/usr/bin/env python3
"""A recording TCP proxy between rgpu clients and a real rgpu-server.

    record_proxy.py LISTEN_PORT_FILE SERVER_HOST:PORT CORPUS_DIR

Listens on 127.0.0.1 (a free port, written to LISTEN_PORT_FILE), forwards
every connection to the server unchanged, and splits what flows into frames
(tests/fuzz/README in docs/fuzzing.md). It writes seeds into CORPUS_DIR:

  fuzz_frame/   every distinct frame, both ways (header + body; bulk left out)
  fuzz_server/  per client connection, its frames after the Hello in the
                record format of fuzz_server.c (u8 type index, u16 body
                length, body, u16 bulk length, bulk), at most
                RGPU_FUZZ_MAX_FRAMES frames, bulks cut to RGPU_FUZZ_MAX_BULK
  fuzz_hello/   the server's HelloReply bodies (mode byte 0, then the body)

File names are the SHA-1 of the contents, so the same frame recorded twice is
one file. The table of fuzz_server's types is read from fuzz_server.c and
proto/session.proto, so the two cannot drift apart. Runs until killed.
"""
import hashlib
import os
import re
import socket
import struct
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HEADER = 32
MAGIC = 0x55504752
MAX_SEED_BODY = 1 << 16


def msg_types():
    """MsgType name -> value, from proto/session.proto."""
    text = open(os.path.join(ROOT, "proto", "session.proto")).read()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"\b(MSG_\w+)\s*=\s*(\d+);", text)}


def server_limit(name):
    """A #define of fuzz_server.c (RGPU_FUZZ_MAX_FRAMES, RGPU_FUZZ_MAX_BULK)."""
    text = open(os.path.join(HERE, "fuzz_server.c")).read()
    return int(re.search(r"#define %s (\d+)" % name, text).group(1))


def server_table():
    """fuzz_server.c's rgpu_fuzz_server_types, as frame type values in order."""
    text = open(os.path.join(HERE, "fuzz_server.c")).read()
    body = text[text.index("rgpu_fuzz_server_types[] = {"):]
    body = body[:body.index("};")]
    names = msg_types()
    table = []
    for tok in re.findall(r"RGPU__MSG_TYPE__(MSG_\w+)|\b(\d+)\b", body):
        table.append(names[tok[0]] if tok[0] else int(tok[1]))
    return table


def save(directory, data):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, hashlib.sha1(data).hexdigest())
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)


MSG_BATCH, MSG_FRAGMENT, F_LAST = 10, 11, 2   # rgpu/wire.h's carriers


def split(buf):
    """Whole frames at the start of buf: ([(type, seq, flags, header, body, bulk)], rest);
    rest None when buf is not rgpu."""
    frames = []
    while len(buf) >= HEADER:
        magic, _ver, ftype, flags, body_len, seq, bulk_len = struct.unpack_from("<IHHIIQQ", buf)
        if magic != MAGIC:
            return frames, None
        end = HEADER + body_len + bulk_len
        if len(buf) < end:
            break
        frames.append((ftype, seq, flags, buf[:HEADER], buf[HEADER:HEADER + body_len],
                       buf[HEADER + body_len:end]))
        buf = buf[end:]
    return frames, buf


class Splitter:
    """Cuts a byte stream into frames: (type, seq, header, body, bulk). The
    messages of rgpu's wire are undone: a MSG_BATCH gives the frames inside
    it, MSG_FRAGMENT pieces the frame they make up."""

    def __init__(self):
        self.buf = b""
        self.pieces = b""

    def feed(self, data):
        self.buf += data
        messages, rest = split(self.buf)
        self.buf = rest if rest is not None else b""   # not rgpu: stop recording this direction
        frames = []
        for ftype, seq, flags, head, body, bulk in messages:
            if ftype == MSG_BATCH:
                inner, _ = split(bulk)
                frames += [(t, s, h, b, k) for t, s, _f, h, b, k in inner]
            elif ftype == MSG_FRAGMENT:
                self.pieces += bulk
                if flags & F_LAST:
                    inner, _ = split(self.pieces)
                    frames += [(t, s, h, b, k) for t, s, _f, h, b, k in inner[:1]]
                    self.pieces = b""
            else:
                frames.append((ftype, seq, head, body, bulk))
        return frames


class Session:
    def __init__(self, corpus, table):
        self.max_frames = server_limit("RGPU_FUZZ_MAX_FRAMES")
        self.max_bulk = server_limit("RGPU_FUZZ_MAX_BULK")
        self.corpus = corpus
        self.index = {t: i for i, t in enumerate(table)}
        self.records = []
        self.lock = threading.Lock()

    def client_frames(self, frames):
        for ftype, _seq, head, body, bulk in frames:
            if len(body) <= MAX_SEED_BODY:
                save(os.path.join(self.corpus, "fuzz_frame"), head + body)
            if ftype in (1, 7) or ftype not in self.index:  # the harness sends its own Hello, Goodbye
                continue
            with self.lock:
                if len(self.records) < self.max_frames:
                    bulk = bulk[:self.max_bulk]
                    self.records.append(struct.pack("<BH", self.index[ftype], len(body)) + body +
                                        struct.pack("<H", len(bulk)) + bulk)

    def server_frames(self, frames):
        for ftype, _seq, head, body, _bulk in frames:
            if len(body) <= MAX_SEED_BODY:
                save(os.path.join(self.corpus, "fuzz_frame"), head + body)
            if ftype == 2:
                save(os.path.join(self.corpus, "fuzz_hello"), b"\x00" + body)

    def close(self):
        with self.lock:
            if self.records:
                save(os.path.join(self.corpus, "fuzz_server"), b"".join(self.records))


def pump(src, dst, on_frames):
    splitter = Splitter()
    try:
        while True:
            data = src.recv(1 << 16)
            if not data:
                break
            dst.sendall(data)
            on_frames(splitter.feed(data))
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(client, server_addr, corpus, table):
    host, port = server_addr.rsplit(":", 1)
    upstream = socket.create_connection((host, int(port)))
    session = Session(corpus, table)
    up = threading.Thread(target=pump, args=(client, upstream, session.client_frames))
    down = threading.Thread(target=pump, args=(upstream, client, session.server_frames))
    up.start()
    down.start()
    up.join()
    down.join()
    session.close()
    client.close()
    upstream.close()


def main():
    port_file, server_addr, corpus = sys.argv[1:4]
    table = server_table()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    with open(port_file + ".tmp", "w") as f:
        f.write("127.0.0.1:%d\n" % listener.getsockname()[1])
    os.rename(port_file + ".tmp", port_file)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, server_addr, corpus, table), daemon=True).start()


if __name__ == "__main__":
    main()
