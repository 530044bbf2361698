#!/usr/bin/env python3
"""A peer that ends its connection with a TCP reset (RST), for the fault suite.

Not the project's code: Python stdlib `socket` and `ssl`, so the reset is a real one (SO_LINGER 0).

  reset_peer.py PORT CAFILE MODE STEP...

  MODE   chat/1   TLS with ALPN chat/1
         none     TLS without ALPN (the seed protocol)
         raw      plain TCP, no TLS
  STEP   send:TEXT   send TEXT (\\n in TEXT is a newline)
         hex:HEX     send raw bytes
         wait:TEXT   read until TEXT was received (10 s at most, else exit 1)
         sleep:MS    pause

After the last step the socket is closed with a reset. Prints "RESET" on success.
"""

import socket
import ssl
import struct
import sys
import time


def main():
    port, cafile, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = raw
    if mode != "raw":
        ctx = ssl.create_default_context(cafile=cafile)
        if mode == "chat/1":
            ctx.set_alpn_protocols(["chat/1"])
        sock = ctx.wrap_socket(raw, server_hostname="localhost")
    received = b""
    for step in sys.argv[4:]:
        kind, _, arg = step.partition(":")
        if kind == "send":
            sock.sendall(arg.replace("\\n", "\n").encode("utf-8"))
        elif kind == "hex":
            sock.sendall(bytes.fromhex(arg))
        elif kind == "wait":
            deadline = time.time() + 10
            while arg.encode("utf-8") not in received:
                if time.time() > deadline:
                    sys.stderr.write("timed out waiting for %r; got %r\n" % (arg, received))
                    sys.exit(1)
                data = sock.recv(65536)
                if not data:
                    sys.stderr.write("closed while waiting for %r\n" % arg)
                    sys.exit(1)
                received += data
        elif kind == "sleep":
            time.sleep(int(arg) / 1000)
        else:
            sys.stderr.write("unknown step %r\n" % step)
            sys.exit(2)
    # wrap_socket took over the descriptor of `raw`: set the option on the wrapper.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    print("RESET", flush=True)


if __name__ == "__main__":
    main()
