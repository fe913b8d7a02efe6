import { useState } from "react";
import { useMutation } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { AccountService } from "../../../src/gen/conveer/v1/account_pb.js";
import { ActionButton } from "../components/ActionButton.tsx";
import { ErrorBox, LineResults } from "../components/Feedback.tsx";

/** At most this many a call (ImportAccountsRequest). */
const MAX = 1000;

/** `key=value, …` as a map (entries without "=" are skipped). */
export function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(",")) {
    const i = part.indexOf("=");
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

/** One pasted line, `platform,login,password[,phone]`, as an ImportAccounts item (the server checks it). */
function item(line: string, labels: Record<string, string>) {
  const [platform = "", login = "", password = "", phone = ""] = line.split(",").map((x) => x.trim());
  return { platform, login, password, phone, labels };
}

/** Import accounts by pasting lines; each refused line listed with the server's reason (its password never shown). */
export function ImportAccounts() {
  const client = useQueryClient();
  const [text, setText] = useState("");
  const [labels, setLabels] = useState("");
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  const m = useMutation(AccountService.method.importAccounts, { onSuccess: () => (setText(""), void client.invalidateQueries()) });
  return (
    <details className="card add">
      <summary>Import accounts</summary>
      <form
        className="action-form"
        aria-label="Import accounts"
        onSubmit={(e) => {
          e.preventDefault();
          const l = parseLabels(labels);
          m.mutate({ accounts: lines.map((x) => item(x, l)) });
        }}
      >
        <label className="grow">
          Accounts to import, one a line
          <textarea rows={4} value={text} onChange={(e) => setText(e.target.value)} autoComplete="off" spellCheck={false} aria-describedby="import-format" />
        </label>
        <small id="import-format">Each line: platform,login,password[,phone] (vk, telegram, mail or max)</small>
        <label>
          Labels for all (key=value, …)
          <input value={labels} onChange={(e) => setLabels(e.target.value)} />
        </label>
        <ActionButton scope="accounts:write" type="submit" disabled={lines.length === 0 || lines.length > MAX || m.isPending}>
          Import {lines.length || ""}
        </ActionButton>
        {lines.length > MAX ? <small role="alert">At most {MAX} a time.</small> : null}
      </form>
      {m.isError ? <ErrorBox error={m.error} /> : null}
      {m.data ? (
        <LineResults
          summary={`${m.data.imported} imported, ${m.data.failed} refused.`}
          results={m.data.results}
          shown={m.variables?.accounts?.map((a) => `${a.platform},${a.login}`) ?? []}
        />
      ) : null}
    </details>
  );
}
