// Drives Debian's Chromium (headless, JavaScript off) through Portcullis's pages as a person
// would: sign up, sign out, sign in with a password, follow a magic link from the mail, type
// the emailed code, approve a device code, choose an organization, and see an error page.
// Every page is checked for labels, keyboard order and contrast, and screenshotted.
//
// Run by tests/e2e/browser.rs, which starts Portcullis and passes:
//   BASE_URL   Portcullis, e.g. http://127.0.0.1:40123
//   MAIL_DIR   where the mail Portcullis sent arrives, one numbered .eml file per message
//   SHOTS_DIR  where screenshots go (under target/, never committed)
//   CHROMIUM   the browser (default /usr/bin/chromium)

import { readdirSync, readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = process.env.BASE_URL;
const mailDir = process.env.MAIL_DIR;
const shots = process.env.SHOTS_DIR;
if (!base || !mailDir || !shots) throw new Error("BASE_URL, MAIL_DIR and SHOTS_DIR are required");
mkdirSync(shots, { recursive: true });

const EMAIL = "ada@example.com";
const PASSWORD = "correct horse battery staple";

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/// The newest mail's text part, quoted-printable undone.
function latestMail(seen) {
  // Numbered in arrival order by the test's SMTP sink.
  const files = readdirSync(mailDir)
    .filter((name) => name.endsWith(".eml") && !seen.has(name))
    .sort();
  if (files.length === 0) return null;
  const name = files[files.length - 1];
  const raw = readFileSync(join(mailDir, name), "utf8");
  // The file appears before its content is written; a whole message ends with its last
  // MIME boundary.
  if (!raw.trimEnd().endsWith("--")) return null;
  seen.add(name);
  // The test's SMTP sink has undone quoted-printable soft breaks and `=3D` already; decoding
  // again would turn a token that starts with two hex digits into another character.
  return raw;
}

async function waitForMail(seen, subject) {
  for (let i = 0; i < 100; i++) {
    const mail = latestMail(seen);
    if (mail && mail.includes(subject)) return mail;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no mail about "${subject}" in ${mailDir}`);
}

/// Labels on every control, no positive tabindex (keyboard order is the reading order), and
/// text contrast of at least 4.5:1 (WCAG AA) on every element that holds text.
async function checkAccessible(page, name) {
  const problems = await page.evaluate(() => {
    const found = [];
    for (const control of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
      const labelled = control.labels?.length > 0 || control.getAttribute("aria-label");
      if (!labelled) found.push(`unlabelled ${control.outerHTML}`);
    }
    for (const element of document.querySelectorAll("[tabindex]")) {
      if (Number(element.getAttribute("tabindex")) > 0) found.push(`positive tabindex ${element.outerHTML}`);
    }
    if (!document.documentElement.lang) found.push("no lang on <html>");
    if (!document.title) found.push("no <title>");
    const rgb = (text) => (text.match(/[\d.]+/g) || []).map(Number);
    const luminance = ([r, g, b]) => {
      const channel = (v) => {
        v /= 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
      };
      return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
    };
    const background = (element) => {
      for (let node = element; node; node = node.parentElement) {
        const color = rgb(getComputedStyle(node).backgroundColor);
        if (color.length === 3 || (color.length === 4 && color[3] > 0)) return color.slice(0, 3);
      }
      return [255, 255, 255];
    };
    for (const element of document.querySelectorAll("h1, p, label, button, a, summary, legend, li, strong, span, div.error")) {
      const text = [...element.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
      if (!text || element.offsetParent === null) continue;
      const fg = luminance(rgb(getComputedStyle(element).color).slice(0, 3));
      const bg = luminance(background(element));
      const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
      if (ratio < 4.5) found.push(`contrast ${ratio.toFixed(2)} on "${element.textContent.trim().slice(0, 40)}"`);
    }
    return found;
  });
  check(problems.length === 0, `${name}: ${problems.join("; ")}`);
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  console.log(`ok ${name}`);
}

/// Tabbing from the top reaches the page's first field first.
async function firstTabStop(page) {
  await page.keyboard.press("Tab");
  return page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const seen = new Set();
try {
  // Nothing here may need JavaScript.
  const context = await browser.newContext({ javaScriptEnabled: false, baseURL: base });
  const page = await context.newPage();

  // Sign up from the sign-in page, land on the app.
  await page.goto("/");
  check(page.url().includes("/auth/sign-in"), `not sent to sign in: ${page.url()}`);
  await checkAccessible(page, "01-sign-in");
  await page.click("summary");
  await page.fill("#signup-name", "Ada Lovelace");
  await page.fill("#signup-email", EMAIL);
  await page.fill("#signup-password", PASSWORD);
  await Promise.all([page.waitForURL(`${base}/`), page.click("text=Create account")]);
  check((await page.textContent("h1")).includes(EMAIL), "signed up, but the app does not know me");
  // Confirm the address from the mail (an address never confirmed loses its password when a
  // magic link proves it later: whoever set that password had not proved it).
  const confirmMail = await waitForMail(seen, "Confirm your email");
  const confirm = confirmMail.match(/http:\/\/\S+\/auth\/email\/verify\?token=[\w-]+/);
  check(confirm, `no confirmation link in the mail:\n${confirmMail}`);
  await page.goto(confirm[0]);
  await page.goto("/");

  // Sign out from the page apps link to.
  await page.click("text=Sign out");
  await checkAccessible(page, "02-sign-out");
  await Promise.all([page.waitForURL(/\/auth\/sign-in/), page.click("button:has-text('Sign out')")]);
  await page.goto("/");
  check(page.url().includes("/auth/sign-in"), "still signed in after signing out");

  // Sign in with the password; the keyboard starts at the first field.
  check((await firstTabStop(page)) === "link-email", "Tab does not start at the first field");
  await page.fill("#login-email", EMAIL);
  await page.fill("#login-password", PASSWORD);
  await Promise.all([page.waitForURL(`${base}/`), page.click("button:has-text('Sign in')")]);
  check((await page.textContent("h1")).includes(EMAIL), "password sign-in failed");
  await page.goto("/auth/sign-out");
  await Promise.all([page.waitForURL(/\/auth\/sign-in/), page.click("button:has-text('Sign out')")]);

  // A magic link from the mail.
  await page.fill("#link-email", EMAIL);
  await page.click("text=Send link");
  await checkAccessible(page, "03-check-your-email");
  const linkMail = await waitForMail(seen, "Sign in to");
  const found = linkMail.match(/http:\/\/\S+\/auth\/magic-link\/verify\?token=[\w-]+/);
  check(found, `no magic link in the mail:\n${linkMail}`);
  const link = found[0];
  await page.goto(link);
  // The link only opens a page that asks to confirm (mail scanners use nothing up).
  check((await page.textContent("main")).includes(EMAIL), "the confirmation page does not name the address");
  await checkAccessible(page, "03b-confirm-sign-in");
  await Promise.all([page.waitForURL(`${base}/`), page.click("button:has-text('Sign in')")]);
  check((await page.textContent("h1")).includes(EMAIL), "the magic link did not sign in");
  await page.goto("/auth/sign-out");
  await Promise.all([page.waitForURL(/\/auth\/sign-in/), page.click("button:has-text('Sign out')")]);

  // The code from the mail, typed on the "check your email" page.
  await page.fill("#link-email", EMAIL);
  await page.click("text=Send link");
  const codeMail = await waitForMail(seen, "Sign in to");
  const code = codeMail.match(/^\s*(\d{6})\s*$/m)[1];
  await page.fill("#code", code);
  await Promise.all([page.waitForURL(`${base}/`), page.click("button:has-text('Sign in')")]);
  check((await page.textContent("h1")).includes(EMAIL), "the code did not sign in");

  // A device asks for a code; the signed-in browser approves it.
  const started = await (await fetch(`${base}/auth/device/start`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ client_name: "Ada's CLI" }),
  })).json();
  await page.goto("/auth/device");
  await checkAccessible(page, "04-device-code");
  await page.fill("#user-code", started.user_code);
  await page.click("button:has-text('Continue')");
  await checkAccessible(page, "05-device-approve");
  await page.click("button:has-text('Approve')");
  check((await page.textContent("main")).includes("Device approved"), "the device was not approved");
  await checkAccessible(page, "06-device-approved");
  let tokens;
  for (let i = 0; i < 15 && !tokens?.access_token; i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 1000));
    tokens = await (await fetch(`${base}/auth/device/poll`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ device_code: started.device_code }),
    })).json();
  }
  check(tokens?.access_token, `the device got no tokens: ${JSON.stringify(tokens)}`);

  // Two organizations: the next sign-in asks which one.
  const csrf = (await (await page.request.get("/auth/csrf")).json()).csrf_token;
  for (const name of ["Acme", "Beta"]) {
    const created = await page.request.post("/auth/orgs", {
      headers: { "x-csrf-token": csrf },
      data: { name },
    });
    check(created.status() === 201, `creating ${name}: ${created.status()}`);
  }
  await page.goto("/auth/sign-out");
  await Promise.all([page.waitForURL(/\/auth\/sign-in/), page.click("button:has-text('Sign out')")]);
  await page.fill("#login-email", EMAIL);
  await page.fill("#login-password", PASSWORD);
  await Promise.all([page.waitForURL(/\/auth\/orgs\/select/), page.click("button:has-text('Sign in')")]);
  await checkAccessible(page, "07-choose-organization");
  await page.click("label:has-text('Beta')");
  await Promise.all([page.waitForURL(`${base}/`), page.click("button:has-text('Continue')")]);
  check((await page.textContent("body")).includes("owner"), "the chosen organization's role is not shown");

  // An error page: a used link shows the sign-in page with the reason.
  await page.goto(link);
  check((await page.textContent(".error")).includes("invalid, expired or already used"), "no error shown");
  await checkAccessible(page, "08-error");
  await context.close();
} finally {
  await browser.close();
}
console.log("all browser flows passed");
