// Owns the test assertions: std-style names over node:assert (JSR's @std/assert is unreachable here).
import nodeAssert from "node:assert";

/** Fails unless `cond` is truthy. */
export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  nodeAssert.ok(cond, msg);
}

/** Deep, strict equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, msg);
}

export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.notDeepStrictEqual(actual, expected, msg);
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
    if (cls && !(err instanceof cls)) throw new Error(`expected ${cls.name}, got ${err}`);
    if (includes && !String((err as Error).message).includes(includes)) {
      throw new Error(
        `expected message to include ${JSON.stringify(includes)}, got ${(err as Error).message}`,
      );
    }
    return err as E;
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
    if (cls && !(err instanceof cls)) throw new Error(`expected ${cls.name}, got ${err}`);
    if (includes && !String((err as Error).message).includes(includes)) {
      throw new Error(
        `expected message to include ${JSON.stringify(includes)}, got ${(err as Error).message}`,
      );
    }
    return err as E;
  }
  throw new Error("expected the promise to reject");
}
