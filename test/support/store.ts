import { createHash, randomBytes } from "node:crypto";
import pg from "pg";
import { PGlite } from "@electric-sql/pglite";
import type { Db } from "../../src/store/db.ts";
import { loadMigrations, migrate } from "../../src/store/migrate.ts";
import { wrapPglite } from "../../src/store/pglite.ts";
import { openPostgres } from "../../src/store/postgres.ts";

/** The stores every store test runs on: PGlite always, PostgreSQL when CONVEER_TEST_DATABASE_URL is set. */
export const STORE_KINDS: ("pglite" | "postgres")[] = process.env.CONVEER_TEST_DATABASE_URL ? ["pglite", "postgres"] : ["pglite"];

let pgliteTemplate: Promise<PGlite> | undefined;
let openClones = 0;
let closeTimer: NodeJS.Timeout | undefined;

// The template is closed shortly after its last clone is dropped, so a test file's process can exit.
function releaseTemplate(): void {
  if (--openClones > 0) return;
  closeTimer = setTimeout(() => {
    const t = pgliteTemplate;
    pgliteTemplate = undefined;
    void t?.then((p) => p.close());
  }, 100);
}

/** A fresh, migrated store: a clone of a template migrated once per process (PGlite) or per migration set (PostgreSQL). */
export async function freshStore(kind: "pglite" | "postgres"): Promise<{ db: Db; url: string; drop(): Promise<void> }> {
  if (kind === "pglite") {
    pgliteTemplate ??= (async () => {
      const t = await PGlite.create();
      await migrate(wrapPglite(t));
      return t;
    })();
    clearTimeout(closeTimer);
    openClones++;
    const clone = (await (await pgliteTemplate).clone()) as PGlite;
    const db = wrapPglite(clone);
    let dropped = false;
    return {
      db,
      url: "",
      drop: async () => {
        if (dropped) return;
        dropped = true;
        await db.close();
        releaseTemplate();
      },
    };
  }
  const url = await freshPostgresDatabase();
  const db = openPostgres({ url, max: 10 });
  return {
    db,
    url,
    drop: async () => {
      await db.close();
      await dropPostgresDatabase(url);
    },
  };
}

/** Creates a new PostgreSQL database cloned from a migrated template; returns its URL. */
export async function freshPostgresDatabase(): Promise<string> {
  const base = process.env.CONVEER_TEST_DATABASE_URL;
  if (!base) throw new Error("CONVEER_TEST_DATABASE_URL is not set");
  const hash = createHash("sha256").update(JSON.stringify(await loadMigrations())).digest("hex").slice(0, 12);
  const template = `conveer_tpl_${hash}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  try {
    await admin.query("SELECT pg_advisory_lock(4242)");
    try {
      const exists = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [template]);
      if (exists.rowCount === 0) {
        await admin.query(`CREATE DATABASE ${template}`);
        const tdb = openPostgres({ url: withDb(base, template), max: 2 });
        try {
          await migrate(tdb);
        } finally {
          await tdb.close();
        }
      }
    } finally {
      await admin.query("SELECT pg_advisory_unlock(4242)");
    }
    const name = `conveer_t_${randomBytes(6).toString("hex")}`;
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
    return withDb(base, name);
  } finally {
    await admin.end();
  }
}

/** An empty (un-migrated) database made with plain CREATE DATABASE, named prefix + random; returns its URL. */
export async function emptyPostgresDatabase(prefix: string): Promise<string> {
  const base = process.env.CONVEER_TEST_DATABASE_URL;
  if (!base) throw new Error("CONVEER_TEST_DATABASE_URL is not set");
  const name = `${prefix}${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return withDb(base, name);
}

/** Drops a database made by freshPostgresDatabase or emptyPostgresDatabase. */
export async function dropPostgresDatabase(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  const admin = new pg.Client({ connectionString: process.env.CONVEER_TEST_DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

function withDb(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}
