import { tableFeatures, useTable } from "@tanstack/react-table";
import type { ColumnDef, RowData } from "@tanstack/react-table";

/** The features every console table registers: none beyond the core (the server sorts, filters and pages). */
export const features = tableFeatures({});
export type Features = typeof features;

/** One server page as an accessible table; each cell carries its column's name (for narrow screens). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function DataTable<T extends RowData>(props: { label: string; columns: ColumnDef<Features, T, any>[]; rows: T[]; rowKey(row: T): string }) {
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
          {table.getRowModel().rows.map((r) => (
            <tr key={props.rowKey(r.original)}>
              {r.getAllCells().map((c) => (
                <td key={c.id}>
                  <table.FlexRender cell={c} />
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
