// The embedded web app is current and small: src/web/assets.gen.ts is exactly what
// `deno task web:build` makes from src/web/app/, and the whole app stays under its budget.
import { assert, assertEquals } from "../harness/assert.ts";
import { buildWebAssets, GENERATED } from "../../tools/web_build.ts";

/** The whole app, compressed, at most this (issue 16). */
const BUDGET_BYTES = 100 * 1024;

Deno.test("web app: src/web/assets.gen.ts is up to date with src/web/app/ (run `deno task web:build`)", async () => {
  const { module, files } = await buildWebAssets();
  const committed = await Deno.readTextFile(GENERATED);
  assert(committed === module, "src/web/assets.gen.ts is stale: run `deno task web:build`");
  const total = files.reduce((n, f) => n + f.gzipBytes, 0);
  assert(total <= BUDGET_BYTES, `the app is ${total} bytes compressed, over ${BUDGET_BYTES}`);
  assertEquals(files.map((f) => f.path.replace(/-[0-9a-f]{16}/, "")), [
    "/",
    "/assets/app.js",
    "/assets/app.css",
  ]);
});
