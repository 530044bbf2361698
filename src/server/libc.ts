// Owns the server's few calls into the C library (FFI), opened once, for what Deno has no API for.

/**
 * Used for `TCP_NODELAY` on `Deno.listenTls` listeners (tcp_nodelay.ts) and for giving freed C
 * heap back after a login storm (`malloc_trim`, heap_collector.ts). glibc on Linux only; every
 * caller has a fallback, so `libc()` returns why it is unavailable instead of throwing.
 */
const symbols = {
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  opendir: { parameters: ["buffer"], result: "pointer" },
  readdir: { parameters: ["pointer"], result: "pointer" },
  closedir: { parameters: ["pointer"], result: "i32" },
  malloc_trim: { parameters: ["usize"], result: "i32" },
} as const;

export type Libc = Deno.DynamicLibrary<typeof symbols>["symbols"];

let opened: Libc | string | undefined;

/** The C library's functions, or the reason they cannot be had (not Linux, no --allow-ffi, …). */
export function libc(): Libc | string {
  opened ??= open();
  return opened;
}

function open(): Libc | string {
  if (Deno.build.os !== "linux") return `not on Linux (${Deno.build.os})`;
  // Asked first so that a terminal without the permission is never prompted for it.
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return "no --allow-ffi";
  try {
    // Kept open for the life of the process (a listener may be bound again later).
    return Deno.dlopen("libc.so.6", symbols).symbols;
  } catch (err) {
    return (err as Error).message;
  }
}
