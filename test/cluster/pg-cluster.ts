/**
 * A PostgreSQL cluster of the test's own (not the machine's shared one): initdb into a scratch
 * directory, run by the `postgres` user from Debian's /usr/lib/postgresql/N/bin, listening on a
 * given address and port, TLS only (a server certificate for that address signed by the test's
 * CA; pg_hba.conf accepts `hostssl` from the test subnet and rejects every `hostnossl`).
 * stop()/start() restart it on the same data (the database-restart fault).
 */
import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { issueCert } from "./certs.ts";
import type { CertFiles } from "./certs.ts";

/**
 * A running cluster: its URL (database postgres, user postgres, trust over TLS on the test subnet,
 * `sslmode=verify-full&sslrootcert=<the CA>`) and the same URL without TLS, which it refuses.
 */
export type PgCluster = { url: string; plainUrl: string; dir: string; start(): void; stop(mode?: "fast" | "immediate"): void; destroy(): void };

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

/** The server certificate for `host` (signed by `ca`) in the data directory, owned by postgres as it requires. */
function serverCert(ca: CertFiles, dir: string, data: string, host: string, uid: number, gid: number): void {
  const made = issueCert(ca, dir, "pg-server", [host]);
  for (const [from, to] of [[made.cert, "server.crt"], [made.key, "server.key"]]) {
    copyFileSync(from, join(data, to));
    chownSync(join(data, to), uid, gid);
    chmodSync(join(data, to), 0o600);
  }
}

/** initdb + start on host:port, TLS only, trusting `trustCidr`; room for several hosts' pools. */
export function createPgCluster(host: string, port: number, trustCidr: string, ca: CertFiles): PgCluster {
  const bin = postgresBin();
  if (!bin) throw new Error("no PostgreSQL under /usr/lib/postgresql (apt-get install postgresql)");
  const dir = mkdtempSync(join(tmpdir(), "conveer-pgcluster-"));
  const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
  chownSync(dir, uid, gid);
  const data = join(dir, "data");
  asPostgres(bin, "initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
  serverCert(ca, dir, data, host, uid, gid);
  writeFileSync(join(data, "pg_hba.conf"), `local all all trust\nhostssl all all ${trustCidr} trust\nhostnossl all all 0.0.0.0/0 reject\n`);
  const options = `-c listen_addresses=${host} -p ${port} -c unix_socket_directories=${dir} -c max_connections=200 -c fsync=off -c ssl=on`;
  const plainUrl = `postgres://postgres@${host}:${port}/postgres`;
  const cluster: PgCluster = {
    url: `${plainUrl}?sslmode=verify-full&sslrootcert=${encodeURIComponent(ca.cert)}`,
    plainUrl,
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
