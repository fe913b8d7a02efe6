import { mkdirSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { join } from "node:path";

/** BENCH_CPU_PROF_DIR: where the benchmarks that honour it write a CPU profile of each measured window (empty: no profiling). */
export const PROFILE_DIR = process.env.BENCH_CPU_PROF_DIR ?? "";

/** Starts sampling this process (every 200 µs); stop it with stopProfile. */
export async function startProfile(): Promise<Session> {
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 200 });
  await session.post("Profiler.start");
  return session;
}

/** Stops the profile and writes it as PROFILE_DIR/name.cpuprofile (read it with `node bench/profile-summary.ts FILE`); answers the file. */
export async function stopProfile(session: Session, name: string): Promise<string> {
  const { profile } = await session.post("Profiler.stop");
  session.disconnect();
  mkdirSync(PROFILE_DIR, { recursive: true });
  const file = join(PROFILE_DIR, `${name.replace(/\W+/g, "_")}.cpuprofile`);
  writeFileSync(file, JSON.stringify(profile));
  return file;
}
