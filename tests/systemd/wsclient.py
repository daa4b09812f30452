#!/usr/bin/env python3
"""A minimal cojson sync client for the nspawn test (standard library only).

Writes a real CoValue through maia-sync and reads it back, using the signed
session of tests/data/vectors/session-trusting.json (an unsafeAllowAll CoMap
with 3 trusting transactions, so it needs no account or group first):

  wsclient.py VECTOR write FROM TO  send transactions FROM..TO-1 (the server
                                    has FROM already) and wait until it
                                    acknowledges TO with a `known` reply
  wsclient.py VECTOR expect N       `load` the CoValue on a new connection
                                    and wait until N transactions of the
                                    session came back in `content` replies

Talks to 127.0.0.1:4203 (MAIA_PORT=N for another port). Exit status 0 on
success, 1 with a message on stderr otherwise.
"""

import base64
import json
import os
import socket
import struct
import sys
import time

HOST, PATH = "127.0.0.1", "/sync"
PORT = int(os.environ.get("MAIA_PORT", "4203"))
TIMEOUT = 15.0


class WebSocket:
    def __init__(self):
        self.sock = socket.create_connection((HOST, PORT), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {PATH} HTTP/1.1\r\nHost: {HOST}:{PORT}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError(f"connection closed during the handshake: {head!r}")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise RuntimeError(f"no WebSocket upgrade: {status.decode(errors='replace')}")

    def send(self, text):
        payload = text.encode()
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed by the server")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def messages(self, deadline):
        """Yields every sync message the server sends until the deadline."""
        text = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                b0, b1 = self._read(2)
            except socket.timeout:
                return
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            payload = self._read(n)
            opcode = b0 & 0x0F
            if opcode == 8:
                raise RuntimeError(f"server closed the connection: {payload!r}")
            if opcode in (1, 0):
                text += payload
                if b0 & 0x80:
                    for line in text.decode().split("\n"):
                        if line.strip():
                            yield json.loads(line)
                    text = b""

    def close(self):
        try:
            self.sock.sendall(struct.pack("!BB", 0x88, 0x80) + b"\0\0\0\0")
        finally:
            self.sock.close()


def main():
    args = sys.argv[1:]
    if not (len(args) == 4 and args[1] == "write" or len(args) == 3 and args[1] == "expect"):
        sys.exit(__doc__)
    with open(args[0]) as f:
        vector = json.load(f)
    mode, want = args[1], int(args[-1])
    have = int(args[2]) if mode == "write" else 0
    msg = vector["contentMessage"]
    cid = msg["id"]
    (session,) = msg["new"].keys()
    txs = vector["transactions"]
    ws = WebSocket()
    deadline = time.monotonic() + TIMEOUT
    if mode == "write":
        content = {
            "action": "content",
            "id": cid,
            "header": msg["header"] if have == 0 else None,
            "priority": msg["priority"],
            "new": {
                session: {
                    "after": have,
                    "newTransactions": [t["transaction"] for t in txs[have:want]],
                    "lastSignature": txs[want - 1]["signatureAfter"],
                }
            },
        }
        if content["header"] is None:
            del content["header"]
        ws.send(json.dumps(content))
        for m in ws.messages(deadline):
            if m.get("action") == "known" and m.get("id") == cid:
                acked = m.get("sessions", {}).get(session, 0)
                if acked == want:
                    print(f"acknowledged: {cid} has {acked} transactions")
                    ws.close()
                    return
            if m.get("action") == "known" and m.get("isCorrection"):
                raise SystemExit(f"rejected, correction: {m}")
        raise SystemExit(f"no acknowledgement of {want} transactions of {cid}")
    else:
        ws.send(json.dumps({"action": "load", "id": cid, "header": False, "sessions": {}}))
        got = 0
        for m in ws.messages(deadline):
            if m.get("action") == "content" and m.get("id") == cid:
                s = m["new"].get(session)
                if s:
                    got = max(got, s["after"] + len(s["newTransactions"]))
                if got >= want:
                    break
            if m.get("action") == "known" and m.get("id") == cid and not m.get("header"):
                raise SystemExit(f"the server does not have {cid}: {m}")
        if got != want:
            raise SystemExit(f"loaded {got} transactions of {cid}, expected {want}")
        print(f"loaded: {cid} has {got} transactions")
        ws.close()


if __name__ == "__main__":
    try:
        main()
    except (OSError, RuntimeError, ValueError) as e:
        sys.exit(f"wsclient: {e}")
