import { Link, Route, Switch, useLocation } from "wouter";
import { useSession } from "./session/session.tsx";
import { Overview } from "./pages/Overview.tsx";
import { Accounts } from "./pages/Accounts.tsx";
import { AccountDetail } from "./pages/AccountDetail.tsx";
import { Admin } from "./pages/Admin.tsx";
import { Scenarios } from "./pages/Scenarios.tsx";
import { Statistics } from "./pages/Statistics.tsx";
import { Proxies } from "./pages/Proxies.tsx";
import { Warming } from "./pages/Warming.tsx";
import { WarmingTask } from "./pages/WarmingTask.tsx";
import { RegistrationDetail, Registrations } from "./pages/Registrations.tsx";

const NAV = [
  ["/", "Overview"],
  ["/accounts", "Accounts"],
  ["/proxies", "Proxies"],
  ["/warming", "Warming"],
  ["/registrations", "Registrations"],
  ["/scenarios", "Scenarios"],
  ["/statistics", "Statistics"],
  ["/admin", "Admin"],
] as const;

/** The frame of every page: navigation, who is signed in, and the page. */
export function Shell() {
  const [location] = useLocation();
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <span className="brand">Conveer</span>
        <nav aria-label="Pages">
          {NAV.map(([href, label]) => {
            const current = href === "/" ? location === "/" : location.startsWith(href);
            return (
              <Link key={href} href={href} aria-current={current ? "page" : undefined}>
                {label}
              </Link>
            );
          })}
        </nav>
        <Who />
      </header>
      <main id="main" tabIndex={-1}>
        <Switch>
          <Route path="/" component={Overview} />
          <Route path="/accounts" component={Accounts} />
          <Route path="/accounts/:id">{(p) => <AccountDetail id={p.id} />}</Route>
          <Route path="/proxies" component={Proxies} />
          <Route path="/warming" component={Warming} />
          <Route path="/warming/:id">{(p) => <WarmingTask id={p.id} />}</Route>
          <Route path="/registrations" component={Registrations} />
          <Route path="/registrations/:platform/:id">{(p) => <RegistrationDetail platform={p.platform} id={p.id} />}</Route>
          <Route path="/scenarios">
            <Scenarios />
          </Route>
          <Route path="/scenarios/:id">{(p) => <Scenarios id={p.id} />}</Route>
          <Route path="/statistics" component={Statistics} />
          <Route path="/admin" component={Admin} />
          <Route>
            <h1>Not found</h1>
            <p>
              No console page here. <Link href="/">Overview</Link>
            </p>
          </Route>
        </Switch>
      </main>
    </>
  );
}

/** Who the console acts as, and sign out. */
function Who() {
  const { identity, signedIn, signOut } = useSession();
  let text = "…";
  let title = "";
  if (identity?.known) {
    text = identity.open ? "open mode (no token)" : identity.name;
    title = `scopes: ${identity.scopes.join(", ")}`;
  } else if (identity) {
    text = signedIn ? "signed in (scopes unknown)" : "scopes unknown";
    title = identity.reason;
  }
  return (
    <div className="who">
      <span title={title} data-testid="identity">
        {text}
      </span>
      {signedIn ? (
        <button type="button" onClick={signOut}>
          Sign out
        </button>
      ) : null}
    </div>
  );
}
