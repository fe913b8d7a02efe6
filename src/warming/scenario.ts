import { readdir, readFile } from "node:fs/promises";
import { extname, join } from "node:path";
import { parseDocument } from "yaml";
import { ACTION_KINDS } from "../platforms/driver.ts";
import type { ActionKind } from "../platforms/driver.ts";
import { AppError, badRequest, quote } from "../errors.ts";

/**
 * Warming scenarios are data: which actions an account does on which day of its warming, and in
 * which hours. This module validates them (every problem names the source, the field and the fix),
 * holds the built-ins and loads operator files. No clock, no database.
 *
 * Operator files (`*.yaml`, `*.yml`, `*.json` in CONVEER_SCENARIOS_DIR) add scenarios. A file whose
 * id is a built-in's is rejected unless it says `override: true`, so a stray `basic.yaml` cannot
 * silently change the default; `override: true` on an id that is not a built-in is rejected too (a
 * typo there would otherwise go unnoticed).
 */

/** The scenario StartWarming uses when scenario_id is empty. */
export const DEFAULT_SCENARIO_ID = "basic";
/** The longest warming, in days (scenario totalDays and the duration_days override). */
export const MAX_DAYS = 365;
/** The most actions of one kind a scenario may ask for on one day. */
export const MAX_COUNT_PER_DAY = 1000;
/**
 * The most actions one task's plan may hold: counted with every range at its upper end, at load
 * for a scenario's own totalDays and at StartWarming for its duration_days. Why 50,000: StartWarming
 * writes the whole plan (one row per action), and this is the size it writes in about a second on
 * PGlite while other calls go on (bench/big-plan.ts), ~13 MB of rows and indexes; it is 40 times
 * the largest built-in (intensive plans at most 1,238) and 137 actions every day of the longest
 * (365-day) warming, far beyond anything that reads as one person's activity. 365 days × 8 kinds × 1,000 (2.9 million rows) took 36 s
 * and 1.6 GB and stalled the server.
 */
export const MAX_PLANNED_ACTIONS = 50_000;

/** A count as written: an exact number, or "min-max" (both ends included). */
export type Count = number | string;

/** Active hours of a day, UTC: actions are planned in [startHour, endHour). 0 ≤ startHour < endHour ≤ 24. */
export type ActiveWindow = { startHour: number; endHour: number };

/** One entry of a scenario's day plan; `from`/`to` are the parsed `days` ("3" or "2-5"). */
export type ScenarioDay = {
  days: string;
  from: number;
  to: number;
  window: ActiveWindow;
  actions: Partial<Record<ActionKind, Count>>;
};

/** A validated scenario: every day 1..totalDays is covered by exactly one entry of `days` (sorted). */
export type Scenario = {
  id: string;
  name: string;
  description: string;
  totalDays: number;
  days: ScenarioDay[];
  /** Where it came from: "builtin" or the file path. */
  source: string;
};

/** The input shape of a scenario (a file or a built-in), before validation. */
export type ScenarioSpec = {
  id: string;
  name?: string;
  description?: string;
  totalDays: number;
  days: { days: string | number; window: ActiveWindow; actions: Partial<Record<ActionKind, Count>> }[];
  /** Operator files only: replace the built-in with the same id. */
  override?: boolean;
};

/** A scenario (or scenario file) that failed validation; `problems` lists every one, each naming source, field and fix. */
export class ScenarioError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.length === 1 ? problems[0] : `${problems.length} problems with warming scenarios:\n  ${problems.join("\n  ")}`);
    this.name = "ScenarioError";
    this.problems = problems;
  }
}

const TOP_FIELDS = ["id", "name", "description", "totalDays", "days", "override"];
const DAY_FIELDS = ["days", "window", "actions"];
const WINDOW_FIELDS = ["startHour", "endHour"];
const ID_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** Parses a count ("5", 5 or "2-5") into its bounds; undefined when it is not a valid count. */
export function countRange(count: Count): { min: number; max: number } | undefined {
  if (typeof count === "number") return Number.isInteger(count) && count >= 0 ? { min: count, max: count } : undefined;
  if (typeof count !== "string") return undefined;
  const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(count);
  if (!m) return undefined;
  const min = Number(m[1]);
  const max = m[2] === undefined ? min : Number(m[2]);
  return min <= max ? { min, max } : undefined;
}

/** Validates a scenario object (parsed YAML/JSON or a built-in); throws ScenarioError listing every problem, prefixed with `source`. */
export function parseScenario(obj: unknown, source: string): Scenario {
  const problems: string[] = [];
  const bad = (path: string, problem: string) => problems.push(`${source}: ${path ? `${path}: ` : ""}${problem}`);

  if (!isRecord(obj)) {
    bad("", `a scenario file holds one mapping with id, name, description, totalDays and days; got ${kindOf(obj)}`);
    throw new ScenarioError(problems);
  }
  unknownFields(obj, TOP_FIELDS, "", bad);

  const id = obj.id;
  if (typeof id !== "string" || !ID_RE.test(id)) {
    bad("id", `${show(id)} is not a scenario id; use lowercase letters, digits, "-" and "_" (e.g. id: fast)`);
  }
  const name = obj.name ?? id;
  if (typeof name !== "string") bad("name", `${show(name)} is not text; write a short title, e.g. name: Fast warming`);
  const description = obj.description ?? "";
  if (typeof description !== "string") bad("description", `${show(description)} is not text; write a sentence or leave it out`);
  if (obj.override !== undefined && typeof obj.override !== "boolean") bad("override", `${show(obj.override)} is not true or false; write override: true to replace a built-in`);

  const totalDays = obj.totalDays;
  const totalOk = typeof totalDays === "number" && Number.isInteger(totalDays) && totalDays >= 1 && totalDays <= MAX_DAYS;
  if (!totalOk) bad("totalDays", `${show(totalDays)} is not a number of days; write a whole number from 1 to ${MAX_DAYS}`);

  const days: (ScenarioDay | undefined)[] = []; // undefined: an entry with problems
  const ranges: (DayRange | undefined)[] = []; // per entry, aligned with days[i] for messages
  if (!Array.isArray(obj.days) || obj.days.length === 0) {
    bad("days", `${obj.days === undefined ? "is missing" : `${show(obj.days)} is not a list of day entries`}; write a list like days: [{ days: "1-3", window: { startHour: 9, endHour: 21 }, actions: { view_profile: "3-5" } }]`);
  } else {
    obj.days.forEach((entry: unknown, i: number) => {
      const { day, range } = parseDay(entry, `days[${i}]`, totalOk ? (totalDays as number) : MAX_DAYS, bad);
      days.push(day);
      ranges.push(range);
    });
    if (totalOk) coverage(ranges, totalDays as number, bad);
  }
  if (problems.length === 0) {
    const most = (days as ScenarioDay[]).reduce((n, d) => n + (d.to - d.from + 1) * mostPerDay(d), 0);
    if (most > MAX_PLANNED_ACTIONS) {
      bad("days", `the plan may hold up to ${most} actions (every day's largest counts added up), more than the limit of ${MAX_PLANNED_ACTIONS} per task; lower the counts or the number of days`);
    }
  }

  if (problems.length > 0) throw new ScenarioError(problems);
  return {
    id: id as string,
    name: name as string,
    description: description as string,
    totalDays: totalDays as number,
    days: (days as ScenarioDay[]).slice().sort((a, b) => a.from - b.from),
    source,
  };
}

/** The most actions a day of this entry may plan: every count at the upper end of its range. */
export function mostPerDay(entry: ScenarioDay): number {
  let n = 0;
  for (const c of Object.values(entry.actions)) n += countRange(c as Count)?.max ?? 0;
  return n;
}

// The entry (undefined when it has problems) and its day range (undefined when `days` itself is bad).
function parseDay(entry: unknown, path: string, totalDays: number, bad: (path: string, problem: string) => void): { day?: ScenarioDay; range?: DayRange } {
  if (!isRecord(entry)) {
    bad(path, `${show(entry)} is not a day entry; write { days: "1-3", window: { startHour: 9, endHour: 21 }, actions: { ... } }`);
    return {};
  }
  let ok = true;
  const fail = (p: string, problem: string) => {
    ok = false;
    bad(p, problem);
  };
  unknownFields(entry, DAY_FIELDS, path, fail);

  // days: "3", 3 or "2-5", within 1..totalDays.
  let from = 0;
  let to = 0;
  let daysText = "";
  let rangeOk = false;
  const d = entry.days;
  const m = typeof d === "number" ? (Number.isInteger(d) ? [String(d), String(d)] : null) : typeof d === "string" ? /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(d)?.slice(1) : null;
  if (!m) {
    fail(`${path}.days`, `${d === undefined ? "is missing" : `${show(d)} is not a day or range`}; write a day like "3" or a range like "2-5"`);
  } else {
    from = Number(m[0]);
    to = m[1] === undefined ? from : Number(m[1]);
    if (from > to) fail(`${path}.days`, `${show(d)} is not a day or range; write "${to}-${from}"`);
    else if (from < 1) fail(`${path}.days`, `${show(d)}: days count from 1; write "1${to > 1 ? `-${to}` : ""}"`);
    else if (to > totalDays) fail(`${path}.days`, `${show(d)} goes past totalDays (${totalDays}); end the range at ${totalDays} or raise totalDays`);
    else rangeOk = true;
    daysText = from === to ? String(from) : `${from}-${to}`;
  }

  // window: { startHour, endHour }, 0 ≤ start < end ≤ 24.
  const w = entry.window;
  let window: ActiveWindow = { startHour: 0, endHour: 24 };
  if (!isRecord(w)) {
    fail(`${path}.window`, `${w === undefined ? "is missing" : `${show(w)} is not a window`}; write window: { startHour: 9, endHour: 21 } (UTC hours, 0-24)`);
  } else {
    unknownFields(w, WINDOW_FIELDS, `${path}.window`, fail);
    const hour = (key: "startHour" | "endHour") => {
      const v = w[key];
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > 24) {
        fail(`${path}.window.${key}`, `${v === undefined ? "is missing" : `${show(v)} is not an hour`}; write an hour from 0 to 24 (UTC; fractions like 9.5 allowed)`);
        return undefined;
      }
      return v;
    };
    const s = hour("startHour");
    const e = hour("endHour");
    if (s !== undefined && e !== undefined) {
      if (s > e) fail(`${path}.window`, `startHour ${s} is after endHour ${e}; a window cannot cross midnight UTC, write startHour: ${e}, endHour: ${s}`);
      else if (s === e) fail(`${path}.window`, `startHour and endHour are both ${s}, an empty window; make endHour later, e.g. startHour: ${Math.min(s, 23)}, endHour: ${Math.min(s, 23) + 1}`);
      else window = { startHour: s, endHour: e };
    }
  }

  // actions: { kind: count }.
  const a = entry.actions ?? {};
  const actions: Partial<Record<ActionKind, Count>> = {};
  if (!isRecord(a)) {
    fail(`${path}.actions`, `${show(a)} is not a mapping of action kinds to counts; write actions: { view_profile: "3-5", like_post: 2 }`);
  } else {
    for (const [kind, count] of Object.entries(a)) {
      const p = `${path}.actions.${kind}`;
      if (!(ACTION_KINDS as readonly string[]).includes(kind)) {
        const near = nearest(kind, ACTION_KINDS);
        fail(p, `unknown action kind; ${near ? `did you mean ${near}? ` : ""}use one of ${ACTION_KINDS.join(", ")}`);
        continue;
      }
      const problem = countProblem(count);
      if (problem) fail(p, problem);
      else actions[kind as ActionKind] = typeof count === "string" ? canonicalCount(count) : (count as number);
    }
  }
  const range = rangeOk ? { from, to, text: daysText } : undefined;
  return { day: ok ? { days: daysText, from, to, window, actions } : undefined, range };
}

function countProblem(count: unknown): string | undefined {
  if (typeof count === "number") {
    if (!Number.isInteger(count)) return `${count} is not a whole number; write ${Math.max(0, Math.round(count))} or a range like "${Math.max(0, Math.floor(count))}-${Math.max(0, Math.ceil(count))}"`;
    if (count < 0) return `${count} is negative; counts are 0 or more (0 means none that day)`;
    if (count > MAX_COUNT_PER_DAY) return `${count} is more than ${MAX_COUNT_PER_DAY} a day; lower it`;
    return undefined;
  }
  if (typeof count === "string") {
    const m = /^\s*(-?\d+)\s*-\s*(-?\d+)\s*$/.exec(count) ?? /^\s*(-?\d+)\s*$/.exec(count);
    if (m) {
      const lo = Number(m[1]);
      const hi = m[2] === undefined ? lo : Number(m[2]);
      if (lo < 0 || hi < 0) return `${show(count)} has a negative count; counts are 0 or more`;
      if (lo > hi) return `${show(count)} is not a count or range; write "${hi}-${lo}"`;
      if (hi > MAX_COUNT_PER_DAY) return `${show(count)} is more than ${MAX_COUNT_PER_DAY} a day; lower it`;
      return undefined;
    }
  }
  return `${show(count)} is not a count or range; write a whole number like 3 or a range like "2-5"`;
}

function canonicalCount(count: string): Count {
  const r = countRange(count)!;
  return r.min === r.max ? r.min : `${r.min}-${r.max}`;
}

type DayRange = { from: number; to: number; text: string };

// Every day 1..totalDays in exactly one entry: report overlaps per pair and gaps as ranges.
function coverage(ranges: (DayRange | undefined)[], totalDays: number, bad: (path: string, problem: string) => void): void {
  const owner: number[] = new Array(totalDays + 1).fill(-1);
  ranges.forEach((d, i) => {
    if (!d) return;
    const clash = new Map<number, number[]>();
    for (let day = d.from; day <= Math.min(d.to, totalDays); day++) {
      if (owner[day] >= 0) {
        const list = clash.get(owner[day]) ?? [];
        list.push(day);
        clash.set(owner[day], list);
      } else owner[day] = i;
    }
    for (const [j, list] of clash) {
      bad(`days[${i}].days`, `"${d.text}" overlaps days[${j}] ("${ranges[j]!.text}") on ${rangeText(list[0], list[list.length - 1]).replace(/ (is|are)$/, "")}; each day belongs to exactly one entry, so move the range boundaries apart`);
    }
  });
  // Gaps are only meaningful when every range parsed; otherwise a bad range would show as a gap too.
  if (ranges.some((d) => !d)) return;
  for (let day = 1; day <= totalDays; day++) {
    if (owner[day] >= 0) continue;
    let end = day;
    while (end + 1 <= totalDays && owner[end + 1] < 0) end++;
    bad("days", `${rangeText(day, end)} not covered by any entry; add an entry with days: "${day === end ? day : `${day}-${end}`}" or widen a neighbouring range (every day 1-${totalDays} needs exactly one)`);
    day = end;
  }
}

function rangeText(a: number, b: number): string {
  return a === b ? `day ${a} is` : `days ${a}-${b} are`;
}

function unknownFields(obj: Record<string, unknown>, known: string[], path: string, bad: (path: string, problem: string) => void): void {
  for (const key of Object.keys(obj)) {
    if (known.includes(key)) continue;
    const near = nearest(key, known);
    bad(path ? `${path}.${key}` : key, `unknown field; ${near ? `did you mean ${near}? ` : ""}the fields here are ${known.join(", ")}`);
  }
}

// The closest candidate by edit distance (case-insensitive), when close enough to be a typo.
function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  if (bestD <= Math.max(2, Math.floor(word.length / 3))) return best;
  const containing = word.length >= 3 ? candidates.filter((c) => c.toLowerCase().includes(word.toLowerCase())) : [];
  return containing.length === 1 ? containing[0] : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function kindOf(v: unknown): string {
  if (Array.isArray(v)) return "a list";
  if (v === null || v === undefined) return "nothing (an empty file?)";
  return `${typeof v} ${show(v)}`;
}

function show(v: unknown): string {
  if (v === undefined) return "(missing)";
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** The built-in scenarios as specs; `basic` is the default. */
export const BUILTIN_SPECS: readonly ScenarioSpec[] = [
  {
    id: "basic",
    name: "Basic",
    description: "Two weeks: browsing first, then likes and subscriptions, light social activity in the second week.",
    totalDays: 14,
    days: [
      { days: "1-2", window: { startHour: 10, endHour: 20 }, actions: { view_profile: "3-6", view_stories: "2-4" } },
      { days: "3-5", window: { startHour: 10, endHour: 21 }, actions: { view_profile: "5-10", view_stories: "3-6", like_post: "2-5" } },
      { days: "6-9", window: { startHour: 9, endHour: 21 }, actions: { view_profile: "8-14", view_stories: "4-8", like_post: "5-10", subscribe: "1-2", add_friend: "0-2" } },
      {
        days: "10-14",
        window: { startHour: 9, endHour: 22 },
        actions: { view_profile: "10-18", view_stories: "5-10", like_post: "8-15", subscribe: "1-3", add_friend: "1-3", repost: "0-2", comment: "0-2", send_message: "0-1" },
      },
    ],
  },
  {
    id: "gentle",
    name: "Gentle",
    description: "One quiet week: mostly browsing in the afternoon, a few likes from day 4.",
    totalDays: 7,
    days: [
      { days: "1-3", window: { startHour: 12, endHour: 19 }, actions: { view_profile: "2-4", view_stories: "1-3" } },
      { days: "4-5", window: { startHour: 11, endHour: 20 }, actions: { view_profile: "3-6", view_stories: "2-4", like_post: "1-3" } },
      { days: "6-7", window: { startHour: 11, endHour: 20 }, actions: { view_profile: "4-8", view_stories: "2-5", like_post: "2-4", subscribe: "0-1" } },
    ],
  },
  {
    id: "intensive",
    name: "Intensive",
    description: "Three weeks ramping to full social activity: messages, comments and reposts from the third week.",
    totalDays: 21,
    days: [
      { days: "1", window: { startHour: 10, endHour: 20 }, actions: { view_profile: 5, view_stories: 3 } },
      { days: "2-4", window: { startHour: 9, endHour: 21 }, actions: { view_profile: "8-12", view_stories: "4-6", like_post: "3-6" } },
      { days: "5-9", window: { startHour: 9, endHour: 22 }, actions: { view_profile: "12-18", view_stories: "6-10", like_post: "8-12", subscribe: "2-4", add_friend: "1-3" } },
      {
        days: "10-14",
        window: { startHour: 8, endHour: 22 },
        actions: { view_profile: "15-22", view_stories: "8-12", like_post: "12-18", subscribe: "2-5", add_friend: "2-4", repost: "1-3", comment: "1-3" },
      },
      {
        days: "15-21",
        window: { startHour: 8, endHour: 23 },
        actions: { view_profile: "18-25", view_stories: "10-15", like_post: "15-22", subscribe: "3-5", add_friend: "2-5", repost: "2-4", comment: "2-5", send_message: "1-3" },
      },
    ],
  },
];

/** The built-in scenarios, validated, by id. */
export function builtinScenarios(): Map<string, Scenario> {
  return new Map(BUILTIN_SPECS.map((spec) => [spec.id, parseScenario(structuredClone(spec), "builtin")]));
}

const FILE_EXTENSIONS = [".yaml", ".yml", ".json"];

/**
 * The built-ins plus every `*.yaml|*.yml|*.json` in `dir` (CONVEER_SCENARIOS_DIR; unset or empty: built-ins
 * only). Any bad file rejects the whole load with one ScenarioError listing every problem of every file.
 */
export async function loadScenarios(dir?: string): Promise<Map<string, Scenario>> {
  const scenarios = builtinScenarios();
  if (!dir) return scenarios;
  let names: string[];
  try {
    names = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile() && FILE_EXTENSIONS.includes(extname(e.name).toLowerCase())).map((e) => e.name);
  } catch (err) {
    throw new ScenarioError([`CONVEER_SCENARIOS_DIR: cannot read ${JSON.stringify(dir)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); create the directory or unset the variable`]);
  }
  names.sort();
  const problems: string[] = [];
  const fromFile = new Map<string, string>(); // id -> file, to report duplicates across files
  for (const name of names) {
    const path = join(dir, name);
    let obj: unknown;
    try {
      obj = parseFile(await readFile(path, "utf8"), path);
    } catch (err) {
      problems.push(...(err instanceof ScenarioError ? err.problems : [`${path}: cannot read it (${(err as Error).message})`]));
      continue;
    }
    let scenario: Scenario;
    try {
      scenario = parseScenario(obj, path);
    } catch (err) {
      if (!(err instanceof ScenarioError)) throw err;
      problems.push(...err.problems);
      continue;
    }
    const override = (obj as { override?: boolean }).override === true;
    const builtin = BUILTIN_SPECS.some((s) => s.id === scenario.id);
    const earlier = fromFile.get(scenario.id);
    if (earlier) {
      problems.push(`${path}: id: "${scenario.id}" is already defined by ${earlier}; give one of them another id`);
    } else if (builtin && !override) {
      problems.push(`${path}: id: "${scenario.id}" is a built-in scenario; choose another id, or add override: true to replace the built-in`);
    } else if (!builtin && override) {
      problems.push(`${path}: override: true but "${scenario.id}" is not a built-in (${BUILTIN_SPECS.map((s) => s.id).join(", ")}); remove override or fix the id`);
    } else {
      fromFile.set(scenario.id, path);
      scenarios.set(scenario.id, scenario);
    }
  }
  if (problems.length > 0) throw new ScenarioError(problems);
  return scenarios;
}

/** Parses one file's text by its extension (YAML or JSON); syntax errors become a ScenarioError naming the file. */
export function parseFile(text: string, path: string): unknown {
  if (extname(path).toLowerCase() === ".json") {
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new ScenarioError([`${path}: not valid JSON (${(err as Error).message}); fix the syntax, or write the scenario as YAML`]);
    }
  }
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    throw new ScenarioError(doc.errors.map((e) => `${path}: not valid YAML: ${e.message.split("\n")[0]}; fix the syntax there`));
  }
  return doc.toJS();
}

/** The scenario for StartWarming's scenario_id (empty: the default); INVALID_ARGUMENT naming the known ids when unknown. */
export function getScenario(scenarios: ReadonlyMap<string, Scenario>, id: string | undefined): Scenario {
  const key = id || DEFAULT_SCENARIO_ID;
  const s = scenarios.get(key);
  if (!s) throw new AppError("INVALID_ARGUMENT", `scenario_id ${quote(key)} is unknown; use one of ${[...scenarios.keys()].join(", ")} (or leave it empty for ${DEFAULT_SCENARIO_ID})`, { details: [badRequest("scenario_id", "is unknown")] });
  return s;
}
