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
  opendir: { parameters: ["buffer"], result: "pointer" },
  readdir: { parameters: ["pointer"], result: "pointer" },
  closedir: { parameters: ["pointer"], result: "i32" },
} as const;

/** Offset of `d_name` in glibc's `struct dirent` on 64-bit Linux (ino, off: 8 each; reclen; type). */
const D_NAME_OFFSET = 19;

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

/**
 * This process's open descriptors, from /proc/self/fd read through libc: Deno refuses to list
 * that directory to anything short of `--allow-all`, and guessing a range of numbers would not
 * know where to stop.
 */
function openFds(c: Libc): number[] {
  const dir = c.opendir(new TextEncoder().encode("/proc/self/fd\0"));
  if (dir === null) throw new Error("cannot list /proc/self/fd");
  const fds: number[] = [];
  try {
    for (let e = c.readdir(dir); e !== null; e = c.readdir(dir)) {
      const name = new Deno.UnsafePointerView(e).getCString(D_NAME_OFFSET);
      if (/^\d+$/.test(name)) fds.push(Number(name));
    }
  } finally {
    c.closedir(dir);
  }
  return fds;
}

/** Descriptors of this process listening on TCP `port` (one per address family bound). */
function listeningFds(c: Libc, port: number): number[] {
  return openFds(c).filter((fd) =>
    localPort(c, fd) === port && intOption(c, fd, SOL_SOCKET, SO_ACCEPTCONN) === 1
  );
}

/**
 * Sets `TCP_NODELAY` on the socket(s) listening on `port`, so every connection accepted from now
 * on has it. Returns null when done, or why it could not be (the caller logs it once).
 */
export function setListenerNoDelay(port: number): string | null {
  if (Deno.build.os !== "linux") return `not on Linux (${Deno.build.os})`;
  // Asked first so that a terminal without the permission is never prompted for it.
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return "no --allow-ffi";
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
