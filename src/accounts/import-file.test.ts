import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readAccountImportFile } from "./import-file.ts";
import { MAX_LINE_CHARS, readLines } from "../import/line-reader.ts";
import type { ParsedLine } from "./import-file.ts";

async function withFile(t: { after: (fn: () => Promise<void>) => void }, name: string, content: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "conveer-import-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

async function collect(path: string, opts?: { format?: "csv" | "jsonl" }): Promise<ParsedLine[]> {
  const out: ParsedLine[] = [];
  for await (const p of readAccountImportFile(path, opts)) out.push(p);
  return out;
}

const summary = (ps: ParsedLine[]) => ps.map((p) => (p.item ? `${p.line}:ok:${p.item.login}` : `${p.line}:err`));

test("csv: good lines become items with additional, labels and status", async (t) => {
  const path = await withFile(
    t,
    "a.csv",
    [
      "platform,login,password,phone,status,additional.token,label.team",
      "vk,user1,secret,+79991234567,ACTIVE,tok1,red",
      "Telegram, user2 , pass with spaces ,,,,",
      "mail,user3,p,+7 (999) 123-45-67,account_status_warming,,blue",
    ].join("\n") + "\n",
  );
  const got = await collect(path);
  assert.deepEqual(got, [
    {
      line: 2,
      item: { platform: "vk", login: "user1", password: "secret", phone: "+79991234567", additional: { token: "tok1" }, labels: { team: "red" }, status: "ACCOUNT_STATUS_ACTIVE" },
    },
    { line: 3, item: { platform: "telegram", login: "user2", password: " pass with spaces ", phone: "", additional: {}, labels: {}, status: "" } },
    { line: 4, item: { platform: "mail", login: "user3", password: "p", phone: "+79991234567", additional: {}, labels: { team: "blue" }, status: "ACCOUNT_STATUS_WARMING" } },
  ]);
});

test("csv: bad lines are reported with line, field and fix; later lines still come", async (t) => {
  const path = await withFile(
    t,
    "a.csv",
    [
      "platform,login,password,phone", // 1
      "vk,a,p,", // 2 ok
      "", // 3 blank, skipped
      "vkk,b,p,", // 4 bad platform
      "max,,p,", // 5 empty login
      "max,c,,", // 6 empty password
      "max,d,p,89991234567", // 7 bad phone
      "max,e,p", // 8 too few fields
      "max,f,p,,extra", // 9 too many fields
      "vkk,,,123", // 10 several problems
      "max,g,p,", // 11 ok
    ].join("\r\n"),
  );
  const got = await collect(path);
  assert.deepEqual(summary(got), ["2:ok:a", "4:err", "5:err", "6:err", "7:err", "8:err", "9:err", "10:err", "11:ok:g"]);
  const err = (line: number) => got.find((p) => p.line === line)!.error!;
  assert.equal(err(4), 'line 4: platform "vkk" is not one of vk, telegram, mail, max');
  assert.match(err(5), /^line 5: login is empty/);
  assert.match(err(6), /^line 6: password is empty/);
  assert.match(err(7), /^line 7: phone "89991234567" is not in E\.164 form; .*\+79991234567/);
  assert.match(err(8), /^line 8: has 3 fields but the header has 4 columns/);
  assert.match(err(9), /^line 9: has 5 fields but the header has 4 columns/);
  assert.match(err(10), /platform "vkk".*login is empty.*password is empty.*phone "123"/);
});

test("csv: quoted fields, including commas, quotes and line breaks, keep accurate line numbers", async (t) => {
  const path = await withFile(
    t,
    "a.csv",
    [
      "platform,login,password,additional.note", // 1
      'vk,a,"pa,ss","say ""hi"""', // 2
      'vk,b,p,"two', // 3 (record spans 3-4)
      'lines"', // 4
      "vk,c,p,", // 5
    ].join("\n"),
  );
  const got = await collect(path);
  assert.deepEqual(summary(got), ["2:ok:a", "3:ok:b", "5:ok:c"]);
  assert.equal(got[0].item!.password, "pa,ss");
  assert.deepEqual(got[0].item!.additional, { note: 'say "hi"' });
  assert.deepEqual(got[1].item!.additional, { note: "two\nlines" });
});

test("csv: a malformed row is an error for that line only, even an unclosed quote", async (t) => {
  const path = await withFile(
    t,
    "a.csv",
    [
      "platform,login,password", // 1
      'vk,a,"x"y', // 2 characters after closing quote
      "vk,b,p", // 3 ok
      'vk,c,pa"ss', // 4 quote inside unquoted field
      "vk,d,p", // 5 ok
      'vk,e,"never closed', // 6 unclosed quote
      "vk,f,p", // 7 ok
      "vk,g,p", // 8 ok
    ].join("\n"),
  );
  const got = await collect(path);
  assert.deepEqual(summary(got), ["2:err", "3:ok:b", "4:err", "5:ok:d", "6:err", "7:ok:f", "8:ok:g"]);
  for (const p of got.filter((p) => p.error)) {
    assert.match(p.error!, new RegExp(`^line ${p.line}: malformed CSV: .*; quote a field`));
  }
  assert.match(got[4].error!, /never closed/);
});

test("csv: an unclosed quote whose record later closes badly does not swallow the lines in between", async (t) => {
  const path = await withFile(t, "a.csv", ["platform,login,password", 'vk,a,"open', "vk,b,p", 'vk,c,"x"y', "vk,d,p"].join("\n"));
  assert.deepEqual(summary(await collect(path)), ["2:err", "3:ok:b", "4:err", "5:ok:d"]);
});

test("csv: header problems are one error naming the columns", async (t) => {
  const unknown = await withFile(t, "a.csv", "platform,login,password,colour,nick\nvk,a,p,red,x\n");
  const got = await collect(unknown);
  assert.equal(got.length, 1);
  assert.match(got[0].error!, /^line 1: unknown columns "colour", "nick"; the first line must be a header naming the columns: platform,login,password/);

  const missing = await withFile(t, "b.csv", "platform,login\nvk,a\n");
  assert.match((await collect(missing))[0].error!, /^line 1: missing column password/);

  const noHeader = await withFile(t, "c.csv", "vk,user,hunter2\n");
  const e = (await collect(noHeader))[0].error!;
  assert.match(e, /looks like data, not a header/);
  assert.ok(!e.includes("hunter2"), "a password must not be echoed");

  const dup = await withFile(t, "d.csv", "platform,login,password,label.x,label.x\n");
  assert.match((await collect(dup))[0].error!, /duplicate column "label.x"/);
});

test("csv: status validation", async (t) => {
  const path = await withFile(t, "a.csv", "platform,login,password,status\nvk,a,p,banned\nvk,b,p,ACTIV\nvk,c,p,DELETED\n");
  const got = await collect(path);
  assert.equal(got[0].item!.status, "ACCOUNT_STATUS_BANNED");
  assert.match(got[1].error!, /^line 3: status "ACTIV" is not one of ACTIVE, WARMING, BANNED, SUSPENDED, CREATING/);
  assert.match(got[2].error!, /^line 4: status "DELETED" cannot be imported/);
});

test("jsonl: good and bad lines mixed; malformed JSON is an error for that line only", async (t) => {
  const path = await withFile(
    t,
    "a.jsonl",
    [
      JSON.stringify({ platform: "vk", login: "a", password: "p", phone: "+79991234567", additional: { token: "t", n: 5 }, labels: { team: "red" }, status: "ACTIVE" }), // 1
      "{not json", // 2
      "", // 3
      JSON.stringify({ platform: "max", login: "b", password: "p", extra: 1, more: 2 }), // 4 unknown fields
      "[1,2]", // 5 not an object
      JSON.stringify({ platform: "mail", login: 42, password: "p", phone: 79991234567 }), // 6 wrong types
      JSON.stringify({ platform: "telegram", login: "c", password: "p", additional: "x" }), // 7 bad additional
      JSON.stringify({ platform: "vkk", login: "d", password: "p" }), // 8 bad platform
      JSON.stringify({ platform: "telegram", login: "e", password: "p", phone: null, labels: null }), // 9 ok
    ].join("\n"),
  );
  const got = await collect(path);
  assert.deepEqual(summary(got), ["1:ok:a", "2:err", "4:err", "5:err", "6:err", "7:err", "8:err", "9:ok:e"]);
  assert.deepEqual(got[0].item, {
    platform: "vk",
    login: "a",
    password: "p",
    phone: "+79991234567",
    additional: { token: "t", n: "5" },
    labels: { team: "red" },
    status: "ACCOUNT_STATUS_ACTIVE",
  });
  const err = (line: number) => got.find((p) => p.line === line)!.error!;
  assert.match(err(2), /^line 2: not valid JSON .*; each line must be one object like/);
  assert.match(err(4), /^line 4: unknown fields "extra", "more"; the fields are platform, login, password/);
  assert.match(err(5), /^line 5: expected a JSON object, got array/);
  assert.equal(err(6), "line 6: login must be a string, got number; put it in quotes; phone must be a string, got number; put it in quotes");
  assert.match(err(7), /^line 7: additional must be an object of strings/);
  assert.equal(err(8), 'line 8: platform "vkk" is not one of vk, telegram, mail, max');
});

test("format: explicit option wins; unknown extensions are sniffed", async (t) => {
  const jsonl = JSON.stringify({ platform: "vk", login: "a", password: "p" }) + "\n";
  const csv = "platform,login,password\nvk,b,p\n";
  assert.deepEqual(summary(await collect(await withFile(t, "x.txt", "\n" + jsonl))), ["2:ok:a"]);
  assert.deepEqual(summary(await collect(await withFile(t, "y.txt", csv))), ["2:ok:b"]);
  assert.deepEqual(summary(await collect(await withFile(t, "z.data", jsonl), { format: "jsonl" })), ["1:ok:a"]);
  assert.deepEqual(summary(await collect(await withFile(t, "w.ndjson", jsonl))), ["1:ok:a"]);
});

test("a UTF-8 BOM and CRLF line endings are handled", async (t) => {
  const path = await withFile(t, "a.csv", "\uFEFFplatform,login,password\r\nvk,a,p\r\n");
  assert.deepEqual(summary(await collect(path)), ["2:ok:a"]);
});

test("readLines: cuts off an over-long line without buffering it and carries on", async (t) => {
  const path = await withFile(t, "a.txt", "first\n" + "x".repeat(300_000) + "\nlast");
  const lines = [];
  for await (const l of readLines(path, 100_000)) lines.push(l);
  assert.deepEqual(lines, [
    { line: 1, text: "first" },
    { line: 2, text: "", tooLong: true },
    { line: 3, text: "last" },
  ]);
  assert.ok(MAX_LINE_CHARS >= 100_000);
});

test("streams a large file line by line", async (t) => {
  const n = 50_000;
  const rows = ["platform,login,password,phone"];
  for (let i = 0; i < n; i++) rows.push(i % 1000 === 7 ? `bad,u${i},p,` : `vk,u${i},p${i},+7999${String(i).padStart(7, "0")}`);
  const path = await withFile(t, "big.csv", rows.join("\n") + "\n");
  let ok = 0;
  let bad = 0;
  let lastLine = 0;
  for await (const p of readAccountImportFile(path)) {
    assert.ok(p.line > lastLine);
    lastLine = p.line;
    if (p.item) ok++;
    else bad++;
  }
  assert.equal(ok + bad, n);
  assert.equal(bad, n / 1000);
  assert.equal(lastLine, n + 1);
});

test("stopping early closes the file", async (t) => {
  const path = await withFile(t, "a.csv", "platform,login,password\nvk,a,p\nvk,b,p\n");
  for await (const p of readAccountImportFile(path)) {
    assert.equal(p.line, 2);
    break;
  }
});
