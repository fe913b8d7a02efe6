/**
 * A PostgreSQL cluster of the test's own (not the machine's shared one): initdb into a scratch
 * directory, run by the `postgres` user from Debian's /usr/lib/postgresql/N/bin, listening on a
 * given address and port. stop()/start() restart it on the same data (the database-restart fault).
 */
import { execFileSync } from "node:child_process";
import { appendFileSync, chownSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A running cluster: its URL (database postgres, user postgres, trust on the test subnet). */
export type PgCluster = { url: string; dir: string; start(): void; stop(mode?: "fast" | "immediate"): void; destroy(): void };

/** The newest Debian PostgreSQL's bin directory, or undefined. */
export function postgresBin(): string | undefined {
  try {
    const versions = readdirSync("/usr/lib/postgresql").filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    return versions.length ? `/usr/lib/postgresql/${versions[0]}/bin` : undefined;
  } catch {
    return undefined;
  }
}

function asPostgres(bin: string, program: string, args: string[]): void {
  execFileSync("runuser", ["-u", "postgres", "--", join(bin, program), ...args], { stdio: ["ignore", "ignore", "pipe"], cwd: "/" });
}

/** initdb + start on host:port, trusting `trustCidr`; room for several hosts' pools. */
export function createPgCluster(host: string, port: number, trustCidr: string): PgCluster {
  const bin = postgresBin();
  if (!bin) throw new Error("no PostgreSQL under /usr/lib/postgresql (apt-get install postgresql)");
  const dir = mkdtempSync(join(tmpdir(), "conveer-pgcluster-"));
  const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
  chownSync(dir, uid, gid);
  const data = join(dir, "data");
  asPostgres(bin, "initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
  appendFileSync(join(data, "pg_hba.conf"), `host all all ${trustCidr} trust\n`);
  const options = `-c listen_addresses=${host} -p ${port} -c unix_socket_directories=${dir} -c max_connections=200 -c fsync=off`;
  const cluster: PgCluster = {
    url: `postgres://postgres@${host}:${port}/postgres`,
    dir,
    start() {
      asPostgres(bin, "pg_ctl", ["-D", data, "-o", options, "-l", join(dir, "log"), "-w", "-t", "60", "start"]);
    },
    stop(mode = "fast") {
      asPostgres(bin, "pg_ctl", ["-D", data, "-m", mode, "-w", "-t", "60", "stop"]);
    },
    destroy() {
      try {
        cluster.stop("immediate");
      } catch {}
      rmSync(dir, { recursive: true, force: true });
    },
  };
  cluster.start();
  return cluster;
}
