/**
 * The peer in bench/warming.ts: graphile-worker 0.18 draining a backlog of no-op jobs in batches
 * (a local queue that fetches and locks `batch` jobs per query, completions batched), on the same
 * PostgreSQL database as the warming run beside it (its own schema, graphile_worker).
 */
import { makeWorkerUtils, run } from "graphile-worker";
import type { AddJobsJobSpec, LogFunctionFactory } from "graphile-worker";
import { Logger } from "graphile-worker";

/** graphile-worker's settings for the drain: its documented batching knobs. */
export type DrainOptions = { url: string; concurrency: number; batch: number };

const quiet: LogFunctionFactory = () => (level, message) => {
  if (level === "error") process.stderr.write(`[graphile-worker] ${message}\n`);
};

/** Installs graphile-worker's schema and queues `total` no-op jobs, all due now. */
export async function seedGraphileJobs(url: string, total: number): Promise<void> {
  const utils = await makeWorkerUtils({ connectionString: url, logger: new Logger(quiet) });
  try {
    await utils.migrate();
    const runAt = new Date(Date.now() - 1000);
    for (let done = 0; done < total; ) {
      const n = Math.min(5000, total - done);
      const specs: AddJobsJobSpec[] = Array.from({ length: n }, (_, i) => ({ identifier: "noop", payload: { i: done + i }, runAt }));
      await utils.addJobs(specs);
      done += n;
    }
  } finally {
    await utils.release();
  }
}

/**
 * Runs graphile-worker until `total` jobs have run, with a no-op task; `onJob` counts each (the
 * bench samples the count). Answers when the last job ran and the runner stopped.
 */
export async function drainGraphileJobs(o: DrainOptions, total: number, onJob: () => void): Promise<void> {
  let n = 0;
  let finished!: () => void;
  const done = new Promise<void>((res) => (finished = res));
  const runner = await run({
    connectionString: o.url,
    concurrency: o.concurrency,
    noHandleSignals: true,
    pollInterval: 200,
    logger: new Logger(quiet),
    taskList: {
      noop: async () => {
        onJob();
        if (++n === total) finished();
      },
    },
    preset: { worker: { localQueue: { size: o.batch }, completeJobBatchDelay: 0, failJobBatchDelay: 0, maxPoolSize: 20 } },
  });
  await done;
  await runner.stop();
}
