/**
 * The cluster test's certificates, made with openssl: a test CA of its own and certificates it
 * signs for IP addresses (the hosts' TLS ports, the test PostgreSQL's server). Clients trust the
 * CA file and check the address (Node's TLS, `sslmode=verify-full`).
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";

/** A certificate and its key, PEM files. */
export type CertFiles = { cert: string; key: string };

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"];

function openssl(args: string[]): void {
  execFileSync("openssl", ["req", "-x509", ...EC, ...args], { stdio: ["ignore", "ignore", "pipe"] });
}

/** A test CA in `dir` (`<name>.pem`, `<name>.key`). */
export function makeCa(dir: string, name = "ca"): CertFiles {
  const files = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  openssl(["-keyout", files.key, "-out", files.cert, "-subj", `/CN=conveer-test-${name}`]);
  return files;
}

/** A server certificate `<name>.pem`/`<name>.key` in `dir` for the IP addresses `addrs`, signed by `ca`. */
export function issueCert(ca: CertFiles, dir: string, name: string, addrs: string[]): CertFiles {
  const files = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  openssl([
    ...["-keyout", files.key, "-out", files.cert, "-subj", `/CN=${name}`, "-CA", ca.cert, "-CAkey", ca.key],
    ...["-addext", `subjectAltName=${addrs.map((a) => `IP:${a}`).join(",")}`, "-addext", "basicConstraints=critical,CA:FALSE"],
  ]);
  return files;
}
