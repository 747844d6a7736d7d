// oidc_rp.mjs — gatehouse as the OpenID provider of a real relying party: Apache httpd with
// mod_auth_openidc (tests/support/apache.c), driven by headless Chromium (Debian's) through
// playwright-core. Run by tests/integration/test_oidc_rp.c, which passes APP (Apache's
// http://127.0.0.1:PORT), GH (gatehouse's, the issuer), USER1 (password only) and EMAIL1 (its
// address), USER2 and TOTP_SECRET (a user with an authenticator app), PASSWORD, ROTATE (JSON argv
// of `gatehouse keys rotate …`; the node re-reads its keys within 15 s: --oidc-key-refresh) and
// ARTIFACTS (screenshots).
//
// 1. USER1 opens the protected page, is sent to gatehouse's login page, signs in and lands on
//    the page, which shows the claims mod_auth_openidc got (preferred_username, sub, amr …);
//    a page that requires `acr` urn:gatehouse:mfa (`Require claim`) refuses that session.
// 2. The signing keys rotate; USER1's Apache session (its ID token signed by the old key) goes
//    on working, and a new login (USER2, password then the TOTP code) is signed by the new key,
//    which mod_auth_openidc fetches from the JWKS; the second-factor page lets USER2 in.
// 3. USER1 logs out through the RP: mod_auth_openidc sends the browser to gatehouse's
//    end_session_endpoint, which ends the gatehouse session (GET /v1/session with its cookie:
//    401) and comes back to the app.
// Prints RESULT lines for the C test; exits 0 when every step passed, 1 otherwise.
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { chromium } from 'playwright-core';

const { APP, GH, USER1, EMAIL1, USER2, PASSWORD, TOTP_SECRET, ROTATE, ARTIFACTS } = process.env;
const shot = (page, name) => page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
const must = (cond, what) => { if (!cond) throw new Error(what); };
const text = async (page, sel) => ((await page.textContent(sel)) || '').trim();
const kidOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString()).kid;

// RFC 4648 base32 and RFC 6238 (HMAC-SHA-1, 6 digits, 30-second steps), as in mfa.mjs.
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

async function sessionStatus(cookie) {
  const r = await fetch(`${GH}/v1/session`, { headers: { Cookie: `gatehouse_session=${cookie}` } });
  return r.status;
}
async function jwksKids() {
  const r = await fetch(`${GH}/oidc/jwks`);
  must(r.status === 200, `JWKS answered ${r.status}`);
  return new Set((await r.json()).keys.map((k) => k.kid));
}

// Opens the protected page in a fresh context and signs in on gatehouse's login page; returns
// the page, back on the app. code: a function giving the TOTP code, or null.
async function signIn(browser, user, code, shots) {
  const context = await browser.newContext({ javaScriptEnabled: false }); // neither side needs it
  const page = await context.newPage();
  await page.goto(`${APP}/protected/`);
  must(page.url().startsWith(`${GH}/login`), `the protected page led to ${page.url()}`);
  // the authorization request mod_auth_openidc made, which the login page carries back
  const authz = new URL(new URL(page.url()).searchParams.get('rd') || '/', GH);
  must(authz.pathname === '/oidc/authorize' && authz.searchParams.get('code_challenge_method') === 'S256'
       && authz.searchParams.get('nonce') && authz.searchParams.get('response_type') === 'code',
       `not a code request with PKCE S256 and a nonce: ${authz}`);
  if (shots.login) await shot(page, shots.login);
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill(PASSWORD);
  await Promise.all([page.waitForLoadState(), page.getByRole('button', { name: 'Log in' }).click()]);
  if (code) {
    must((await page.textContent('body')).includes('Enter the 6-digit code'),
         `no second step after the password (at ${page.url()})`);
    if (shots.second) await shot(page, shots.second);
    await page.getByLabel('Code').fill(code());
    await Promise.all([page.waitForURL(`${APP}/protected/**`),
                       page.getByRole('button', { name: 'Continue' }).click()]);
  } else {
    await page.waitForURL(`${APP}/protected/**`);
  }
  must(await text(page, '#preferred_username') === user,
       `the app sees preferred_username "${await text(page, '#preferred_username')}"`);
  must(/^\S+$/.test(await text(page, '#sub')) && await text(page, '#sub') !== '(none)', 'no sub');
  must(await text(page, '#iss') === GH, `iss ${await text(page, '#iss')}`);
  return { context, page };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
let step = 'start';
try {
  step = `${USER1} opens the protected page and signs in with the password`;
  const oldKids = await jwksKids();
  const one = await signIn(browser, USER1, null, { login: 'oidc-rp-login' });
  must(await text(one.page, '#amr') === 'pwd', `amr ${await text(one.page, '#amr')}`);
  must(await text(one.page, '#acr') === 'urn:gatehouse:pwd', `acr ${await text(one.page, '#acr')}`);
  must(await text(one.page, '#email') === EMAIL1, `email ${await text(one.page, '#email')}`);
  const kid1 = kidOf(await text(one.page, '#id_token'));
  must(oldKids.has(kid1), `the ID token's kid ${kid1} is not in the JWKS`);
  await shot(one.page, 'oidc-rp-protected');
  let r = await one.page.goto(`${APP}/protected/mfa.html`);
  must(r.status() === 401, `a password-only session got the second-factor page: ${r.status()}`);
  await one.page.goto(`${APP}/protected/`);
  const cookie = (await one.context.cookies(GH)).find((c) => c.name === 'gatehouse_session');
  must(cookie, 'no gatehouse session cookie after the login');
  must(await sessionStatus(cookie.value) === 200, 'the gatehouse session does not answer 200');
  console.log(`RESULT signed in ${USER1} kid ${kid1}`);
  console.log(`COOKIE ${cookie.value}`);

  step = 'the signing keys rotate';
  execFileSync(JSON.parse(ROTATE)[0], JSON.parse(ROTATE).slice(1), { stdio: 'inherit' });
  let newKids = new Set();
  for (const deadline = Date.now() + 15000; Date.now() < deadline && newKids.size === 0;) {
    const kids = await jwksKids();
    newKids = new Set([...kids].filter((k) => !oldKids.has(k)));
    must(kids.has(kid1), 'the old key left the JWKS');
    if (newKids.size === 0) await new Promise((r) => setTimeout(r, 200));
  }
  must(newKids.size > 0, 'no new key in the JWKS 15 s after the rotation');

  step = `${USER1}'s session from before the rotation goes on`;
  await one.page.reload();
  must(await text(one.page, '#preferred_username') === USER1, 'the old session ended');

  step = `${USER2} signs in after the rotation: password, then the code`;
  // the code after the one that confirmed the factor (a code is accepted once)
  const two = await signIn(browser, USER2, () => totp(TOTP_SECRET, 30),
                           { second: 'oidc-rp-second-step' });
  const amr = (await text(two.page, '#amr')).split(',');
  must(amr.includes('pwd') && amr.includes('otp') && amr.includes('mfa'), `amr ${amr}`);
  must(await text(two.page, '#acr') === 'urn:gatehouse:mfa', `acr ${await text(two.page, '#acr')}`);
  const kid2 = kidOf(await text(two.page, '#id_token'));
  must(newKids.has(kid2), `the new login's ID token is signed with ${kid2}, not the new key`);
  await shot(two.page, 'oidc-rp-protected-mfa');
  r = await two.page.goto(`${APP}/protected/mfa.html`);
  must(r.status() === 200 && (await text(two.page, '#mfa-only')).includes('second factor'),
       `a second-factor session was refused the second-factor page: ${r.status()}`);
  await two.page.goto(`${APP}/protected/`);
  console.log(`RESULT signed in ${USER2} kid ${kid2} amr ${amr.join(',')}`);

  step = `${USER1} logs out through the RP`;
  await Promise.all([one.page.waitForURL((u) => !u.href.startsWith(`${APP}/protected/`)),
                     one.page.locator('#logout').click()]);
  if (one.page.url().startsWith(GH)) { // a confirmation page on gatehouse, if it shows one
    await Promise.all([one.page.waitForURL(`${APP}/**`),
                       one.page.getByRole('button', { name: /log out/i }).click()]);
  }
  must(one.page.url() === `${APP}/loggedout.html`, `the logout ended at ${one.page.url()}`);
  must((await text(one.page, '#logged-out')).includes('Logged out'), 'not the logged-out page');
  await shot(one.page, 'oidc-rp-logged-out');
  must(await sessionStatus(cookie.value) === 401, 'the gatehouse session outlived the RP logout');
  await one.page.goto(`${APP}/protected/`);
  must(one.page.url().startsWith(`${GH}/login`), `after the logout the app showed ${one.page.url()}`);
  step = `${USER2}'s session is not touched by ${USER1}'s logout`;
  await two.page.reload();
  must(await text(two.page, '#preferred_username') === USER2, `${USER2} lost the app session`);
  console.log('RESULT logged out');
  console.log('RESULT ok');
} catch (e) {
  console.error(`FAILED at step "${step}": ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
