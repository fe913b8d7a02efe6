import { useState } from "react";
import type { ReactNode } from "react";
import { ActionButton } from "./ActionButton.tsx";
import { ErrorBox } from "./Feedback.tsx";

/** At most this many items a call (ImportAccountsRequest, AddProxiesRequest). */
const MAX = 1000;

/**
 * A folded card whose form sends pasted lines, one item a line: the button counts them, more than
 * a call takes is refused before sending, and the text is cleared once the server has answered
 * (it may hold passwords); the answer (a LineResults) is `children`.
 */
export function PasteForm(props: {
  /** The card's summary and the form's accessible name: "Import accounts". */
  title: string;
  /** The textarea's label. */
  label: string;
  /** The line's format, under the textarea. */
  format: string;
  /** The button's verb: "Import" → "Import 3". */
  verb: string;
  scope: string;
  /** Fields that apply to every line. */
  fields?: ReactNode;
  pending: boolean;
  error: unknown;
  /** Sends the lines; calls `sent` once the server answered them. */
  send: (lines: string[], sent: () => void) => void;
  children?: ReactNode;
}) {
  const [text, setText] = useState("");
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  const formatId = `${props.title.replace(/\W+/g, "-").toLowerCase()}-format`;
  return (
    <details className="card add">
      <summary>{props.title}</summary>
      <form
        className="action-form"
        aria-label={props.title}
        onSubmit={(e) => {
          e.preventDefault();
          props.send(lines, () => setText(""));
        }}
      >
        <label className="grow">
          {props.label}
          <textarea rows={4} value={text} onChange={(e) => setText(e.target.value)} autoComplete="off" spellCheck={false} aria-describedby={formatId} />
        </label>
        <small id={formatId}>{props.format}</small>
        {props.fields}
        <ActionButton scope={props.scope} type="submit" disabled={lines.length === 0 || lines.length > MAX || props.pending}>
          {props.verb} {lines.length || ""}
        </ActionButton>
        {lines.length > MAX ? <small role="alert">At most {MAX} a time.</small> : null}
      </form>
      {props.error ? <ErrorBox error={props.error} /> : null}
      {props.children}
    </details>
  );
}
