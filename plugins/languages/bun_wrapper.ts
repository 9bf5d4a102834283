// Runs one TypeScript job under bun: `bun --no-install bun_wrapper.ts JOB_DIR '["a","b"]'`.
// Imports JOB_DIR/main.ts, calls main() with args.json's values by name in signature order, awaits it
// and writes result.json; a thrown error goes to error.json (name, message, stack) and exit code 1.
// console output is the process's own stdout/stderr, which the worker streams into the job log.
const jobDir: string = process.argv[2];
const order: string[] = JSON.parse(process.argv[3] ?? "[]");

// A trigger's event arrives as {"__headrace_event": event}: preprocessor(event) returns main()'s arguments.
const EVENT_ARG = "__headrace_event";

async function preprocess(script: any, args: Record<string, unknown>): Promise<Record<string, unknown>> {
  if (!(EVENT_ARG in args)) return args;
  if (typeof script.preprocessor !== "function") {
    throw new TypeError("the job carries a trigger event but the script exports no function preprocessor()");
  }
  const produced = await script.preprocessor(args[EVENT_ARG]);
  if (produced === null || typeof produced !== "object" || Array.isArray(produced)) {
    const what = produced === null ? "null" : Array.isArray(produced) ? "an array" : typeof produced;
    throw new TypeError(`preprocessor() must return an object of main()'s arguments, not ${what}`);
  }
  return produced;
}

async function run(): Promise<number> {
  try {
    const script = await import(`${jobDir}/main.ts`);
    const main = script.main ?? script.default;
    if (typeof main !== "function") {
      throw new TypeError("the script exports no function main()");
    }
    const args = await preprocess(script, await Bun.file(`${jobDir}/args.json`).json());
    const result = await main(...order.map((name) => args[name]));
    await Bun.write(`${jobDir}/result.json`, JSON.stringify(result ?? null));
    return 0;
  } catch (thrown) {
    const error = thrown instanceof Error ? thrown : new Error(String(thrown));
    // The job's own frames only: drop this wrapper's.
    const stack = (error.stack ?? String(error))
      .split("\n")
      .filter((line) => !line.includes(import.meta.path))
      .join("\n");
    console.error(stack);
    await Bun.write(
      `${jobDir}/error.json`,
      JSON.stringify({ name: error.name, message: error.message, stack }),
    );
    return 1;
  }
}

// Exit explicitly: a job is over when main's promise settles, whatever timers or sockets it left open.
process.exit(await run());
