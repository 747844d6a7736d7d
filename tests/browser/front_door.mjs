// front_door.mjs — a real browser through the front door: headless Chromium (Debian's) driven by
// playwright-core. Run by tests/integration/test_browser.c, which starts gatehouse and nginx and
// passes FRONT (http://127.0.0.1:PORT, nginx), OTHER_SID (another session of the user, to log
// out from the account page), USERNAME, PASSWORD and ARTIFACTS (where screenshots go).
// Exits 0 when every step passed; prints the failing step and exits 1 otherwise.
import { chromium } from 'playwright-core';

const { FRONT, OTHER_SID, USERNAME, PASSWORD, ARTIFACTS } = process.env;
const shot = (page, name) => page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
const must = (cond, what) => { if (!cond) throw new Error(what); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
let step = 'start';
try {
  const context = await browser.newContext({ javaScriptEnabled: false }); // the pages need none
  const page = await context.newPage();

  step = 'an anonymous visit lands on the login page';
  const target = `${FRONT}/app/page?x=1&y=2`;
  await page.goto(target);
  must(new URL(page.url()).pathname === '/login', `at ${page.url()}`);
  await shot(page, 'login');

  step = 'a wrong password shows the page again with one message';
  await page.getByLabel('Username').fill(USERNAME);
  await page.getByLabel('Password').fill('not the password');
  await Promise.all([page.waitForLoadState(), page.getByRole('button', { name: 'Log in' }).click()]);
  must((await page.getByRole('alert').textContent()).includes('Invalid username or password'),
       'no error message');
  await shot(page, 'login-failed');

  step = 'logging in through the form goes back where the browser was going';
  await page.getByLabel('Username').fill(USERNAME);
  await page.getByLabel('Password').fill(PASSWORD);
  await Promise.all([page.waitForURL(target), page.getByRole('button', { name: 'Log in' }).click()]);
  const app = await page.textContent('body');
  must(app.includes(`user=[${USERNAME}]`), `the app saw: ${app}`);
  await shot(page, 'app');

  step = 'the account page lists both sessions, this one with the browser\'s user agent';
  // The user agent this browser sends, read where scripts may run (the pages' context has none).
  const probe = await browser.newPage();
  const userAgent = await probe.evaluate(() => navigator.userAgent);
  await probe.close();
  await page.goto(`${FRONT}/account`);
  const account = await page.textContent('body');
  must(account.includes('(this session)'), 'no current session');
  must(account.includes(OTHER_SID), 'the other session is not listed');
  const current = await page.textContent('tr.cur');
  must(current.includes(userAgent.slice(0, 160)), `this session's row: ${current}`);
  must(current.includes('127.0.0.1'), `no address in this session's row: ${current}`);
  await shot(page, 'account');

  step = 'logging out the other session from its row';
  await Promise.all([
    page.waitForURL(`${FRONT}/account?done=revoked`),
    page.getByRole('button', { name: `Log out session ${OTHER_SID}` }).click(),
  ]);
  must(!(await page.textContent('body')).includes(OTHER_SID), 'the other session is still listed');
  await shot(page, 'account-after-logout');

  step = 'the ops page shows the watchdog: no alerts, its forecast, the memory chart';
  await page.goto(`${FRONT}/ops`);
  must(await page.locator('svg[role=img]').count() === 2, 'no charts');
  must((await page.textContent('#no-alerts')).startsWith('No alerts'), 'no "No alerts" line');
  must((await page.textContent('#forecast')).startsWith('Forecast:'), 'no forecast line');
  must((await page.textContent('body')).includes('sessions active'), 'no figures');
  await shot(page, 'ops');

  step = 'the ops page refreshes itself (no JavaScript) and draws the watchdog\'s ring';
  await page.waitForEvent('framenavigated', { timeout: 15000 });
  await page.waitForLoadState();
  must(await page.locator('svg polyline.rss').count() === 1, 'no RSS line in the chart');
  must(await page.locator('svg polygon.area').count() >= 1, 'no accounted areas in the chart');
  must((await page.textContent('body')).includes('requests per second'), 'no rates');
  await shot(page, 'ops-live');

  step = 'logging out sends the app back to the login page';
  await page.goto(`${FRONT}/account`);
  await Promise.all([page.waitForURL(`${FRONT}/login`),
                     page.getByRole('button', { name: 'Log out', exact: true }).click()]);
  await page.goto(target);
  must(new URL(page.url()).pathname === '/login', `after logout at ${page.url()}`);
  await browser.close();
  console.log('browser: every step passed');
} catch (e) {
  console.error(`browser: FAILED at "${step}": ${e.message}`);
  await browser.close();
  process.exit(1);
}
