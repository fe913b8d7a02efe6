import { useEffect, useState } from "react";

/** A select filter; "" is "all". */
export function SelectFilter(props: { label: string; value: string; options: readonly string[]; set(value: string): void }) {
  return (
    <label>
      {props.label}
      <select value={props.value} onChange={(e) => props.set(e.target.value)}>
        <option value="">all</option>
        {props.options.map((o) => (
          <option key={o}>{o}</option>
        ))}
      </select>
    </label>
  );
}

/** A text filter, applied on Enter or when it loses focus. */
export function TextFilter(props: { label: string; name: string; value: string; set(value: string): void }) {
  const [text, setText] = useState(props.value);
  // The URL can change under the field (a link, Back): show what it now filters by.
  useEffect(() => setText(props.value), [props.value]);
  const apply = () => text.trim() !== props.value && props.set(text.trim());
  return (
    <label>
      {props.label}
      <input name={props.name} value={text} onChange={(e) => setText(e.target.value)} onBlur={apply} onKeyDown={(e) => e.key === "Enter" && apply()} />
    </label>
  );
}

/** A day filter (a UTC date, YYYY-MM-DD); "" is unbounded. */
export function DateFilter(props: { label: string; value: string; set(value: string): void }) {
  return (
    <label>
      {props.label}
      <input type="date" value={props.value} onChange={(e) => props.set(e.target.value)} />
    </label>
  );
}

/** The start of a UTC day given as YYYY-MM-DD, plus `days`; undefined when the text is no such day. */
export function utcDay(text: string, days = 0): Date | undefined {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(text)) return undefined;
  const t = Date.parse(`${text}T00:00:00Z`);
  return Number.isNaN(t) ? undefined : new Date(t + days * 86_400_000);
}

/** An enum's value from its short name in the URL ("BANNED"); 0 (UNSPECIFIED: all) when unknown. */
export function enumFromName<E extends number>(e: Record<string, string | number>, name: string): E {
  const v = e[name];
  return (typeof v === "number" ? v : 0) as E;
}
