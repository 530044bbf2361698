// Owns log setup: LogTape sinks, readable text by default or JSON lines on request.
import {
  configure,
  getConsoleSink,
  getTextFormatter,
  jsonLinesFormatter,
  type LogLevel,
  reset,
} from "@logtape/logtape";

/** Configures logging for the process. Log records never carry passwords or message bodies. */
export async function setupLogging(
  opts: { format: "text" | "json"; level: LogLevel },
): Promise<void> {
  await configure({
    reset: true,
    sinks: {
      console: getConsoleSink({
        formatter: opts.format === "json"
          ? jsonLinesFormatter
          : getTextFormatter({ timestamp: "date-time" }),
      }),
    },
    loggers: [
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["console"] },
      { category: ["chat"], lowestLevel: opts.level, sinks: ["console"] },
    ],
  });
}

/** Undoes setupLogging (tests). */
export async function teardownLogging(): Promise<void> {
  await reset();
}
