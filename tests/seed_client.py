#!/usr/bin/env python3
"""A seed-protocol chat client for tests: Python stdlib `ssl`, no ALPN, not the project's code.

It verifies the server certificate against --cafile (host name checked too), then pipes:

  stdout  "CONNECTED <tls version> alpn=<protocol or none>" once, then "RECV <line>" for every
          line from the server, "AUTH_RESULT <word>" after an AUTH command, and "EOF" when the
          server closes. Errors go to stderr with exit status 1.
  stdin   one command per line:
            SEND <text>              send <text> and a newline
            HASH <password>          send the SHA-256 hex digest of <password>, as seed clients do
            AUTH <LOGIN|REGISTER> <user> <password>
                                     walk the seed login dialogue (the password sent hashed)
            LONG <n>                 send a line of <n> 'x' characters
            BYTES <hex>              send raw bytes (a newline is not added)
            CLOSE                    close the connection and exit
          End of stdin closes the connection too.
"""

import argparse
import collections
import hashlib
import os
import select
import socket
import ssl
import sys


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Client:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False
        # Lines received but not yet looked at by an AUTH dialogue (the main loop may read the
        # server's first AUTH_REQUIRED before the AUTH command arrives on stdin).
        self.inbox = collections.deque(maxlen=1000)

    def send(self, data):
        self.sock.sendall(data)

    def send_line(self, text):
        self.send(text.encode("utf-8") + b"\n")

    def read_some(self):
        """Reads what the socket has; returns the complete lines received."""
        try:
            data = self.sock.recv(65536)
        except (ConnectionError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.eof = True
            return []
        self.buf += data
        lines = []
        while b"\n" in self.buf:
            raw, self.buf = self.buf.split(b"\n", 1)
            text = raw.decode("utf-8", errors="replace").rstrip("\r")
            out("RECV " + text)
            lines.append(text)
            self.inbox.append(text)
        return lines

    def wait_for(self, words):
        """Takes lines until one in `words` arrives; returns it, or None on EOF."""
        while True:
            while self.inbox:
                line = self.inbox.popleft()
                if line in words:
                    return line
            if self.eof:
                return None
            self.read_some()

    def auth(self, mode, user, password):
        if self.wait_for({"AUTH_REQUIRED"}) is None:
            return "EOF"
        self.send_line(mode)
        if self.wait_for({"ENTER_USERNAME", "AUTH_FAILED"}) != "ENTER_USERNAME":
            return "AUTH_FAILED"
        self.send_line(user)
        if self.wait_for({"ENTER_PASSWORD"}) is None:
            return "EOF"
        self.send_line(hashlib.sha256(password.encode("utf-8")).hexdigest())
        return self.wait_for({"AUTH_SUCCESS", "AUTH_FAILED"}) or "EOF"


def run_command(client, line):
    """Runs one stdin command; returns False to stop."""
    cmd, _, arg = line.partition(" ")
    if cmd == "SEND":
        client.send_line(arg)
    elif cmd == "HASH":
        client.send_line(hashlib.sha256(arg.encode("utf-8")).hexdigest())
    elif cmd == "AUTH":
        mode, user, password = arg.split(" ", 2)
        out("AUTH_RESULT " + client.auth(mode, user, password))
    elif cmd == "LONG":
        client.send(b"x" * int(arg) + b"\n")
    elif cmd == "BYTES":
        client.send(bytes.fromhex(arg))
    elif cmd == "CLOSE":
        return False
    else:
        raise ValueError("unknown command: " + cmd)
    return True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    args = p.parse_args()

    ctx = ssl.create_default_context(cafile=args.cafile)
    raw = socket.create_connection((args.host, args.port), timeout=30)
    sock = ctx.wrap_socket(raw, server_hostname=args.host)
    sock.settimeout(None)
    out("CONNECTED %s alpn=%s" % (sock.version(), sock.selected_alpn_protocol() or "none"))
    client = Client(sock)

    stdin = sys.stdin.buffer.raw if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
    pending = b""
    running = True
    # One thread only: an SSL socket must not be read and written from two threads at once.
    while running and not client.eof:
        if sock.pending() > 0:
            client.read_some()
            continue
        readable, _, _ = select.select([sock, stdin], [], [], 60)
        if sock in readable:
            client.read_some()
        if stdin in readable:
            chunk = os.read(stdin.fileno(), 65536)
            if not chunk:
                break
            pending += chunk
            while running and b"\n" in pending:
                raw_cmd, pending = pending.split(b"\n", 1)
                running = run_command(client, raw_cmd.decode("utf-8"))
    if client.eof:
        out("EOF")
    try:
        sock.close()
    except OSError:
        pass


if __name__ == "__main__":
    try:
        main()
    except Exception as err:  # noqa: BLE001 - report anything and fail
        sys.stderr.write("seed_client: %s: %s\n" % (type(err).__name__, err))
        sys.exit(1)
