# An irctest server controller for our `chat serve`: a fresh server (own temp data dir, SQLite,
# plain-TCP IRC on loopback) for every test, behind tools/irc_pass_proxy.ts, which sends PASS
# for the suite's credential-less clients. How to run it: docs/IRC.md, "Conformance (irctest)".
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from irctest.basecontrollers import BaseServerController, NotImplementedByController

REPO = Path(__file__).resolve().parents[2]
DENO = str(REPO / "node_modules" / ".bin" / "deno")
PASSWORD = "irctest-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChatServerController(BaseServerController):
    software_name = "chat"
    supported_sasl_mechanisms = {"PLAIN"}
    supports_sts = False

    def run(self, hostname, port, *, password, ssl, run_services, faketime,
            websocket_hostname, websocket_port):
        if ssl or websocket_port is not None:
            raise NotImplementedByController("TLS or WebSocket in this controller")
        self.port = port
        self.directory = Path(tempfile.mkdtemp(prefix="irctest-chat-"))
        os.chmod(self.directory, 0o700)
        self.irc_port = free_port()
        (self.directory / "config.json").write_text(json.dumps({
            # The first listener is the chat port; `host` and `port` say where it is.
            "host": "127.0.0.1",
            "port": free_port(),
            "listeners": [
                {"alpn": {"chat/1": "chat/1"}},
                {"host": "127.0.0.1", "port": self.irc_port, "alpn": {"": "irc"}, "tls": False},
            ],
            "registration": "open",
            "ircServerName": "My.Little.Server",  # the name the suite expects
            "dbSynchronous": "NORMAL",
            # The suite logs in and creates rooms far faster than people do.
            "limits": {
                "registrationsPerAddress": 100000, "registrationRefillMs": 1,
                "roomCreateBurst": 100000, "roomCreateRefillMs": 1,
                "loginFailuresPerAddress": 100000, "loginFailureRefillMsPerAddress": 1,
                "maxConnectionsPerAddress": 1000,
                "messagesPerSecond": 1000, "messageBurst": 1000,
            },
        }))
        log = open(self.directory / "server.log", "w")
        self.proc = subprocess.Popen(
            [DENO, "run", "-A", str(REPO / "main.ts"), "serve", "--data", str(self.directory)],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        self.proxy = subprocess.Popen(
            [DENO, "run", "-A", str(REPO / "tools" / "irc_pass_proxy.ts"), str(port),
             str(self.irc_port), PASSWORD],
            stdout=subprocess.DEVNULL, stderr=log, cwd=REPO, start_new_session=True)

    def wait_for_port(self):
        # The relay accepts before the server listens: wait for the server itself first.
        for target in (self.irc_port, self.port):
            while True:
                self.check_is_alive()
                try:
                    socket.create_connection(("127.0.0.1", target), timeout=1.0).close()
                    break
                except ConnectionRefusedError:
                    time.sleep(0.05)
        self.port_open = True

    def wait_for_services(self):
        pass  # accounts are built in: there are no services to wait for

    def registerUser(self, case, username, password=None):
        # An account made the way the suite's clients will log in: PASS with open registration.
        if password is None or len(password.encode()) < 8:
            # Our minimum is 8 bytes (docs/PROTOCOL.md); the suite's "sesame" is refused.
            raise NotImplementedByController("account passwords under 8 bytes")
        self.wait_for_port()
        with socket.create_connection(("127.0.0.1", self.irc_port), timeout=30) as c:
            c.sendall(f"PASS {password}\r\nNICK {username}\r\nUSER u 0 * :u\r\n".encode())
            got = b""
            while b" 001 " not in got and b" 464 " not in got:
                data = c.recv(4096)
                if not data:
                    break
                got += data
            c.sendall(b"QUIT\r\n")
        if b" 001 " not in got:
            raise RuntimeError(f"could not register {username}: {got!r}")

    def kill_proc(self):
        # node_modules/.bin/deno is a launcher that runs the real deno as its child: signal the
        # whole process group (each was started in a session of its own), not the launcher alone.
        for p in (self.proxy, self.proc):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            except ProcessLookupError:
                pass

    def kill(self):
        super().kill()
        if getattr(self, "directory", None):
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


def get_irctest_controller_class():
    return ChatServerController
