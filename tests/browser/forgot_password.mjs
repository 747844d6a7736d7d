// forgot_password.mjs — the forgot-password flow in a real browser: headless Chromium (Debian's)
// driven by playwright-core, from /login to logged in with the new password, reading the reset
// mail the way its recipient would (the message aiosmtpd wrote, its text part, its link).
// Run by tests/integration/test_browser_reset.c, which starts gatehouse with email on and the
// SMTP server, and passes FRONT (http://127.0.0.1:PORT), USERNAME, EMAIL, NEW_PASSWORD, MAILDIR
// (where the SMTP server writes NNNN.eml) and ARTIFACTS (where screenshots go).
// Exits 0 when every step passed; prints the failing step and exits 1 otherwise.
import { chromium } from 'playwright-core';
import { readdirSync, readFileSync } from 'node:fs';

const { FRONT, USERNAME, EMAIL, NEW_PASSWORD, MAILDIR, ARTIFACTS } = process.env;
const shot = (page, name) => page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
const must = (cond, what) => { if (!cond) throw new Error(what); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mails = () => readdirSync(MAILDIR).filter((f) => f.endsWith('.eml')).sort();

// The decoded text/plain part of a message (base64, as Gatehouse sends it).
function textPart(raw) {
  const m = raw.match(/Content-Type: text\/plain[^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*\r?\n([A-Za-z0-9+\/=\r\n]+)/);
  must(m, 'no text/plain part');
  return Buffer.from(m[1].replace(/\s+/g, ''), 'base64').toString('utf8');
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
let step = 'start';
try {
  const context = await browser.newContext({ javaScriptEnabled: false }); // the pages need none
  const page = await context.newPage();

  step = 'the login page offers "Forgot your password?"';
  await page.goto(`${FRONT}/login`);
  await shot(page, 'reset-login');
  await Promise.all([page.waitForURL(`${FRONT}/reset`),
                     page.getByRole('link', { name: 'Forgot your password?' }).click()]);

  step = 'asking for a link by email address';
  const before = mails().length;
  await page.getByLabel('Email address or username', { exact: true }).fill(EMAIL);
  await shot(page, 'reset-form');
  await Promise.all([page.waitForLoadState(),
                     page.getByRole('button', { name: 'Send the link' }).click()]);
  must((await page.textContent('#message')).includes('If an account matches'), 'no confirmation');
  await shot(page, 'reset-sent');

  step = 'the mail arrives with a link';
  let link = null;
  for (let i = 0; i < 150 && !link; i++) {
    const all = mails();
    if (all.length > before) {
      const text = textPart(readFileSync(`${MAILDIR}/${all[all.length - 1]}`, 'latin1'));
      link = (text.match(/https?:\/\/\S+\/reset\/confirm\?token=[A-Za-z0-9_-]+/) || [])[0];
    }
    if (!link) await sleep(100);
  }
  must(link, 'no reset mail with a link');

  step = 'the link shows the new-password form';
  await page.goto(link);
  await shot(page, 'reset-confirm');
  await page.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
  await Promise.all([page.waitForLoadState(),
                     page.getByRole('button', { name: 'Set the password' }).click()]);
  must((await page.textContent('#message')).includes('Your password was changed'), 'not changed');
  await shot(page, 'reset-done');

  step = 'the link is spent: opening it again says so';
  const again = await context.newPage();
  const resp = await again.goto(link);
  must(resp.status() === 400, `the spent link answered ${resp.status()}`);
  await again.close();

  step = 'logging in with the new password';
  await Promise.all([page.waitForURL(`${FRONT}/login`),
                     page.getByRole('link', { name: 'Log in' }).click()]);
  await page.getByLabel('Username').fill(USERNAME);
  await page.getByLabel('Password', { exact: true }).fill(NEW_PASSWORD);
  await Promise.all([page.waitForLoadState(),
                     page.getByRole('button', { name: 'Log in' }).click()]);
  await page.goto(`${FRONT}/account`);
  must(new URL(page.url()).pathname === '/account', `not logged in: at ${page.url()}`);
  must((await page.textContent('body')).includes('(this session)'), 'no session on /account');
  await shot(page, 'reset-logged-in');
  await browser.close();
  console.log('browser: every step passed');
} catch (e) {
  console.error(`browser: FAILED at "${step}": ${e.message}`);
  await browser.close();
  process.exit(1);
}
