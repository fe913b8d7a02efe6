import { useState } from "react";
import { useSearchParams } from "wouter";

/**
 * A page's filters and page token, kept in the URL's query (so a link or a reload shows the same
 * rows). Changing a filter goes back to the first page; `previous` holds the tokens of the pages
 * before this one, for a Previous button.
 */
export function useUrlState() {
  const [params, setParams] = useSearchParams();
  const [previous, setPrevious] = useState<string[]>([]);
  const pageToken = params.get("page") ?? "";
  const goto = (token: string) =>
    setParams((p) => {
      if (token) p.set("page", token);
      else p.delete("page");
      return p;
    });
  return {
    get: (key: string) => params.get(key) ?? "",
    set(key: string, value: string) {
      setPrevious([]);
      setParams((p) => {
        if (value) p.set(key, value);
        else p.delete(key);
        p.delete("page");
        return p;
      });
    },
    pageToken,
    first: () => (setPrevious([]), goto("")),
    back: () => (goto(previous[previous.length - 1] ?? ""), setPrevious(previous.slice(0, -1))),
    next: (token: string) => (setPrevious([...previous, pageToken]), goto(token)),
    hasPrevious: previous.length > 0,
  };
}

/** First / Previous / Next over server pages. */
export type UrlState = ReturnType<typeof useUrlState>;
