// mfa.mjs — the second factor in a real browser: headless Chromium (Debian's) driven by
// playwright-core, against gatehouse itself. Run by tests/integration/test_browser_mfa.c, which
// passes BASE (http://localhost:PORT), USERNAME, PASSWORD and ARTIFACTS (where screenshots go).
// It logs in, enrols an authenticator app on /account (the QR code, then a code computed here
// from the shown secret with a small RFC 6238 implementation), sees the recovery codes once,
// logs out, and logs in again with the password and then a code (a wrong one first).
// Prints RESULT lines for the C test; exits 0 when every step passed, 1 otherwise.
import { createHmac } from 'node:crypto';
import { chromium } from 'playwright-core';

const { BASE, USERNAME, PASSWORD, ARTIFACTS } = process.env;
const shot = (page, name) => page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
const must = (cond, what) => { if (!cond) throw new Error(what); };

// RFC 4648 base32 and RFC 6238 (HMAC-SHA-1, 6 digits, 30-second steps).
function base32(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0, value = 0;
  const out = [];
  for (const c of s.replace(/=+$/, '')) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) { out.push((value >>> (bits - 8)) & 255); bits -= 8; }
  }
  return Buffer.from(out);
}
function totp(secret, offsetSeconds = 0) {
  const step = Math.floor((Date.now() / 1000 + offsetSeconds) / 30);
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const h = createHmac('sha1', base32(secret)).update(msg).digest();
  const o = h[h.length - 1] & 15;
  const n = ((h[o] & 127) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(n % 1000000).padStart(6, '0');
}
// RFC 6238's own vector (T = 59 s: 94287082), cut to 6 digits, before trusting it with the page.
{
  const h = createHmac('sha1', Buffer.from('12345678901234567890'))
    .update(Buffer.from([0, 0, 0, 0, 0, 0, 0, 1])).digest();
  const o = h[h.length - 1] & 15;
  const n = ((h[o] & 127) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  must(n % 100000000 === 94287082, 'the RFC 6238 vector');
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

  step = 'log in with the password alone';
  await page.goto(`${BASE}/login`);
  await page.getByLabel('Username').fill(USERNAME);
  await page.getByLabel('Password').fill(PASSWORD);
  await Promise.all([page.waitForURL(`${BASE}/account`),
                     page.getByRole('button', { name: 'Log in' }).click()]);
  must((await page.textContent('body')).includes('Logins ask only for your password'),
       'no second-factor section');

  step = 'a wrong password enrols nothing';
  await page.locator('#totp-pw').fill('not the password');
  await Promise.all([page.waitForLoadState(),
                     page.getByRole('button', { name: 'Add authenticator app' }).click()]);
  must((await page.getByRole('alert').textContent()).includes('current password is wrong'),
       'no error for a wrong password');

  step = 'enrol an authenticator app: the QR code and the secret';
  await page.locator('#totp-pw').fill(PASSWORD);
  await Promise.all([page.waitForLoadState(),
                     page.getByRole('button', { name: 'Add authenticator app' }).click()]);
  must(await page.locator('#qr svg path').count() === 1, 'no QR code');
  const secret = (await page.textContent('#totp-secret')).trim();
  must(/^[A-Z2-7]{32}$/.test(secret), `secret ${secret}`);
  await shot(page, 'mfa-enrol');

  step = 'confirm with the code the app would show: recovery codes, shown once';
  await page.getByLabel('The 6-digit code the app shows now').fill(totp(secret));
  await Promise.all([page.waitForLoadState(), page.getByRole('button', { name: 'Confirm' }).click()]);
  const codes = await page.locator('#recovery-codes li').allTextContents();
  must(codes.length === 10 && codes.every((c) => /^[a-z2-7]{5}-[a-z2-7]{5}$/.test(c)),
       `recovery codes: ${codes}`);
  await shot(page, 'mfa-recovery-codes');

  step = 'the account page lists the factor';
  await page.goto(`${BASE}/account`);
  const row = await page.textContent('#factors tbody tr');
  must(row.includes('Authenticator') && row.includes('authenticator app'), `factor row: ${row}`);
  must((await page.textContent('#recovery-left')).includes('10 recovery codes left'), 'codes left');
  must(!(await page.textContent('body')).includes(codes[0]), 'a recovery code shown again');
  await shot(page, 'mfa-account');

  step = 'log out';
  await Promise.all([page.waitForURL(`${BASE}/login`),
                     page.locator('form[action="/account/logout"] button').click()]);

  step = 'the password now leads to the second step';
  await page.getByLabel('Username').fill(USERNAME);
  await page.getByLabel('Password').fill(PASSWORD);
  await Promise.all([page.waitForLoadState(), page.getByRole('button', { name: 'Log in' }).click()]);
  must((await page.textContent('body')).includes('Enter the 6-digit code'), 'no second step');
  await shot(page, 'mfa-second-step');
  const cookies = await context.cookies();
  must(!cookies.some((c) => c.name.includes('gatehouse_session')), 'a session before the code');

  step = 'a wrong code: the second step again, with one message';
  await page.getByLabel('Code').fill('000000' === totp(secret, 30) ? '111111' : '000000');
  await Promise.all([page.waitForLoadState(), page.getByRole('button', { name: 'Continue' }).click()]);
  must((await page.getByRole('alert').textContent()).includes('not right'), 'no error message');
  await shot(page, 'mfa-wrong-code');

  step = 'the right code logs in';
  // the next step's code: the one that confirmed the factor may not be used twice
  await page.getByLabel('Code').fill(totp(secret, 30));
  await Promise.all([page.waitForURL(`${BASE}/account`),
                     page.getByRole('button', { name: 'Continue' }).click()]);
  must((await page.textContent('#username')).includes(USERNAME), 'not logged in');
  await shot(page, 'mfa-logged-in');
  console.log('RESULT ok');
} catch (e) {
  console.error(`FAILED at step "${step}": ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
