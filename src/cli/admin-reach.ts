import { userInfo } from "node:os";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Client } from "@connectrpc/connect";
import { pino } from "pino";
import { createAdmin } from "../admin/admin.ts";
import { adminService } from "../admin/admin-service.ts";
import { systemPrincipal } from "../auth/tokens.ts";
import { splitHostPort } from "../config/config.ts";
import type { Config } from "../config/config.ts";
import { AdminService } from "../gen/conveer/v1/admin_pb.js";
import { localClient } from "../server/local-client.ts";
import type { Db } from "../store/db.ts";
import { createIdGenerator } from "../store/ids.ts";
import { openStore } from "../store/open.ts";
import { createVault } from "../vault/vault.ts";
import type { Vault } from "../vault/vault.ts";
import { loadMasterKeys } from "../vault/master-key.ts";
import { serverClient } from "./cli-client.ts";
import { holdDataDirLock } from "./data-dir-lock.ts";

/** AdminService as the admin commands call it, through a server or on the store directly. */
export type AdminClient = Client<typeof AdminService>;

/**
 * The server the admin commands call: `--server` / CONVEER_SERVER, else this machine's HTTP port
 * (CONVEER_HTTP_ADDR, https when CONVEER_TLS_CERT is set; a wildcard address is reached on loopback).
 */
export function adminServer(config: Config): { url: string; explicit: boolean } {
  if (config.server) return { url: config.server, explicit: true };
  const { host, port } = splitHostPort(config.httpAddr);
  const reach = host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" ? "::1" : host;
  return { url: `${config.tlsCert ? "https" : "http"}://${reach.includes(":") ? `[${reach}]` : reach}:${port}`, explicit: false };
}

/** True when the error says nothing listens at the address (no server: nothing was done there). */
function refused(err: unknown): boolean {
  if (!(err instanceof ConnectError) || err.code !== Code.Unavailable) return false;
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
    if ((e as { code?: unknown }).code === "ECONNREFUSED") return true;
  }
  return /ECONNREFUSED/.test(err.message);
}

/**
 * Runs `fn` against AdminService: through the server when one answers (so it works while a
 * server holds the embedded store), or, when nothing listens at the default address, on the
 * store directly (the bootstrap path: the first token of a CONVEER_AUTH=tokens store), which
 * refuses while another process holds the embedded data directory; on PostgreSQL also when the
 * server wants a token and none is set. Says on stderr which ran.
 * `vault`: the direct path opens the credential vault too (key rotation needs the master key).
 */
export async function withAdmin<T>(config: Config, fn: (admin: AdminClient) => Promise<T>, opts: { vault?: boolean } = {}): Promise<T> {
  const { url, explicit } = adminServer(config);
  const client = serverClient(AdminService, url, config);
  // A server holds the lock but listens elsewhere than this CLI looked: say where to point it.
  const lockedHint = `If it is a server, its HTTP port serves these commands: point the CLI at it with --server http://HOST:PORT (nothing answered at ${url})`;
  const onStore = () => plainErrors(() => withStore(config, (db) => direct(config, db, fn, opts.vault ?? false), lockedHint));
  try {
    await client.whoAmI({});
  } catch (err) {
    if (refused(err)) {
      if (explicit) throw new Error(`no server answers at ${url} (connection refused); start it, or unset --server/CONVEER_SERVER to work on the local store directly`);
      process.stderr.write(`conveer: no server answers at ${url}; working on the store directly (${config.databaseUrl ? "DATABASE_URL" : `the embedded store in ${config.dataDir}`})\n`);
      return onStore();
    }
    if (!(err instanceof ConnectError) || err.code === Code.Unavailable) throw err;
    if (err.code === Code.Unauthenticated && !config.token) {
      // Bootstrap beside a running server on PostgreSQL: whoever holds DATABASE_URL holds the store anyway.
      if (config.databaseUrl && !explicit) {
        process.stderr.write(`conveer: the server at ${url} needs a token and CONVEER_TOKEN is not set; working on the PostgreSQL store directly (DATABASE_URL)\n`);
        return onStore();
      }
      const hint = config.databaseUrl ? "" : "; to make the first token of an embedded store, stop the server and run this again (it then works on the store directly)";
      throw new Error(`the server at ${url} needs a token: set CONVEER_TOKEN to one with the admin scope${hint}`);
    }
    // Any other answer means a server is there: the command's own call says what is wrong.
  }
  return viaServer(url, client, fn);
}

function viaServer<T>(url: string, client: AdminClient, fn: (admin: AdminClient) => Promise<T>): Promise<T> {
  process.stderr.write(`conveer: through the server at ${url}\n`);
  return plainErrors(() => fn(client));
}

/** An answer's error as the CLI prints it: the server's message alone ("conveer: a token named … already exists"). */
async function plainErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw err instanceof ConnectError ? new Error(err.rawMessage, { cause: err }) : err;
  }
}

/** Runs fn with the store opened directly, holding the embedded data directory's lock (`lockedHint` is added to the error when another process holds it). */
export async function withStore<T>(config: Config, fn: (db: Db) => Promise<T>, lockedHint: string): Promise<T> {
  const release = config.databaseUrl
    ? async () => {}
    : await holdDataDirLock(config.dataDir).catch((err: Error) => {
        throw new Error(`${err.message}. ${lockedHint}`);
      });
  try {
    const db = await openStore(config, pino({ level: "warn" }));
    try {
      return await fn(db);
    } finally {
      await db.close();
    }
  } finally {
    await release();
  }
}

/** AdminService served in this process over the store, as the CLI's own system principal ("cli@<user>"). */
async function direct<T>(config: Config, db: Db, fn: (admin: AdminClient) => Promise<T>, withVault: boolean): Promise<T> {
  const newId = createIdGenerator();
  const log = pino({ level: "warn" });
  // The vault first: it unwraps every existing key, so a wrong master key fails here, before a new key could be made active.
  const vault = withVault ? await createVault(db, await loadMasterKeys(config, log, db), newId) : noVault;
  const admin = createAdmin({ db, vault, newId, log });
  try {
    return await fn(localClient<typeof AdminService>(adminService(admin), systemPrincipal(`cli@${userInfo().username}`)));
  } finally {
    await admin.stop();
    await vault.stop();
  }
}

const unused = (): never => {
  throw new Error("this command does not open the credential vault");
};
const noVault: Vault = { seal: unused, open: unused, activeKeyId: unused, reload: unused, activateNewKey: unused, stop: async () => {} };
