import type { ReactNode } from "react";
import type { UseQueryResult } from "@tanstack/react-query";
import { describeError } from "../api/errors.ts";

/** The server's error, shown as it is, with its code. */
export function ErrorBox(props: { error: unknown; what?: string }) {
  const { code, message } = describeError(props.error);
  return (
    <div className="error" role="alert">
      {props.what ? <strong>{props.what}: </strong> : null}
      <span className="code">{code}</span> {message}
    </div>
  );
}

/** A loading line for screen readers and eyes. */
export function Loading(props: { what?: string }) {
  return (
    <p className="loading" role="status" aria-live="polite">
      Loading{props.what ? ` ${props.what}` : ""}…
    </p>
  );
}

/** An empty state, saying what would be here. */
export function Empty(props: { children: ReactNode }) {
  return <p className="empty">{props.children}</p>;
}

/** Renders a query's loading, error, empty or data state. */
export function QueryView<T>(props: {
  query: UseQueryResult<T, unknown>;
  what: string;
  isEmpty?: (data: T) => boolean;
  empty?: ReactNode;
  children: (data: T) => ReactNode;
}) {
  const q = props.query;
  if (q.isPending) return <Loading what={props.what} />;
  if (q.isError) return <ErrorBox error={q.error} what={`Cannot load ${props.what}`} />;
  if (props.isEmpty?.(q.data)) return <Empty>{props.empty ?? `No ${props.what}.`}</Empty>;
  return <>{props.children(q.data)}</>;
}

/**
 * What a paste of lines did: "N added, M refused.", then each refused line (as `shown` gives it:
 * never a secret) with the server's reason.
 */
export function LineResults(props: { summary: string; results: readonly { index: number; error: string }[]; shown: readonly string[] }) {
  const failed = props.results.filter((r) => r.error);
  return (
    <div role="status">
      <p>{props.summary}</p>
      {failed.length ? (
        <ul className="line-errors" aria-label="Refused lines">
          {failed.map((r) => (
            <li key={r.index}>
              line {r.index + 1} (<code>{props.shown[r.index]}</code>): {r.error}
            </li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}
