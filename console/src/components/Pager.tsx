import type { UrlState } from "./url-state.ts";

/** First / Previous / Next over keyset pages; Next is off on the last page. */
export function Pager(props: { url: UrlState; nextPageToken: string; label: string }) {
  const u = props.url;
  return (
    <nav className="pager" aria-label={props.label}>
      <button type="button" disabled={!u.pageToken} onClick={u.first}>
        First
      </button>
      <button type="button" disabled={!u.hasPrevious} onClick={u.back}>
        Previous
      </button>
      <button type="button" disabled={!props.nextPageToken} onClick={() => u.next(props.nextPageToken)}>
        Next
      </button>
    </nav>
  );
}
