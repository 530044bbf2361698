// Fault suite, fuzzing: property tests of the pure codecs (fast-check), and seeded random
// mutations of valid transcripts replayed against a live server's session state machine.
// Bounded for CI; FUZZ_SEED and FUZZ_RUNS widen a run by hand. Every crash found becomes a named
// regression test at the end of this file.
import fc from "fast-check";
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer, type TestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { ChatError } from "../../src/errors.ts";
import { concatBytes } from "../../src/protocol/concat_bytes.ts";
import { LineSplitter } from "../../src/protocol/line_decoder.ts";
import {
  CLIENT_FRAME_FIELDS,
  decodeClientFrame,
  encodeClientFrame,
} from "../../src/protocol/native_codec.ts";
import type { ClientFrame } from "../../src/protocol/frames.ts";
import {
  decodeSeedText,
  formatSeedLine,
  parseAuthChoice,
  parseSeedLine,
  type SeedServerLine,
} from "../../src/protocol/seed_codec.ts";
import { checkBody, checkRoomName, checkUserName } from "../../src/protocol/text_rules.ts";
import { isType, waitFor } from "./helpers.ts";
import { prng } from "../harness/prng.ts";

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? 20261127);
const RUNS = Number(Deno.env.get("FUZZ_RUNS") ?? 300);
const enc = new TextEncoder();

const LF = Uint8Array.of(0x0a);

/** The lines, each followed by LF, in one buffer. */
function asLines(lines: Uint8Array[]): Uint8Array {
  return concatBytes(lines.flatMap((l) => [l, LF]));
}

const DECODE_CODES = new Set(["invalid_utf8", "bad_frame", "unknown_type"]);

/** Everything that may come out of decodeClientFrame: a known frame or one of three errors. */
function decodeOutcome(bytes: Uint8Array): string {
  try {
    const f = decodeClientFrame(bytes);
    assert(Object.hasOwn(CLIENT_FRAME_FIELDS, f.type), `decoded unknown type ${f.type}`);
    return `frame:${f.type}`;
  } catch (err) {
    assert(err instanceof ChatError, `decodeClientFrame threw ${err}`);
    assert(DECODE_CODES.has(err.code), `unexpected code ${err.code}`);
    assert(!err.fatal, "the codec decides nothing about fatality");
    return `error:${err.code}`;
  }
}

Deno.test("fuzz: LineSplitter gives the same lines for every chunking and never holds more than the cap", () => {
  const max = 64;
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 400 }),
      fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 40 }),
      (bytes, cuts) => {
        const run = (chunks: Uint8Array[]) => {
          const s = new LineSplitter(max);
          const out: string[] = [];
          try {
            for (const c of chunks) {
              for (const l of s.push(c)) out.push(Array.from(l).join(","));
              assert(s.pendingBytes <= max + 1, `held ${s.pendingBytes}`);
            }
          } catch (err) {
            assert(err instanceof ChatError && err.code === "line_too_long", String(err));
            out.push("too long");
          }
          return out;
        };
        const whole = run([bytes]);
        const chunks: Uint8Array[] = [];
        let off = 0;
        for (let i = 0; off < bytes.length; i++) {
          const n = cuts[i % cuts.length];
          chunks.push(bytes.slice(off, off + n));
          off += n;
        }
        assertEquals(run(chunks), whole);
        for (const l of whole) {
          if (l !== "too long") assert(l.split(",").length <= max && !l.split(",").includes("10"));
        }
      },
    ),
    { seed: SEED, numRuns: RUNS },
  );
});

Deno.test("fuzz: decodeClientFrame on arbitrary bytes returns a known frame or one of three errors", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => void decodeOutcome(bytes)),
    { seed: SEED, numRuns: RUNS * 3 },
  );
  fc.assert(
    fc.property(fc.json({ maxDepth: 3 }), (text) => void decodeOutcome(enc.encode(text))),
    { seed: SEED, numRuns: RUNS * 3 },
  );
});

/** Arbitrary frames of every client type, with awkward strings in every string field. */
const awkward = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 20 }),
  fc.string({ unit: "binary", maxLength: 20 }),
  fc.constantFrom(
    "",
    " ",
    "\u0000",
    "\u202e",
    "\ud800",
    "\n",
    '"',
    "\\",
    "__proto__",
    "constructor",
  ),
);
const frameArb: fc.Arbitrary<ClientFrame> = fc.constantFrom(
  ...Object.keys(CLIENT_FRAME_FIELDS) as ClientFrame["type"][],
).chain((type) => {
  const fields: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [name, spec] of Object.entries(CLIENT_FRAME_FIELDS[type])) {
    const arb: fc.Arbitrary<unknown> = spec.kind === "string"
      ? awkward
      : spec.kind === "int"
      ? fc.maxSafeInteger()
      : spec.kind === "bool"
      ? fc.boolean()
      : fc.record({
        rooms: fc.dictionary(fc.string({ maxLength: 8 }), fc.nat(), { maxKeys: 5 }),
        dm: fc.nat(),
      });
    fields[name] = spec.required ? arb : fc.option(arb, { nil: undefined });
  }
  return fc.record({
    ...fields,
    ref: fc.option(fc.string({ minLength: 1, maxLength: 64 }), { nil: undefined }),
  })
    .map((r) => {
      const out: Record<string, unknown> = { type };
      for (const [k, v] of Object.entries(r)) if (v !== undefined) out[k] = v;
      return out as unknown as ClientFrame;
    });
});

Deno.test("fuzz: every well-typed client frame survives encode then decode unchanged", () => {
  fc.assert(
    fc.property(frameArb, (frame) => {
      const bytes = encodeClientFrame(frame);
      assertEquals(bytes.at(-1), 0x0a);
      assert(!bytes.subarray(0, -1).includes(0x0a), "a frame spans two lines");
      const back = decodeClientFrame(bytes.subarray(0, -1));
      assertEquals(back, JSON.parse(JSON.stringify(frame)));
    }),
    { seed: SEED, numRuns: RUNS },
  );
});

const userName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{1,31}$/);
const roomName = fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,31}$/);
const body = fc.string({ unit: "grapheme", minLength: 1, maxLength: 60 }).filter((b) => {
  try {
    checkBody(b, { maxBodyBytes: 4000 });
    return true;
  } catch {
    return false;
  }
});

Deno.test("fuzz: text rules accept exactly one-line, well-formed, visible bodies; names are ASCII", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 80 }), (s) => {
      let ok = true;
      try {
        checkBody(s, { maxBodyBytes: 4000 });
      } catch (err) {
        assert(err instanceof ChatError && ["invalid_text", "too_large"].includes(err.code));
        ok = false;
      }
      if (ok) {
        assert(s.isWellFormed() && s.trim() !== "");
        // deno-lint-ignore no-control-regex
        assert(!/[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/.test(s), s);
      }
      for (const check of [checkUserName, checkRoomName]) {
        try {
          const name = check(s);
          assert(/^[a-zA-Z0-9_-]+$/.test(name), `non-ASCII name ${name}`);
        } catch (err) {
          assert(err instanceof ChatError, String(err));
        }
      }
    }),
    { seed: SEED, numRuns: RUNS * 3 },
  );
});

Deno.test("fuzz: seed lines round-trip and a body can never forge a second line or a notice", () => {
  const lineArb: fc.Arbitrary<SeedServerLine> = fc.oneof(
    fc.record({ kind: fc.constant("chat" as const), from: userName, body }),
    fc.record({ kind: fc.constant("room" as const), room: roomName, from: userName, body }),
    fc.record({ kind: fc.constant("dm" as const), from: userName, to: userName, body }),
    fc.record({
      kind: fc.constant("users" as const),
      users: fc.array(userName, { minLength: 1, maxLength: 5 }),
    }),
    fc.record({ kind: fc.constant("joined" as const), user: userName }),
    fc.record({ kind: fc.constant("left" as const), user: userName }),
  );
  fc.assert(
    fc.property(lineArb, (l) => {
      const text = formatSeedLine(l);
      assert(!/[\r\n]/.test(text), "a line break in a seed line");
      assertEquals({ ...parseSeedLine(text) }, { ...l });
    }),
    { seed: SEED, numRuns: RUNS },
  );
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 60 }), (s) => {
      try {
        parseSeedLine(s);
      } catch (err) {
        assert(err instanceof ChatError && err.code === "bad_frame", String(err));
      }
      const choice = parseAuthChoice(s);
      assert(choice === null || s.trim().toUpperCase() === choice.toUpperCase());
    }),
    { seed: SEED, numRuns: RUNS },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (b) => {
      try {
        decodeSeedText(b);
      } catch (err) {
        assert(err instanceof ChatError && err.code === "invalid_utf8", String(err));
      }
    }),
    { seed: SEED, numRuns: RUNS },
  );
});

// ---- seeded mutation of transcripts against a live server ----

const WEIRD_VALUES = [
  "null",
  "true",
  "-1",
  "0",
  "1e309",
  "9007199254740993",
  "[]",
  "{}",
  '""',
  '"\\u0000"',
  '"\\ud800"',
  '{"rooms":{"general":-5},"dm":"x"}',
  '{"__proto__":{"type":"quit"}}',
  `"${"z".repeat(300)}"`,
];
const WEIRD_BYTES = [
  0x00,
  0x0a,
  0x0d,
  0x22,
  0x5c,
  0x7b,
  0x7d,
  0x2c,
  0x3a,
  0xc0,
  0xed,
  0xff,
  0x1b,
  0x80,
];

/** One random mutation of a transcript (a list of lines without newlines). */
function mutate(lines: Uint8Array[], rnd: () => number): Uint8Array[] {
  const out = lines.map((l) => l.slice());
  const pick = (n: number) => Math.floor(rnd() * n);
  const i = pick(out.length);
  const l = out[i];
  switch (pick(9)) {
    case 0: // flip a byte
      if (l.length) l[pick(l.length)] ^= 1 << pick(8);
      break;
    case 1: { // insert a weird byte
      const at = pick(l.length + 1);
      out[i] = new Uint8Array([
        ...l.subarray(0, at),
        WEIRD_BYTES[pick(WEIRD_BYTES.length)],
        ...l.subarray(at),
      ]);
      break;
    }
    case 2: // delete a span
      if (l.length) {
        const at = pick(l.length);
        out[i] = new Uint8Array([...l.subarray(0, at), ...l.subarray(at + 1 + pick(8))]);
      }
      break;
    case 3: // duplicate a line
      out.splice(i, 0, l.slice());
      break;
    case 4: { // swap two lines
      const j = pick(out.length);
      [out[i], out[j]] = [out[j], out[i]];
      break;
    }
    case 5: // truncate a line
      out[i] = l.subarray(0, pick(l.length + 1));
      break;
    case 6: { // replace a JSON value with a weird one
      const text = new TextDecoder().decode(l);
      const values = [...text.matchAll(/:("(?:[^"\\]|\\.)*"|-?\d+|\{[^{}]*\}|true|false|null)/g)];
      if (values.length) {
        const m = values[pick(values.length)];
        const at = m.index! + 1;
        const replaced = text.slice(0, at) + WEIRD_VALUES[pick(WEIRD_VALUES.length)] +
          text.slice(at + m[1].length);
        out[i] = enc.encode(replaced);
      }
      break;
    }
    case 7: // change the type
      out[i] = enc.encode(
        new TextDecoder().decode(l).replace(
          /"type":"[a-z]+"/,
          `"type":"${["hello", "login", "send", "quit", "join", "nope", "", "HELLO"][pick(8)]}"`,
        ),
      );
      break;
    case 8: // two lines become one
      if (i + 1 < out.length) out.splice(i, 2, new Uint8Array([...l, ...out[i + 1]]));
      break;
  }
  return out;
}

const jsonLine = (f: Record<string, unknown>) => enc.encode(JSON.stringify(f));

function nativeTranscript(user: string): Uint8Array[] {
  return [
    jsonLine({ type: "hello", version: 1, client: "fuzz" }),
    jsonLine({
      type: "login",
      user,
      password: `password-${user}`,
      ref: "in",
      resume: { rooms: { general: 0 }, dm: 0 },
    }),
    jsonLine({ type: "join", room: "fuzzroom", since: 0, ref: "j" }),
    jsonLine({ type: "send", cid: "c1", room: "fuzzroom", body: "hello fuzz", ref: "s1" }),
    jsonLine({ type: "send", cid: "c2", to: user, body: "note to self", ref: "s2" }),
    jsonLine({ type: "history", room: "fuzzroom", limit: 5, ref: "h" }),
    jsonLine({ type: "history", with: user, limit: 5, before: 99, ref: "h2" }),
    jsonLine({ type: "who", room: "general", ref: "w" }),
    jsonLine({ type: "rooms", ref: "r" }),
    jsonLine({ type: "part", room: "fuzzroom", ref: "p" }),
    jsonLine({ type: "passwd", old: "wrong-password", new: "x", ref: "pw" }),
    jsonLine({ type: "ping" }),
  ];
}

function seedTranscript(user: string): Uint8Array[] {
  return ["LOGIN", user, `password-${user}`, "hello from a fuzzed seed", "  second line  "].map((
    t,
  ) => enc.encode(t));
}

/** Sends a transcript with random chunking, then waits for the server to go quiet or close. */
async function replay(
  ts: TestServer,
  lines: Uint8Array[],
  alpn: string[],
  rnd: () => number,
): Promise<WireClient> {
  const c = await WireClient.connect(ts.port, ts.certPem, { alpn });
  const all = asLines(lines);
  try {
    for (let at = 0; at < all.length;) {
      const n = 1 + Math.floor(rnd() * 200);
      await c.writeAll(all.subarray(at, at + n));
      at += n;
    }
  } catch { /* closed by the server */ }
  // Quiet: nothing new for 100 ms (bounded by 5 s), or closed.
  let seen = -1;
  const deadline = Date.now() + 5000;
  let closed = false;
  c.closed.then(() => closed = true);
  while (!closed && Date.now() < deadline && seen !== c.raw.length) {
    seen = c.raw.length;
    await new Promise((r) => setTimeout(r, 100));
  }
  return c;
}

function checkNativeOutput(c: WireClient, context: string): void {
  for (const text of c.raw.split("\n").filter((l) => l !== "")) {
    const f = JSON.parse(text);
    assert(typeof f.type === "string", `${context}: frame without type: ${text}`);
    assert(!(f.type === "error" && f.code === "internal"), `${context}: internal error: ${text}`);
  }
}

Deno.test("fuzz: mutated chat/1 and seed transcripts never crash a session or the server", async () => {
  await using ts = await startTestServer({ limits: { authTimeoutMs: 5000 } });
  const users = ["fuzza", "fuzzb", "fuzzc"];
  for (const u of users) {
    (await WireClient.login(ts.port, ts.certPem, u, { register: true })).close();
  }
  const rnd = prng(SEED);
  const transcripts = Math.max(20, Math.floor(RUNS / 8));
  for (let t = 0; t < transcripts; t++) {
    const user = users[t % users.length];
    const seed = t % 4 === 3;
    let lines = seed ? seedTranscript(user) : nativeTranscript(user);
    const rounds = 1 + Math.floor(rnd() * 4);
    for (let m = 0; m < rounds; m++) lines = mutate(lines, rnd);
    const context = `seed ${SEED}, transcript ${t} (${seed ? "seed" : "chat/1"})`;
    await using c = await replay(ts, lines, seed ? [] : ["chat/1"], rnd);
    if (seed) {
      assert(!c.raw.includes("[ERROR] internal"), `${context}: ${c.raw}`);
      // deno-lint-ignore no-control-regex
      const control = /[\u0000-\u0008\u000b-\u001f]/;
      for (const l of c.raw.split("\n")) assert(!control.test(l), context);
    } else {
      checkNativeOutput(c, context);
    }
  }
  // The server is still whole: logins, sends and history work.
  await using ok = await WireClient.login(ts.port, ts.certPem, "fuzza");
  assertEquals((await ok.say("general", "after the fuzz")).type, "ack");
  await waitFor(() => ts.server.stats.sessions === 1, "fuzzed sessions to be gone");
});

Deno.test("fuzz: thousands of mutated lines on one logged-in connection never end it or crash it", async () => {
  await using ts = await startTestServer();
  await using c = await WireClient.login(ts.port, ts.certPem, "longfuzz", { register: true });
  c.send({ type: "join", room: "fuzzroom", ref: "j" });
  await c.expect(isType("ok"));
  const rnd = prng(SEED ^ 0x5eed);
  const base = nativeTranscript("longfuzz").slice(2);
  const total = RUNS * 4;
  let sent = 0;
  while (sent < total) {
    let lines = base;
    for (let m = 0; m < 3; m++) lines = mutate(lines, rnd);
    // Fatal after login: only a line over the limit, and quit; keep those out of this run.
    lines = lines.filter((l) =>
      l.length < 4000 && !/"type":"quit"/.test(new TextDecoder().decode(l))
    );
    const chunk = asLines(lines);
    await c.writeAll(chunk);
    sent += lines.length;
    c.send({ type: "ping", ref: `sync${sent}` });
    await c.expect(isType("pong"), 20_000);
    c.frames.length = 0;
  }
  checkNativeOutput(c, `seed ${SEED}, one connection`);
  assertEquals((await c.say("general", "still here")).type, "ack");
});
