/** A page of the console that is not built yet: said plainly, with the CLI that does the job today. */
export function NotBuilt(props: { page: string }) {
  return (
    <section>
      <h1>{props.page}</h1>
      <p className="empty">
        This page is not built yet. The API behind it works: use <code>conveer --help</code> or any Connect/gRPC client.
      </p>
    </section>
  );
}
