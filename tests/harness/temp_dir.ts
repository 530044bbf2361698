// Owns throwaway directories for tests: made under the system temp dir, removed by `await using`.

/** A temp directory; `await using` removes it with everything in it. */
export interface TempDir extends AsyncDisposable {
  readonly path: string;
}

/**
 * Makes a fresh directory named `<prefix><random>` under the system temp dir. Disposal removes it
 * recursively; a directory already gone is fine, any other failure to remove it fails the test.
 */
export async function tempDir(prefix = "chat-test-"): Promise<TempDir> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      try {
        await Deno.remove(path, { recursive: true });
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
    },
  };
}
