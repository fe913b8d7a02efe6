import { memo } from "react";
import type { ReactNode } from "react";
import { tableFeatures, useTable } from "@tanstack/react-table";
import type { ColumnDef, RowData } from "@tanstack/react-table";

/** The features every console table registers: none beyond the core (the server sorts, filters and pages). */
export const features = tableFeatures({});
export type Features = typeof features;

/** One server page as an accessible table; each cell carries its column's name (for narrow screens). */
export function DataTable<T extends RowData>(props: {
  label: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  columns: ColumnDef<Features, T, any>[];
  rows: T[];
  rowKey(row: T): string;
  /** Render a row again only when its object changes (for live pages whose cells depend on nothing else). */
  memoRows?: boolean;
}) {
  const table = useTable<Features, T>({ features, columns: props.columns, data: props.rows });
  return (
    <div className="table-wrap" tabIndex={0} role="region" aria-label={`${props.label} (scrolls sideways)`}>
      <table className="grid" aria-label={props.label}>
        <thead>
          {table.getHeaderGroups().map((g) => (
            <tr key={g.id}>
              {g.headers.map((h) => (
                <th key={h.id} scope="col">
                  <table.FlexRender header={h} />
                </th>
              ))}
            </tr>
          ))}
        </thead>
        <tbody>
          {table.getRowModel().rows.map((r) => {
            const cells = r.getAllCells().map((c) => (
              <td key={c.id}>
                <table.FlexRender cell={c} />
              </td>
            ));
            const key = props.rowKey(r.original);
            return props.memoRows ? (
              <Row key={key} original={r.original}>
                {cells}
              </Row>
            ) : (
              <tr key={key}>{cells}</tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

/**
 * A body row rendered again only when its data object changes: a live page that swaps one row's
 * object re-renders that row, not the whole table. Only for cells that depend on the row alone
 * (a selection checkbox depends on the page's state too).
 */
const Row = memo(
  function Row(props: { original: unknown; children: ReactNode }) {
    return <tr>{props.children}</tr>;
  },
  (a, b) => a.original === b.original,
);
