import cliProgress from "cli-progress";

/** A progress bar on stderr (so stdout stays machine-readable); quiet when stderr is not a terminal. */
export function progressBar(label: string, total: number): { update(n: number): void; increment(n?: number): void; stop(): void } {
  if (!process.stderr.isTTY) {
    let last = 0;
    let value = 0;
    const report = (force = false) => {
      if (force || Date.now() - last > 2000) {
        last = Date.now();
        process.stderr.write(`${label}: ${value}/${total || "?"}\n`);
      }
    };
    return {
      update(n) { value = n; report(); },
      increment(n = 1) { value += n; report(); },
      stop() { report(true); },
    };
  }
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% | {value}/{total} | {eta}s left`, stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  return { update: (n) => bar.update(n), increment: (n = 1) => bar.increment(n), stop: () => bar.stop() };
}
