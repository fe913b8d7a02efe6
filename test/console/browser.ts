/**
 * A real browser for console tests: Debian's chromium (`apt-get install -y chromium`, done by
 * .ci/run) driven by playwright-core, headless, with background networking off so the browser
 * calls nothing but the server under test. Screenshots go to test/console/output/ (not committed).
 */
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import type { Browser, BrowserContext, Page } from "playwright-core";

export const CHROMIUM = process.env.CONVEER_CHROMIUM ?? "/usr/bin/chromium";
export const SHOTS = fileURLToPath(new URL("./output/", import.meta.url));

/** Starts headless chromium. */
export async function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-default-apps", "--disable-sync", "--no-first-run", "--metrics-recording-only"],
  });
}

/** A fresh context (its own sessionStorage) at 1280×800, or 390 px wide when `narrow`; console errors collected. */
export async function openPage(browser: Browser, opts: { narrow?: boolean; dark?: boolean } = {}): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
  const context = await browser.newContext({
    viewport: opts.narrow ? { width: 390, height: 844 } : { width: 1280, height: 800 },
    colorScheme: opts.dark ? "dark" : "light",
  });
  const page = await context.newPage();
  const problems: string[] = [];
  // A CSP violation or an uncaught error is a failure of the page, whatever it shows.
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    // 4xx and 501: the server's refusals (Connect codes as HTTP statuses), shown on the page; ERR_NETWORK_CHANGED: chromium seeing
    // another process's network namespaces come and go on a shared machine (the call is retried).
    if (m.type() === "error" && !/status of (4\d\d|501)|ERR_NETWORK_CHANGED/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  return { context, page, problems };
}

/** Saves a full-page screenshot as test/console/output/NAME.png. */
export async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true });
}
