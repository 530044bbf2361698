// Owns turning Nagle's algorithm off for `Deno.listenTls` listeners, which offer no setNoDelay.

/**
 * Why: with Nagle on, a small write that follows an unacknowledged one waits for the peer's
 * delayed ACK (up to 40 ms on Linux), so at moderate load acks and deliveries arrived ~40 ms late
 * (docs/PERFORMANCE.md). A `Deno.TlsConn` has no `setNoDelay`, but Linux copies a listening
 * socket's options, `TCP_NODELAY` included, to every socket `accept(2)` returns. So the option is
 * set once, with `setsockopt(2)` through FFI, on the listening socket: the descriptor is the one
 * in /proc/self/fd that is listening (`SO_ACCEPTCONN`) on the bound port. Other systems, a libc
 * that will not load, or a process without `--allow-ffi` keep Nagle on and get a reason to log.
 */

const SOL_SOCKET = 1;
const SO_ACCEPTCONN = 30;
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const AF_INET = 2;
const AF_INET6 = 10;

const symbols = {
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
} as const;

type Libc = Deno.DynamicLibrary<typeof symbols>["symbols"];

let libc: Libc | null = null;

function openLibc(): Libc {
  // Opened once and kept for the life of the process (a listener may be bound again later).
  libc ??= Deno.dlopen("libc.so.6", symbols).symbols;
  return libc;
}

function intOption(c: Libc, fd: number, level: number, name: number): number | null {
  const value = new Int32Array(1);
  const len = new Uint32Array([4]);
  const r = c.getsockopt(
    fd,
    level,
    name,
    new Uint8Array(value.buffer),
    new Uint8Array(len.buffer),
  );
  return r === 0 ? value[0] : null;
}

/** The local port of an IPv4/IPv6 socket, or null for anything else (files, pipes, unix). */
function localPort(c: Libc, fd: number): number | null {
  const addr = new Uint8Array(128);
  const len = new Uint32Array([addr.length]);
  if (c.getsockname(fd, addr, new Uint8Array(len.buffer)) !== 0) return null;
  const family = addr[0] | (addr[1] << 8);
  if (family !== AF_INET && family !== AF_INET6) return null;
  return (addr[2] << 8) | addr[3]; // sin_port / sin6_port, network byte order
}

/** Descriptors of this process listening on TCP `port` (one per address family bound). */
function listeningFds(c: Libc, port: number): number[] {
  const fds: number[] = [];
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    const fd = Number(entry.name);
    if (!Number.isInteger(fd) || localPort(c, fd) !== port) continue;
    if (intOption(c, fd, SOL_SOCKET, SO_ACCEPTCONN) === 1) fds.push(fd);
  }
  return fds;
}

/**
 * Sets `TCP_NODELAY` on the socket(s) listening on `port`, so every connection accepted from now
 * on has it. Returns null when done, or why it could not be (the caller logs it once).
 */
export function setListenerNoDelay(port: number): string | null {
  if (Deno.build.os !== "linux") return `not on Linux (${Deno.build.os})`;
  try {
    const c = openLibc();
    const fds = listeningFds(c, port);
    if (fds.length === 0) return `no listening socket found for port ${port}`;
    const on = new Uint8Array(new Int32Array([1]).buffer);
    for (const fd of fds) {
      if (c.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, on, 4) !== 0) {
        return `setsockopt(TCP_NODELAY) failed on descriptor ${fd}`;
      }
    }
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}
