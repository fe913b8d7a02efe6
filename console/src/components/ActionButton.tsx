import type { ButtonHTMLAttributes } from "react";
import { useGate } from "../session/session.tsx";

/**
 * A button for an action that needs a scope: disabled, and saying which scope it needs, when the
 * token's scopes are known to lack it.
 */
export function ActionButton(props: ButtonHTMLAttributes<HTMLButtonElement> & { scope: string }) {
  const { scope, disabled, children, ...rest } = props;
  const gate = useGate(scope);
  return (
    <span className="action">
      <button type="button" {...rest} disabled={disabled || !gate.allowed} title={gate.note} data-scope={scope}>
        {children}
      </button>
      {gate.allowed ? null : <small className="needs">{gate.note}</small>}
    </span>
  );
}
