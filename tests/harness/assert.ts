// Owns the test assertions: std-style names over node:assert (JSR's @std/assert is unreachable here).
import nodeAssert from "node:assert";
import { inspect, isDeepStrictEqual } from "node:util";

/** Fails unless `cond` is truthy. */
export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  nodeAssert.ok(cond, msg);
}

/**
 * How a value is shown in a failure: bounded, because node:assert's own diff inspects both values
 * whole and diffs the text, which for a large object graph (a Playwright ElementHandle holds its
 * whole connection) grew the test process to 13 GB before the failure could be reported.
 */
function shown(v: unknown): string {
  return inspect(v, {
    depth: 4,
    maxArrayLength: 50,
    maxStringLength: 2_000,
    breakLength: 100,
    sorted: true,
  });
}

/** The failure of a comparison: the caller's words first, then both values, bounded. */
function notEqual(op: string, actual: unknown, expected: unknown, msg?: string): never {
  const head = msg ? `${msg}\n\n` : "";
  const a = shown(actual);
  const e = shown(expected);
  const body = !a.includes("\n") && !e.includes("\n") && a.length + e.length < 200
    ? `${a} ${op} ${e}`
    : `actual:\n${a}\n\nexpected${op === "!==" ? "" : " to differ from"}:\n${e}`;
  throw new nodeAssert.AssertionError({ message: head + body });
}

/** Deep, strict equality (node's `isDeepStrictEqual`). */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  if (!isDeepStrictEqual(actual, expected)) notEqual("!==", actual, expected, msg);
}

export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  if (isDeepStrictEqual(actual, expected)) notEqual("===", actual, expected, msg);
}

export function assertMatch(actual: string, re: RegExp, msg?: string): void {
  nodeAssert.match(actual, re, msg);
}

/** Runs `fn`, expects it to throw an instance of `cls` whose message includes `includes`. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  cls?: new (...args: never[]) => E,
  includes?: string,
): E {
  try {
    fn();
  } catch (err) {
    return checkThrown(err, cls, includes);
  }
  throw new Error("expected the function to throw");
}

/** Async version of assertThrows. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  cls?: new (...args: never[]) => E,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (err) {
    return checkThrown(err, cls, includes);
  }
  throw new Error("expected the promise to reject");
}

/** Checks what assertThrows/assertRejects caught: its class and message. */
function checkThrown<E extends Error>(
  err: unknown,
  cls: (new (...args: never[]) => E) | undefined,
  includes: string | undefined,
): E {
  if (cls && !(err instanceof cls)) throw new Error(`expected ${cls.name}, got ${err}`);
  const message = String((err as Error).message);
  if (includes && !message.includes(includes)) {
    throw new Error(`expected message to include ${JSON.stringify(includes)}, got ${message}`);
  }
  return err as E;
}

/** Fails with `msg` unless `p` settles within `timeoutMs` (the deadline of every `expectClosed`). */
export async function assertSettlesWithin(
  p: Promise<unknown>,
  timeoutMs: number,
  msg: string,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      p,
      new Promise((_, reject) => timer = setTimeout(() => reject(new Error(msg)), timeoutMs)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
