import { test } from "node:test";
import assert from "node:assert/strict";
import { AppError } from "../errors.ts";
import { openPostgres } from "./postgres.ts";
import { storeFailureReason, storeTlsRefused } from "./store-errors.ts";

const DB_URL = process.env.CONVEER_TEST_DATABASE_URL;

/** pg's DatabaseError and Node's TLS errors carry a code and a message; these are the ones they give. */
const noEncryption = Object.assign(new Error('pg_hba.conf rejects connection for host "10.0.0.1", user "postgres", database "postgres", no encryption'), { code: "28000" });
const unverified = Object.assign(new Error("unable to verify the first certificate; if the root CA is installed locally, try running Node.js with --use-system-ca"), { code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" });

test("storeTlsRefused names the fix in DATABASE_URL when the database wants TLS or its certificate is not trusted", () => {
  for (const err of [noEncryption, unverified]) {
    const e = storeTlsRefused(err);
    assert.ok(e instanceof AppError, err.message);
    assert.equal(e.code, "UNAVAILABLE");
    assert.match(e.message, /sslmode=verify-full/);
    assert.match(e.message, /sslrootcert=/);
    assert.doesNotMatch(e.message, /10\.0\.0\.1|--use-system-ca/, "neither the driver's host nor its misleading hint");
  }
  assert.match(storeFailureReason(noEncryption), /only TLS/);
  assert.match(storeFailureReason(unverified), /not signed by a trusted CA/);
  // Not TLS: left to the other reasons.
  const refused = Object.assign(new Error("connect ECONNREFUSED 10.0.0.1:5432"), { code: "ECONNREFUSED" });
  assert.equal(storeTlsRefused(refused), undefined);
  assert.equal(storeFailureReason(refused), "connection refused");
  assert.equal(storeTlsRefused(Object.assign(new Error("password authentication failed"), { code: "28P01" })), undefined);
});

test("a DATABASE_URL whose sslrootcert file is missing fails the open, naming the file and the parameter", () => {
  assert.throws(
    () => openPostgres({ url: "postgres://postgres@127.0.0.1:1/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem" }),
    (err: AppError) => err.code === "FAILED_PRECONDITION" && /\/nonexistent\/ca\.pem does not exist/.test(err.message) && /sslrootcert/.test(err.message),
  );
});

test("sslmode=verify-full against a database without TLS fails with the fix named", { skip: DB_URL ? false : "CONVEER_TEST_DATABASE_URL not set" }, async () => {
  const url = new URL(DB_URL!);
  url.searchParams.set("sslmode", "verify-full");
  const db = openPostgres({ url: url.toString(), max: 1 });
  try {
    await assert.rejects(db.query("SELECT 1"), (err: AppError) => {
      // The machine's shared PostgreSQL runs without TLS (Debian's test setup); with TLS on it would be the certificate.
      assert.match(err.message, /the store refused the connection: the database (does not accept TLS|'s TLS certificate)/);
      return true;
    });
  } finally {
    await db.close();
  }
});
