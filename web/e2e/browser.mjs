// Debian's Chromium, headless, driven by playwright-core (no browser download: the
// executable is the system one).

import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const LAPTOP = { width: 1366, height: 900 };
export const TABLET = { width: 820, height: 1180 };

export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: run \`cargo xtask setup\` (Debian's chromium) or set CHROMIUM`);
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true });
}

/** A fresh browser context (its own storage, so its own session) with one page. */
export async function newPage(browser, viewport = LAPTOP) {
  const context = await browser.newContext({ viewport, colorScheme: "light", locale: "en-GB", timezoneId: "UTC" });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  const errors = [];
  page.on("pageerror", (error) => errors.push(error));
  page.pageErrors = errors;
  return page;
}

/** Signs in through the login form and waits for the dashboard. */
export async function signIn(page, baseUrl, username, password) {
  await page.goto(`${baseUrl}/`);
  await page.waitForURL(/\/login/);
  await page.getByLabel("User name").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
}

/** The screenshot folder: E2E_SCREENSHOTS (docs/screenshots from `cargo xtask test`). */
export function screenshotDir() {
  const dir = process.env.E2E_SCREENSHOTS ?? join(here, ".tmp", "screenshots");
  mkdirSync(dir, { recursive: true });
  return dir;
}

export async function screenshot(page, name) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(screenshotDir(), `${name}.png`), fullPage: false });
}

/** The navigation's entries, as shown. */
export async function navEntries(page) {
  return page.locator("#main-nav a").allTextContents();
}
