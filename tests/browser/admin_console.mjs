// admin_console.mjs — the admin console in a real browser: headless Chromium (Debian's) driven by
// playwright-core, JavaScript off in the pages. Run by tests/integration/test_admin_console.c,
// which starts gatehouse and passes BASE (http://127.0.0.1:PORT), ADMIN_USER / NON_ADMIN / PASSWORD,
// VICTIM (a user with two sessions), VICTIM_ID, OTHER_SID (one of the victim's sessions), MAILED_ID
// (a user with a verified email address) and ARTIFACTS (where screenshots go). Exits 0 when every step passed; prints the failing step and
// exits 1 otherwise.
import { chromium } from 'playwright-core';

const { BASE, ADMIN_USER, NON_ADMIN, PASSWORD, VICTIM, VICTIM_ID, OTHER_SID, ARTIFACTS,
        MAILED_ID } = process.env;
const shot = (page, name) => page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
const must = (cond, what) => { if (!cond) throw new Error(what); };
const click = (page, locator) => Promise.all([page.waitForLoadState(), locator.click()]);

async function logIn(page, user, rd) {
  await page.goto(`${BASE}/login?rd=${encodeURIComponent(rd)}`);
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill(PASSWORD);
  await Promise.all([page.waitForURL(`${BASE}${rd}`),
                     page.getByRole('button', { name: 'Log in' }).click()]);
}

// Confirms the confirmation page a console button led to; lands back where it redirects.
async function confirm(page, question) {
  must((await page.getByRole('alert').textContent()).includes(question),
       `no confirmation asking "${question}"`);
  await click(page, page.getByRole('button', { name: 'Yes, do it' }));
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

  step = 'an anonymous visit to /admin goes to the login page, and back after it';
  await page.goto(`${BASE}/admin`);
  must(new URL(page.url()).pathname === '/login', `at ${page.url()}`);
  await logIn(page, ADMIN_USER, '/admin');
  must(await page.locator('a[href="/ops"]').count() === 1, 'no link to /ops');
  await shot(page, 'admin-users');

  step = '/ops is reachable from the console for an admin user';
  await click(page, page.getByRole('link', { name: 'Operations' }));
  must(new URL(page.url()).pathname === '/ops', `at ${page.url()}`);
  must(await page.locator('svg[role=img]').count() === 2, 'no /ops charts');
  await page.goto(`${BASE}/admin`);

  step = 'the admin finds the user by a name prefix';
  await page.getByLabel('Find users by name or email prefix').fill(VICTIM.slice(0, 2).toUpperCase());
  await click(page, page.getByRole('button', { name: 'Search' }));
  const found = page.locator('#users a.user', { hasText: VICTIM });
  must(await found.count() === 1, `${VICTIM} not found`);
  await click(page, found);
  must(new URL(page.url()).pathname === `/admin/users/${VICTIM_ID}`, `at ${page.url()}`);
  must((await page.textContent('#username')) === VICTIM, 'not the user\'s page');
  must(await page.locator(`tr[data-session="${OTHER_SID}"]`).count() === 1, 'session not listed');
  await shot(page, 'admin-user');

  step = 'the admin ends one session, after confirming';
  await click(page, page.locator(`tr[data-session="${OTHER_SID}"] button`));
  await shot(page, 'admin-confirm');
  await confirm(page, 'End this session of the user?');
  must(new URL(page.url()).search === '?done=revoke-session', `at ${page.url()}`);
  must(await page.locator(`tr[data-session="${OTHER_SID}"]`).count() === 0, 'session still there');

  step = 'the admin disables the user, then enables them again';
  await click(page, page.getByRole('button', { name: 'Disable' }));
  await confirm(page, 'Disable the user?');
  must((await page.textContent('#state')) === 'disabled', 'not disabled');
  must(await page.locator('#sessions tbody tr').count() === 0, 'disabling left a session');
  await shot(page, 'admin-disabled');
  await click(page, page.getByRole('button', { name: 'Enable' }));
  await confirm(page, 'Enable the user?');
  must((await page.textContent('#state')) === 'active', 'not enabled');

  step = 'the admin resets the user\'s second factors, after confirming';
  await click(page, page.getByRole('button', { name: 'Reset second factors' }));
  await confirm(page, 'Remove every second factor and recovery code of the user?');
  must(new URL(page.url()).search === '?done=factors-reset', `at ${page.url()}`);
  must((await page.getByRole('status').textContent()).includes('second factor'), 'no notice');
  const removed = page.locator('tr[data-type="factor.removed"] td:nth-child(3)');
  must(await removed.count() === 1, `factor.removed events: ${await removed.count()}`);
  must((await removed.textContent()).startsWith('admin:'), `actor ${await removed.textContent()}`);

  step = 'a password reset for a user without a verified address says so';
  await click(page, page.getByRole('button', { name: 'Send a password reset' }));
  await confirm(page, 'Mail a password reset link');
  must(new URL(page.url()).search === '?done=reset-none', `at ${page.url()}`);
  must((await page.getByRole('status').textContent()).includes('no verified email address'),
       'no word that nothing was sent');
  must(await page.locator('tr[data-type="admin.password_reset_send"]').count() === 0,
       'a reset that was not sent is in the trail');
  await shot(page, 'admin-reset-none');

  step = 'a password reset for a user with a verified address is mailed and audited';
  await page.goto(`${BASE}/admin/users/${MAILED_ID}`);
  await click(page, page.getByRole('button', { name: 'Send a password reset' }));
  await confirm(page, 'Mail a password reset link');
  must(new URL(page.url()).search === '?done=reset-send', `at ${page.url()}`);
  must((await page.getByRole('status').textContent()).includes('was mailed'), 'no notice');
  const sent = page.locator('tr[data-type="admin.password_reset_send"] td:nth-child(3)');
  must(await sent.count() === 1, `admin.password_reset_send events: ${await sent.count()}`);
  must((await sent.textContent()).startsWith('admin:'), `actor ${await sent.textContent()}`);

  step = 'the admin reads the trail, filtered to admin actions';
  await page.goto(`${BASE}/admin/audit`);
  await page.getByLabel('Type (login.failed, admin, ...)').fill('admin');
  await click(page, page.getByRole('button', { name: 'Filter' }));
  const types = await page.locator('table.events td.type').allTextContents();
  for (const t of ['admin.session_revoke', 'admin.user_disable', 'admin.user_enable',
                   'admin.factors_reset'])
    must(types.includes(t), `${t} not in the trail: ${types}`);
  must(types.every((t) => t.startsWith('admin.')), `a filtered page shows ${types}`);
  await shot(page, 'admin-audit');

  step = 'hostile filters get a clear 400 page';
  for (const q of ['cursor=abc', 'user=1%27%20OR%201%3D1', 'type=%25', 'since=yesterday']) {
    const res = await page.goto(`${BASE}/admin/audit?${q}`);
    must(res.status() === 400, `${q}: ${res.status()}`);
  }
  const long = await page.goto(`${BASE}/admin?q=${'a'.repeat(255)}`);
  must(long.status() === 400, `a 255-character search: ${long.status()}`);
  await shot(page, 'admin-bad-filter');

  step = 'a forged CSRF token and a foreign origin are refused';
  const form = { form: { csrf: '0'.repeat(32), confirm: 'yes' }, maxRedirects: 0 };
  let res = await page.request.post(`${BASE}/admin/users/${VICTIM_ID}/disable`, form);
  must(res.status() === 403, `forged csrf: ${res.status()}`);
  await page.goto(`${BASE}/admin/users/${VICTIM_ID}`);
  const csrf = await page.locator('input[name=csrf]').first().getAttribute('value');
  res = await page.request.post(`${BASE}/admin/users/${VICTIM_ID}/disable`, {
    form: { csrf, confirm: 'yes' }, headers: { Origin: 'http://evil.example' }, maxRedirects: 0 });
  must(res.status() === 403, `foreign origin: ${res.status()}`);
  must((await page.textContent('#state')) === 'active', 'a refused form changed the user');

  step = 'a signed-in user who is not an admin gets 403 on every page and form';
  const other = await (await browser.newContext({ javaScriptEnabled: false })).newPage();
  await logIn(other, NON_ADMIN, '/account');
  const theirCsrf = await other.locator('input[name=csrf]').first().getAttribute('value');
  for (const path of ['/admin', '/admin/audit', `/admin/users/${VICTIM_ID}`, '/admin?q=a',
                      '/ops']) {
    const r = await other.goto(`${BASE}${path}`);
    must(r.status() === 403, `${path}: ${r.status()}`);
  }
  await shot(other, 'admin-forbidden');
  for (const action of ['disable', 'revoke-all', 'delete', 'unlock', 'enable']) {
    const r = await other.request.post(`${BASE}/admin/users/${VICTIM_ID}/${action}`,
      { form: { csrf: theirCsrf, confirm: 'yes' }, maxRedirects: 0 });
    must(r.status() === 403, `POST ${action}: ${r.status()}`);
  }
  console.log('admin console: every step passed');
} catch (e) {
  console.error(`admin console: step "${step}" failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
