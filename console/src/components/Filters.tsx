import { useState } from "react";

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
  const apply = () => text.trim() !== props.value && props.set(text.trim());
  return (
    <label>
      {props.label}
      <input name={props.name} value={text} onChange={(e) => setText(e.target.value)} onBlur={apply} onKeyDown={(e) => e.key === "Enter" && apply()} />
    </label>
  );
}

/** An enum's value from its short name in the URL ("BANNED"); 0 (UNSPECIFIED: all) when unknown. */
export function enumFromName<E extends number>(e: Record<string, string | number>, name: string): E {
  const v = e[name];
  return (typeof v === "number" ? v : 0) as E;
}
