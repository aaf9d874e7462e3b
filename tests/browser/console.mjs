// The admin console in a real browser (Debian's Chromium driven by playwright-core),
// through the front door: log in (a wrong password first), issue a scoped token and call
// the API through the gate with it (200), revoke it and see "enforced at N/N proxies" and
// the gate refuse it (401), create a network, generate vouchers and download the PDF,
// create a user, explain a refusal, and lock that user out with wrong passwords (the
// lockout's retry time is shown). Every page is saved at 1280 and 390 px wide.
//
//   FRONT=http://127.0.0.1:10000 ADMIN_USER=admin ADMIN_PASSWORD=... SCREENSHOT_DIR=/tmp/shots \
//     node tests/browser/console.mjs
//
// CHROMIUM overrides /usr/bin/chromium (lib.mjs). Prints one line per step; exits 1 with the reason
// on the first failure.

import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { env, fail, launch, run } from './lib.mjs';

const TIMEOUT = 20_000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const PAGES = ['tokens', 'users', 'sessions', 'vouchers', 'networks', 'proxies', 'keys', 'explain', 'audit'];

function say(message) {
    console.log(`console: ${message}`);
}

const front = env('FRONT');
const adminUser = env('ADMIN_USER');
const adminPassword = env('ADMIN_PASSWORD');
const dir = env('SCREENSHOT_DIR');
const origin = new URL(front).origin;
mkdirSync(dir, { recursive: true });

/** A fresh context at `viewport` that accepts confirmations and records what goes wrong. */
async function open(browser, viewport, problems) {
    const context = await browser.newContext({ viewport, acceptDownloads: true });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on('dialog', (dialog) => dialog.accept());
    page.on('request', (request) => {
        const url = request.url();
        if (!url.startsWith(`${origin}/`) && !url.startsWith('data:') && !url.startsWith('blob:')) problems.push(`a request outside the stack: ${url}`);
    });
    page.on('console', (message) => {
        // The login page answers a wrong password with 401 and a throttled one with 429:
        // Chromium logs those statuses of the document itself.
        const expected = /Failed to load resource: the server responded with a status of (401|429)/.test(message.text());
        if (message.type() === 'error' && !expected) problems.push(`browser console error: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    return { context, page };
}

async function shot(page, name) {
    await page.screenshot({ path: path.join(dir, name), fullPage: true });
}

/** The flashes on the page, as [{kind, text}]. */
async function flashes(page) {
    return page.locator('#flash .flash').evaluateAll((nodes) => nodes.map((n) => ({ kind: n.dataset.kind, text: n.innerText.replace(/\s+/g, ' ').trim() })));
}

async function expectFlash(page, kind, pattern, what) {
    const list = await flashes(page);
    if (!list.some((f) => f.kind === kind && pattern.test(f.text))) fail(`${what}: expected a ${kind} message matching ${pattern}, got ${JSON.stringify(list)}`);
    return list.find((f) => f.kind === kind && pattern.test(f.text)).text;
}

async function submit(page, form) {
    await Promise.all([page.waitForLoadState('load'), page.waitForNavigation({ timeout: TIMEOUT }), page.locator(`${form} button[type="submit"]`).first().click()]);
}

async function login(page, user, password) {
    await page.goto(`${front}/console/login`, { waitUntil: 'load' });
    await page.fill('#login input[name="username"]', user);
    await page.fill('#login input[name="password"]', password);
    await submit(page, '#login');
}

async function gate(token) {
    const r = await fetch(`${front}/api/v1/objects/42`, { headers: { authorization: `Bearer ${token}` } });
    return { status: r.status, body: await r.text() };
}

async function main() {
    const browser = await launch();
    const problems = [];
    try {
        const { page } = await open(browser, DESKTOP, problems);

        // Without a session every page leads to the login.
        await page.goto(`${front}/console/tokens`, { waitUntil: 'load' });
        if (!page.url().startsWith(`${front}/console/login`)) fail(`without a session /console/tokens led to ${page.url()}`);
        await shot(page, 'login-1280.png');

        await login(page, adminUser, 'not the password');
        await expectFlash(page, 'error', /Wrong user name or password\./, 'a wrong password');
        await shot(page, 'login-wrong-password-1280.png');
        say('a wrong password shows the error');

        await login(page, adminUser, adminPassword);
        if (!page.url().endsWith('/console/tokens')) fail(`after the login the browser is at ${page.url()}`);
        const cookie = (await page.context().cookies()).find((c) => c.name === 'tg_console');
        if (!cookie || !cookie.httpOnly || cookie.sameSite !== 'Strict' || cookie.path !== '/console') fail(`the session cookie: ${JSON.stringify(cookie && { ...cookie, value: '…' })}`);
        if (await page.evaluate(() => document.cookie.includes('tg_console'))) fail('the session cookie is readable from JavaScript');
        say('logged in through the front door (HttpOnly, SameSite=Strict cookie)');

        // Issue a token that may only read one object route.
        await page.fill('#issue input[name="name"]', 'browser-reader');
        await page.selectOption('#issue select[name="expiresIn"]', '1 day');
        await page.check('#issue input[name="scope"][value="GET /objects/:id"]');
        await page.fill('#issue input[name="password"]', adminPassword);
        await submit(page, '#issue');
        await expectFlash(page, 'ok', /Token issued/, 'issuing a token');
        const token = (await page.locator('#new-token').innerText()).trim();
        const tokenId = await page.locator('#issued').getAttribute('data-id');
        if (token.split('.').length !== 3) fail(`the new token does not look like a JWT: ${token.slice(0, 20)}…`);
        await page.click('#issued button[data-copy]');
        const copied = await page.evaluate(() => navigator.clipboard.readText());
        if (copied !== token) fail('the copy button did not copy the token');
        await shot(page, 'tokens-issued-1280.png');
        say(`issued a scoped token ${tokenId} (copied with the button)`);

        let r = await gate(token);
        if (r.status !== 200) fail(`the new token through the gate: HTTP ${r.status} ${r.body}`);
        say('the gate admits it: 200');

        // Revoke it in the console: the answer says how far the revocation reached.
        const row = page.locator(`table[data-table="tokens"] tr[data-id="${tokenId}"]`);
        await Promise.all([page.waitForNavigation({ timeout: TIMEOUT }), row.locator('form[action="/console/tokens/revoke"] button').click()]);
        const revoked = await expectFlash(page, 'ok', /enforced at (\d+)\/\1 proxies/, 'revoking the token');
        await shot(page, 'tokens-revoked-1280.png');
        say(`revoked: "${revoked}"`);
        r = await gate(token);
        if (r.status !== 401 || !r.body.includes('token_revoked')) fail(`the revoked token through the gate: HTTP ${r.status} ${r.body}`);
        say('the gate refuses it: 401 token_revoked');

        // A network for the vouchers, then a batch and its PDF.
        await page.click('nav a[href="/console/networks"]');
        await page.fill('#create-network input[name="id"]', 'demo-wifi');
        await page.fill('#create-network input[name="name"]', 'Demo Wi-Fi');
        await submit(page, '#create-network');
        await expectFlash(page, 'ok', /Network demo-wifi created/, 'creating a network');

        await page.click('nav a[href="/console/vouchers"]');
        await page.fill('#generate input[name="count"]', '4');
        await page.selectOption('#generate select[name="days"]', '3');
        await submit(page, '#generate');
        await expectFlash(page, 'ok', /4 vouchers generated/, 'generating vouchers');
        const codes = await page.locator('#generated ul.codes code').count();
        if (codes !== 4) fail(`${codes} new codes shown, expected 4`);
        await shot(page, 'vouchers-generated-1280.png');
        const [download] = await Promise.all([page.waitForEvent('download'), page.click('#pdf')]);
        const saved = path.join(dir, 'vouchers.pdf');
        await download.saveAs(saved);
        const head = readFileSync(saved).subarray(0, 5).toString('latin1');
        if (head !== '%PDF-') fail(`the downloaded file starts with ${JSON.stringify(head)}, not %PDF-`);
        say(`generated 4 vouchers and downloaded the PDF (${readFileSync(saved).length} bytes)`);

        // A user (later locked out), and "why was this refused?".
        await page.click('nav a[href="/console/users"]');
        await page.fill('#create-user input[name="name"]', 'kim');
        await page.fill('#create-user input[name="password"]', 'kim-password-1');
        await page.fill('#create-user textarea[name="prp"]', 'language=en\ntz=UTC');
        await submit(page, '#create-user');
        await expectFlash(page, 'ok', /User kim created/, 'creating a user');

        await page.click('nav a[href="/console/explain"]');
        await page.fill('#explain input[name="request"]', 'GET /api/v1/objects/42');
        await page.fill('#explain input[name="token"]', tokenId);
        await submit(page, '#explain');
        if ((await page.locator('#verdict').count()) !== 1) fail('explain: no verdict');
        const verdict = (await page.locator('#verdict .verdict').innerText()).trim();
        if (!/Refused: token_revoked/.test(verdict)) fail(`explain for the revoked token: "${verdict}"`);
        await shot(page, 'explain-verdict-1280.png');
        say(`explain for the revoked token: "${verdict}"`);

        // The audit log shows the revocation made above, by this console's user.
        await page.click('nav a[href="/console/audit"]');
        await page.selectOption('#audit-filter select[name="kind"]', 'token.revoke');
        await Promise.all([page.waitForNavigation(), page.click('#audit-filter button[type="submit"]')]);
        const audited = page.locator(`table[data-table="audit"] tr[data-kind="token.revoke"]`, { hasText: tokenId });
        if ((await audited.count()) !== 1) fail(`the audit log does not show the revocation of ${tokenId}`);
        await shot(page, 'audit-filtered-1280.png');
        say('the audit log shows the revocation');

        // Every page at both widths.
        const phone = await open(browser, PHONE, problems);
        await login(phone.page, adminUser, adminPassword);
        for (const name of PAGES) {
            for (const [p, width] of [[page, 1280], [phone.page, 390]]) {
                await p.goto(`${front}/console/${name}`, { waitUntil: 'load' });
                if ((await p.locator(`body[data-page="${name}"]`).count()) !== 1) fail(`/console/${name} did not render its page`);
                const errors = (await flashes(p)).filter((f) => f.kind === 'error');
                if (errors.length) fail(`/console/${name}: ${JSON.stringify(errors)}`);
                await shot(p, `${name}-${width}.png`);
            }
        }
        // The edit pages, on the phone.
        await phone.page.goto(`${front}/console/tokens`, { waitUntil: 'load' });
        await Promise.all([phone.page.waitForNavigation(), phone.page.locator('table[data-table="tokens"] a[href^="/console/tokens/edit"]').first().click()]);
        await shot(phone.page, 'tokens-edit-390.png');
        await phone.page.goto(`${front}/console/users`, { waitUntil: 'load' });
        await Promise.all([phone.page.waitForNavigation(), phone.page.locator('table[data-table="users"] a[href^="/console/users/edit"]').last().click()]);
        await shot(phone.page, 'users-edit-390.png');
        // The table scrolls inside its card; the page itself does not scroll sideways.
        const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        if (overflow > 1) fail(`the phone page is ${overflow} px wider than the screen`);
        await login(phone.page, adminUser, 'not the password');
        await shot(phone.page, 'login-wrong-password-390.png');
        say(`saved every page at 1280 and 390 px in ${dir}`);

        // Repeated wrong passwords: the throttle's waits (1 s, 2 s, 4 s: waited out here),
        // then the lock, each with when to retry.
        const lock = await open(browser, DESKTOP, problems);
        let lockedText = null;
        for (let i = 0; i < 12 && !lockedText; i++) {
            await login(lock.page, 'kim', 'wrong-password');
            const list = await flashes(lock.page);
            const throttled = list.map((f) => /Try again in (\d+) s/.exec(f.text)).find(Boolean);
            if (throttled && Number(throttled[1]) >= 30) lockedText = list[0].text;
            else if (throttled) await new Promise((resolve) => setTimeout(resolve, Number(throttled[1]) * 1000 + 100));
            else if (!list.some((f) => /Wrong user name or password\./.test(f.text))) fail(`attempt ${i + 1}: ${JSON.stringify(list)}`);
        }
        if (!lockedText) fail('twelve wrong passwords and no lockout shown');
        await shot(lock.page, 'login-locked-1280.png');
        say(`the lockout: "${lockedText}"`);

        // Logout revokes the console's token.
        await page.goto(`${front}/console/tokens`, { waitUntil: 'load' });
        await Promise.all([page.waitForNavigation({ timeout: TIMEOUT }), page.click('header form[action="/console/logout"] button')]);
        await expectFlash(page, 'ok', /logged out/, 'logging out');
        await page.goto(`${front}/console/tokens`, { waitUntil: 'load' });
        if (!page.url().startsWith(`${front}/console/login`)) fail('after the logout the console still opens');
        say('logged out');

        if (problems.length) fail(problems.join('\n'));
    } finally {
        await browser.close();
    }
}

await run('console', async () => {
    await main();
    say('ok');
});
