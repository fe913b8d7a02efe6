import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ACTION_KINDS } from "../platforms/driver.ts";
import { AppError } from "../errors.ts";
import { BUILTIN_SPECS, builtinScenarios, countRange, DEFAULT_SCENARIO_ID, getScenario, loadScenarios, MAX_PLANNED_ACTIONS, parseScenario, ScenarioError } from "./scenario.ts";

const REPO_SCENARIOS = join(import.meta.dirname, "..", "..", "scenarios");

// A valid spec to break one field at a time.
function spec(): any {
  return {
    id: "fast",
    name: "Fast",
    totalDays: 5,
    days: [
      { days: "1", window: { startHour: 9, endHour: 18 }, actions: { view_profile: 3 } },
      { days: "2-5", window: { startHour: 9, endHour: 21 }, actions: { view_profile: "3-5", like_post: "2-5" } },
    ],
  };
}

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ScenarioError, `expected ScenarioError, got ${err}`);
    return err.problems;
  }
  assert.fail("expected a ScenarioError");
}

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "conveer-scenarios-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test("built-ins: basic (default), gentle and intensive are valid and cover every day once", () => {
  const all = builtinScenarios();
  assert.deepEqual([...all.keys()], ["basic", "gentle", "intensive"]);
  assert.equal(DEFAULT_SCENARIO_ID, "basic");
  assert.deepEqual([...all.values()].map((s) => s.totalDays), [14, 7, 21]);
  for (const s of all.values()) {
    assert.equal(s.source, "builtin");
    assert.ok(s.name && s.description, `${s.id} has a name and description`);
    const seen: number[] = [];
    for (const d of s.days) {
      for (let day = d.from; day <= d.to; day++) seen.push(day);
      assert.ok(d.window.startHour < d.window.endHour);
      for (const kind of Object.keys(d.actions)) assert.ok((ACTION_KINDS as readonly string[]).includes(kind));
    }
    assert.deepEqual(seen, Array.from({ length: s.totalDays }, (_, i) => i + 1), `${s.id} covers 1..${s.totalDays} in order`);
  }
  // Built-in specs are not mutated by parsing.
  assert.equal(typeof BUILTIN_SPECS[0].days[0].days, "string");
});

test("parseScenario: normalizes days and counts, defaults name/description, sorts entries", () => {
  const s = spec();
  s.days.reverse();
  s.days[0].days = " 2 - 5 ";
  s.days[1].days = 1;
  s.days[0].actions.like_post = " 4-4 ";
  delete s.name;
  const out = parseScenario(s, "x.yaml");
  assert.equal(out.name, "fast");
  assert.equal(out.description, "");
  assert.equal(out.source, "x.yaml");
  assert.deepEqual(out.days.map((d) => [d.days, d.from, d.to]), [["1", 1, 1], ["2-5", 2, 5]]);
  assert.deepEqual(out.days[1].actions, { view_profile: "3-5", like_post: 4 });
  assert.deepEqual(countRange("2-5"), { min: 2, max: 5 });
  assert.deepEqual(countRange(0), { min: 0, max: 0 });
  assert.equal(countRange("5-2"), undefined);
  assert.equal(countRange(-1), undefined);
});

test("parseScenario: each problem names the source, the field path and the fix", () => {
  const cases: [string, (s: any) => void, string][] = [
    ["reversed range", (s) => (s.days[1].actions.like_post = "5-2"), `scenarios/fast.yaml: days[1].actions.like_post: "5-2" is not a count or range; write "2-5"`],
    ["unknown kind", (s) => (s.days[0].actions.like = 2), "scenarios/fast.yaml: days[0].actions.like: unknown action kind; did you mean like_post? use one of view_profile, like_post"],
    ["negative count", (s) => (s.days[0].actions.view_profile = -1), "days[0].actions.view_profile: -1 is negative; counts are 0 or more"],
    ["fractional count", (s) => (s.days[0].actions.view_profile = 2.5), "days[0].actions.view_profile: 2.5 is not a whole number; write 3"],
    ["garbage count", (s) => (s.days[0].actions.view_profile = "lots"), `days[0].actions.view_profile: "lots" is not a count or range; write a whole number like 3 or a range like "2-5"`],
    ["huge count", (s) => (s.days[0].actions.view_profile = "1-5000"), `"1-5000" is more than 1000 a day`],
    ["overlap", (s) => (s.days[1].days = "1-5"), `days[1].days: "1-5" overlaps days[0] ("1") on day 1; each day belongs to exactly one entry`],
    ["gap", (s) => (s.days[1].days = "2-3"), `scenarios/fast.yaml: days: days 4-5 are not covered by any entry; add an entry with days: "4-5"`],
    ["gap of one day", (s) => (s.days[1].days = "3-5"), `days: day 2 is not covered by any entry; add an entry with days: "2"`],
    ["reversed day range", (s) => (s.days[1].days = "5-2"), `days[1].days: "5-2" is not a day or range; write "2-5"`],
    ["past totalDays", (s) => (s.days[1].days = "2-6"), `days[1].days: "2-6" goes past totalDays (5); end the range at 5 or raise totalDays`],
    ["day zero", (s) => (s.days[0].days = "0"), `days[0].days: "0": days count from 1; write "1"`],
    ["window reversed", (s) => (s.days[0].window = { startHour: 22, endHour: 8 }), "days[0].window: startHour 22 is after endHour 8; a window cannot cross midnight UTC, write startHour: 8, endHour: 22"],
    ["window empty", (s) => (s.days[0].window = { startHour: 9, endHour: 9 }), "days[0].window: startHour and endHour are both 9, an empty window; make endHour later"],
    ["hour out of range", (s) => (s.days[0].window.endHour = 25), "days[0].window.endHour: 25 is not an hour; write an hour from 0 to 24"],
    ["missing window", (s) => delete s.days[0].window, "days[0].window: is missing; write window: { startHour: 9, endHour: 21 }"],
    ["typo in a field", (s) => (s.totaldays = 5), "scenarios/fast.yaml: totaldays: unknown field; did you mean totalDays?"],
    ["bad totalDays", (s) => (s.totalDays = 400), "totalDays: 400 is not a number of days; write a whole number from 1 to 365"],
    ["bad id", (s) => (s.id = "My Scenario"), `id: "My Scenario" is not a scenario id; use lowercase letters, digits`],
    ["no days", (s) => (s.days = []), "days: [] is not a list of day entries; write a list like"],
    ["override not boolean", (s) => (s.override = "yes"), `override: "yes" is not true or false`],
  ];
  for (const [name, breakIt, expected] of cases) {
    const s = spec();
    breakIt(s);
    const problems = problemsOf(() => parseScenario(s, "scenarios/fast.yaml"));
    assert.ok(problems.some((p) => p.includes(expected)), `${name}: expected ${JSON.stringify(expected)} in\n${problems.join("\n")}`);
    for (const p of problems) assert.match(p, /^scenarios\/fast\.yaml: /, `${name}: every problem names the source`);
  }
});

test("parseScenario: lists every problem at once; a non-mapping is rejected with what was found", () => {
  const s = spec();
  s.days[0].actions.like = 1;
  s.days[1].actions.like_post = "5-2";
  s.days[1].window.startHour = 30;
  const err = (() => {
    try {
      parseScenario(s, "f.yaml");
    } catch (e) {
      return e as ScenarioError;
    }
  })()!;
  assert.equal(err.problems.length, 3);
  assert.match(err.message, /^3 problems with warming scenarios:\n {2}f\.yaml: days\[0\]\.actions\.like: /);
  assert.deepEqual(problemsOf(() => parseScenario([1, 2], "l.json")), ["l.json: a scenario file holds one mapping with id, name, description, totalDays and days; got a list"]);
  assert.match(problemsOf(() => parseScenario(null, "e.yaml"))[0], /got nothing \(an empty file\?\)/);
});

test("loadScenarios: no dir means the built-ins; the repo's scenarios/ directory loads", async () => {
  assert.deepEqual([...(await loadScenarios()).keys()], ["basic", "gentle", "intensive"]);
  assert.deepEqual([...(await loadScenarios("")).keys()], ["basic", "gentle", "intensive"]);
  const withRepo = await loadScenarios(REPO_SCENARIOS);
  assert.ok(withRepo.has("quick"));
  assert.equal(withRepo.get("quick")!.source, join(REPO_SCENARIOS, "quick.yaml"));
});

test("loadScenarios: yaml, yml and json files are added; other files and subdirectories ignored", async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, "fast.yaml"), 'id: fast\ntotalDays: 2\ndays:\n  - days: 1-2\n    window: { startHour: 8, endHour: 20 }\n    actions: { like_post: 2-4, view_profile: 3 }\n');
  await writeFile(join(dir, "slow.yml"), "id: slow\ntotalDays: 1\ndays:\n  - days: 1\n    window: { startHour: 8, endHour: 9.5 }\n    actions: {}\n");
  await writeFile(join(dir, "json.json"), JSON.stringify({ ...spec(), id: "json-one" }));
  await writeFile(join(dir, "notes.txt"), "not a scenario");
  await mkdir(join(dir, "sub.yaml"));
  const all = await loadScenarios(dir);
  assert.deepEqual([...all.keys()], ["basic", "gentle", "intensive", "fast", "json-one", "slow"]);
  assert.deepEqual(all.get("fast")!.days[0], { days: "1-2", from: 1, to: 2, window: { startHour: 8, endHour: 20 }, actions: { like_post: "2-4", view_profile: 3 } });
  assert.equal(all.get("slow")!.days[0].window.endHour, 9.5);
});

test("loadScenarios: a bad file rejects the load, naming the file, field and fix; all files' problems listed", async (t) => {
  const dir = await tempDir(t);
  const fast = join(dir, "fast.yaml");
  await writeFile(fast, 'id: fast\ntotalDays: 5\ndays:\n  - days: "1"\n    window: { startHour: 9, endHour: 18 }\n    actions: { view_profile: 3 }\n  - days: "2-5"\n    window: { startHour: 9, endHour: 21 }\n    actions: { like_post: "5-2" }\n');
  await writeFile(join(dir, "broken.yml"), "id: broken\ndays: [1\n");
  await writeFile(join(dir, "broken.json"), "{ id: 1 }");
  await rejectsWith(loadScenarios(dir), [
    `${fast}: days[1].actions.like_post: "5-2" is not a count or range; write "2-5"`,
    `${join(dir, "broken.json")}: not valid JSON`,
    `${join(dir, "broken.yml")}: not valid YAML:`,
  ]);
});

test("loadScenarios: a file whose plan may pass MAX_PLANNED_ACTIONS is refused, naming the file, the count and the limit; one at the limit loads", async (t) => {
  const dir = await tempDir(t);
  // The file: 365 days × 8 kinds × 1,000 a day (2.92 million actions).
  const huge = join(dir, "huge.yaml");
  const all = Object.fromEntries(ACTION_KINDS.map((k) => [k, 1000]));
  await writeFile(huge, JSON.stringify({ id: "huge", totalDays: 365, days: [{ days: "1-365", window: { startHour: 0, endHour: 24 }, actions: all }] }));
  await rejectsWith(loadScenarios(dir), [`${huge}: days: the plan may hold up to 2920000 actions (every day's largest counts added up), more than the limit of ${MAX_PLANNED_ACTIONS} per task; lower the counts or the number of days`]);
  // Ranges count at their upper end: 50 days of "0-1000" is 50,000 (at the limit), one more day passes it.
  const at = { id: "huge", totalDays: 50, days: [{ days: "1-50", window: { startHour: 0, endHour: 24 }, actions: { like_post: "0-1000" } }] };
  await writeFile(huge, JSON.stringify(at));
  assert.equal((await loadScenarios(dir)).get("huge")!.totalDays, 50);
  await writeFile(huge, JSON.stringify({ ...at, totalDays: 51, days: [{ ...at.days[0], days: "1-51" }] }));
  await rejectsWith(loadScenarios(dir), [`${huge}: days: the plan may hold up to 51000 actions`]);
});

test("the built-ins plan far below MAX_PLANNED_ACTIONS", () => {
  for (const s of builtinScenarios().values()) {
    const most = s.days.reduce((n, d) => n + (d.to - d.from + 1) * Object.values(d.actions).reduce<number>((m, c) => m + countRange(c!)!.max, 0), 0);
    assert.ok(most * 30 < MAX_PLANNED_ACTIONS, `${s.id}: ${most}`);
  }
});

test("loadScenarios: a built-in id needs override: true; override on a new id, and duplicate ids, are rejected", async (t) => {
  const dir = await tempDir(t);
  const basic = join(dir, "basic.json");
  await writeFile(basic, JSON.stringify({ ...spec(), id: "basic" }));
  await rejectsWith(loadScenarios(dir), [`${basic}: id: "basic" is a built-in scenario; choose another id, or add override: true to replace the built-in`]);

  await writeFile(basic, JSON.stringify({ ...spec(), id: "basic", override: true }));
  const replaced = (await loadScenarios(dir)).get("basic")!;
  assert.equal(replaced.totalDays, 5);
  assert.equal(replaced.source, basic);

  await writeFile(join(dir, "typo.json"), JSON.stringify({ ...spec(), id: "basik", override: true }));
  await writeFile(join(dir, "z1.json"), JSON.stringify({ ...spec(), id: "dup" }));
  await writeFile(join(dir, "z2.yaml"), JSON.stringify({ ...spec(), id: "dup" })); // JSON is YAML too
  await rejectsWith(loadScenarios(dir), [
    `${join(dir, "typo.json")}: override: true but "basik" is not a built-in (basic, gentle, intensive); remove override or fix the id`,
    `${join(dir, "z2.yaml")}: id: "dup" is already defined by ${join(dir, "z1.json")}; give one of them another id`,
  ]);
});

test("loadScenarios: a missing directory is named with the variable and the fix", async () => {
  await rejectsWith(loadScenarios("/nonexistent/conveer-scenarios"), [`CONVEER_SCENARIOS_DIR: cannot read "/nonexistent/conveer-scenarios" (ENOENT); create the directory or unset the variable`]);
});

test("getScenario: empty id is the default; unknown ids are INVALID_ARGUMENT listing the known ones", () => {
  const all = builtinScenarios();
  assert.equal(getScenario(all, "").id, "basic");
  assert.equal(getScenario(all, undefined).id, "basic");
  assert.equal(getScenario(all, "gentle").id, "gentle");
  assert.throws(() => getScenario(all, "nope"), (err: unknown) => err instanceof AppError && err.code === "INVALID_ARGUMENT" && /scenario_id "nope" is unknown; use one of basic, gentle, intensive/.test(err.message));
});

async function rejectsWith(p: Promise<unknown>, expected: string[]): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ScenarioError, String(err));
    for (const e of expected) assert.ok(err.problems.some((x) => x.startsWith(e)), `expected ${JSON.stringify(e)} in\n${err.problems.join("\n")}`);
    assert.equal(err.problems.length, expected.length, err.problems.join("\n"));
    return true;
  });
}
