import { useState } from "react";
import { useMutation } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { AccountService } from "../../../src/gen/conveer/v1/account_pb.js";
import { LineResults } from "../components/Feedback.tsx";
import { PasteForm } from "../components/PasteForm.tsx";

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
  const [labels, setLabels] = useState("");
  const m = useMutation(AccountService.method.importAccounts, { onSuccess: () => void client.invalidateQueries() });
  return (
    <PasteForm
      title="Import accounts"
      label="Accounts to import, one a line"
      format="Each line: platform,login,password[,phone] (vk, telegram, mail or max)"
      verb="Import"
      scope="accounts:write"
      fields={
        <label>
          Labels for all (key=value, …)
          <input value={labels} onChange={(e) => setLabels(e.target.value)} />
        </label>
      }
      pending={m.isPending}
      error={m.error}
      send={(lines, sent) => {
        const l = parseLabels(labels);
        m.mutate({ accounts: lines.map((x) => item(x, l)) }, { onSuccess: sent });
      }}
    >
      {m.data ? (
        <LineResults
          summary={`${m.data.imported} imported, ${m.data.failed} refused.`}
          results={m.data.results}
          shown={m.variables?.accounts?.map((a) => `${a.platform},${a.login}`) ?? []}
        />
      ) : null}
    </PasteForm>
  );
}
