// passkey.mjs — passkeys in a real browser: headless Chromium (Debian's) driven by playwright-core,
// with the DevTools protocol's virtual authenticator (WebAuthn domain: CTAP2, internal transport,
// resident keys, user verification). Run by tests/integration/test_browser_passkey.c, which starts
// gatehouse with --webauthn-rp-id localhost and passes BASE (http://localhost:PORT — WebAuthn needs
// a secure context and a domain), USERNAME, PASSWORD and ARTIFACTS (where screenshots go).
// Steps: register a passkey on /account, log out, log in with password + passkey, log out, sign
// in with the passkey alone; then a cloned credential with a lower signature counter is refused.
// Exits 0 when every step passed; prints the failing step and exits 1 otherwise.
import { chromium } from 'playwright-core';

const { BASE, USERNAME, PASSWORD, ARTIFACTS } = process.env;
const shot = (page, name) => page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
const must = (cond, what) => { if (!cond) throw new Error(what); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
let step = 'start';
try {
  const context = await browser.newContext(); // the passkey buttons need the one script
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const options = { protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
                    hasUserVerification: true, isUserVerified: true,
                    automaticPresenceSimulation: true };
  let { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', { options });
  const logOut = async () => {
    await Promise.all([page.waitForURL(/\/login/),
                       page.getByRole('button', { name: 'Log out', exact: true }).click()]);
  };

  step = 'logging in with the password (no factor yet: one step)';
  await page.goto(`${BASE}/login`);
  must(await page.locator('#passkey-login').isVisible(), 'no "Sign in with a passkey" button');
  await page.getByLabel('Username').fill(USERNAME);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await Promise.all([page.waitForURL(`${BASE}/account`),
                     page.getByRole('button', { name: 'Log in' }).click()]);
  must(await page.locator('#passkey-add').isVisible(), 'no "Add a passkey" form');

  step = 'registering a passkey on /account';
  await page.getByLabel('Passkey name').fill('laptop');
  await page.getByLabel('Current password (to add a passkey)').fill(PASSWORD);
  await Promise.all([page.waitForURL(`${BASE}/account?done=passkey`),
                     page.getByRole('button', { name: 'Add a passkey' }).click()]);
  must(await page.locator('#passkey-added').isVisible(), 'no "The passkey was added."');
  must((await page.textContent('body')).includes('laptop'), 'the passkey is not listed');
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  must(credentials.length === 1 && credentials[0].isResidentCredential, 'no resident credential');
  await shot(page, 'passkey-account');

  step = 'logging out, then in with password + passkey';
  await logOut();
  await page.getByLabel('Username').fill(USERNAME);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await Promise.all([page.waitForLoadState(), page.getByRole('button', { name: 'Log in' }).click()]);
  must(await page.locator('#passkey-mfa').isVisible(), 'no "Use your passkey" on the second step');
  await shot(page, 'passkey-second-step');
  await Promise.all([page.waitForURL(`${BASE}/account`),
                     page.getByRole('button', { name: 'Use your passkey' }).click()]);
  must((await page.textContent('#username')) === USERNAME, 'not logged in as the user');
  await shot(page, 'passkey-after-second-step');

  step = 'logging out, then in with the passkey alone';
  await logOut();
  await Promise.all([page.waitForURL(`${BASE}/account`),
                     page.getByRole('button', { name: 'Sign in with a passkey' }).click()]);
  must((await page.textContent('#username')) === USERNAME, 'not logged in as the user');
  await shot(page, 'passkey-passwordless');

  step = 'a cloned authenticator (the same key, a lower counter) is refused';
  const now = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials[0];
  must(now.signCount >= 2, `the counter did not move: ${now.signCount}`);
  await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId });
  ({ authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', { options }));
  await cdp.send('WebAuthn.addCredential', { authenticatorId,
                                             credential: { ...now, signCount: 0 } });
  await logOut();
  await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await page.locator('#passkey-login-msg').waitFor({ state: 'visible' });
  must(new URL(page.url()).pathname === '/login', `left the login page: ${page.url()}`);
  must((await page.textContent('#passkey-login-msg')).includes('refused'), 'no refusal message');
  await shot(page, 'passkey-clone-refused');
  console.log('passkey.mjs: every step passed');
} catch (e) {
  console.error(`passkey.mjs: step "${step}" failed: ${e.message}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
