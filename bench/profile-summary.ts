/**
 * Summarizes a V8 .cpuprofile (e.g. from BENCH_CPU_PROF_DIR): where the busy time went, by
 * package/area and by function (self time), plus inclusive time of the top frames.
 *
 *   node bench/profile-summary.ts /tmp/prof/postgres-get-run1.cpuprofile [topN]
 */
import { readFileSync } from "node:fs";

type CallFrame = { functionName: string; url: string; lineNumber: number; columnNumber: number };
type ProfileNode = { id: number; callFrame: CallFrame; children?: number[] };
type Profile = { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number };

const file = process.argv[2];
const top = Number(process.argv[3] ?? 25);
if (!file) {
  process.stderr.write("usage: node bench/profile-summary.ts FILE.cpuprofile [topN]\n");
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

function area(cf: CallFrame): string {
  const u = cf.url;
  if (!u) return cf.functionName.startsWith("(") ? cf.functionName : "(native/builtin)";
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (nm) return nm[1];
  const src = /\/(src|bench|test)\/(.*)$/.exec(u);
  if (src) return `${src[1]}/${src[2]}`;
  if (u.startsWith("node:")) return u.split("/").slice(0, 2).join("/");
  return u;
}
const keyOf = (cf: CallFrame) => `${cf.functionName || "(anonymous)"} ${area(cf)}:${cf.lineNumber + 1}`;

/** The layer a frame belongs to, or "" when it says nothing by itself (node internals, natives). */
function layer(cf: CallFrame): string {
  const a = area(cf);
  if (/^pg($|-)|^postgres-/.test(a)) return "PostgreSQL driver (pg, pg-pool, pg-protocol, pg-types)";
  if (a === "@electric-sql/pglite") return "PGlite (embedded engine)";
  if (a.startsWith("src/store/")) return "store wrapper (src/store)";
  if (a === "@grpc/grpc-js" || a === "node:internal/http2") return "gRPC transport (grpc-js, http2)";
  if (a === "@bufbuild/protobuf") return "protobuf-es encode/decode";
  if (a === "src/server/grpc-server.ts" || a === "@connectrpc/connect" || a.startsWith("src/auth/") || a === "src/errors.ts" || a === "prom-client" || a === "src/server/metrics.ts" || a === "pino" || a === "node:internal/abort_controller" || a === "node:internal/event_target") {
    return "Conveer call plumbing (grpc-server.ts: auth, context, abort, metrics, log)";
  }
  if (a.startsWith("src/accounts/") || a.startsWith("src/proxies/") || a.startsWith("src/vault/")) return "domain (src/accounts, src/proxies, src/vault)";
  if (a.startsWith("bench/")) return "bench code";
  if (a === "(garbage collector)") return "garbage collector";
  return "";
}
const layers = new Map<string, number>();
const self = new Map<string, number>();
const areas = new Map<string, number>();
const inclusive = new Map<string, number>();
let total = 0;
let idle = 0;
// Every sample weighs the nominal interval (the median gap): on a busy host the gap before a
// sample can be a long descheduled stretch, which must not be billed to whatever ran next.
const sortedDeltas = [...profile.timeDeltas].filter((d) => d > 0).sort((a, b) => a - b);
const interval = sortedDeltas[Math.floor(sortedDeltas.length / 2)] ?? 1000;
for (let i = 0; i < profile.samples.length; i++) {
  const dt = interval;
  const node = byId.get(profile.samples[i])!;
  const cf = node.callFrame;
  if (cf.functionName === "(idle)") {
    idle += dt;
    continue;
  }
  total += dt;
  self.set(keyOf(cf), (self.get(keyOf(cf)) ?? 0) + dt);
  areas.set(area(cf), (areas.get(area(cf)) ?? 0) + dt);
  let l = "";
  for (let id: number | undefined = node.id; id !== undefined && !l; id = parent.get(id)) l = layer(byId.get(id)!.callFrame);
  l ||= "other (event loop, node internals)";
  layers.set(l, (layers.get(l) ?? 0) + dt);
  const seen = new Set<string>();
  for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
    const k = keyOf(byId.get(id)!.callFrame);
    if (seen.has(k)) continue;
    seen.add(k);
    inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
  }
}
const wall = profile.endTime - profile.startTime;
const pct = (v: number) => `${((100 * v) / total).toFixed(1).padStart(5)}%`;
const print = (title: string, m: Map<string, number>, n: number) => {
  process.stdout.write(`\n${title}\n`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) process.stdout.write(`${pct(v)}  ${(v / 1000).toFixed(0).padStart(6)} ms  ${k}\n`);
};
process.stdout.write(
  `${file}: ${(wall / 1000).toFixed(0)} ms wall, ${profile.samples.length} samples every ~${interval} µs: busy ${(total / 1000).toFixed(0)} ms, idle ${(idle / 1000).toFixed(0)} ms, unsampled (descheduled or profiler) ${((wall - total - idle) / 1000).toFixed(0)} ms\n`,
);
print("busy time by layer (each sample billed to the nearest frame on its stack that belongs to a known layer):", layers, top);
print("busy time by area (self):", areas, top);
print("busy time by function (self):", self, top);
print("inclusive time (frames on the stack):", new Map([...inclusive].filter(([k]) => !k.startsWith("(root)"))), top);
