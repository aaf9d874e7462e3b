// The captive portal in a real browser (Debian's Chromium driven by playwright-core):
// a guest redeems a single-use voucher on one device, a second device is refused with the
// same code (in Russian), and a mistyped code is caught as malformed.
//
//   PORTAL_URL=http://127.0.0.1:10000/portal GOOD_CODE=100123456789 SCREENSHOT_DIR=/tmp/shots \
//     node tests/browser/portal.mjs
//
// PORTAL_URL must lead through the proxy that tells the control plane the device from the
// trusted `x-client-mac` header (each browser context sends its own). GOOD_CODE is an
// unused single-use voucher code (12 digits). CHROMIUM overrides /usr/bin/chromium.
// Prints one line per step; exits 1 with the reason on the first failure.

import { mkdirSync } from 'node:fs';
import path from 'node:path';

import { env, fail, launch, run } from './lib.mjs';

const TIMEOUT = 15_000;
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 800 };

function say(message) {
    console.log(`portal: ${message}`);
}

/** "100123456789" → "1001 2345 6789", as printed on the voucher. */
function grouped(code) {
    return code.replace(/(\d{4})(?=\d)/g, '$1 ');
}

/** Fails when the page asked for anything outside the portal's origin (the CSP forbids it). */
function watchRequests(page, origin, foreign) {
    page.on('request', (request) => {
        const url = request.url();
        if (!url.startsWith(`${origin}/`) && !url.startsWith('data:')) foreign.push(url);
    });
}

/** Opens the portal, expects the form in `lang`, with no result shown yet. */
async function openForm(page, url, lang) {
    const response = await page.goto(url, { waitUntil: 'load', timeout: TIMEOUT });
    if (!response) fail(`GET ${url}: no response`);
    if (response.status() !== 200) fail(`GET ${url}: HTTP ${response.status()}, expected 200`);
    const form = page.locator('form[method="post"][action="/portal"]');
    await form.waitFor({ state: 'visible', timeout: TIMEOUT }).catch(() => fail(`GET ${url}: no form posting to /portal`));
    const htmlLang = await page.locator('html').getAttribute('lang');
    if (htmlLang !== lang) fail(`GET ${url}: <html lang="${htmlLang}">, expected "${lang}"`);
    const hiddenLang = await form.locator('input[type="hidden"][name="lang"]').inputValue({ timeout: TIMEOUT });
    if (hiddenLang !== lang) fail(`GET ${url}: hidden lang field is "${hiddenLang}", expected "${lang}"`);
    const input = form.locator('input[name="code"]');
    if ((await input.getAttribute('inputmode')) !== 'numeric') fail('the code field is not inputmode="numeric"');
    if ((await page.locator('#result').count()) !== 0) fail(`GET ${url}: a result is shown before any code was entered`);
}

/** Types `typed` into the code field like a guest, submits, and returns what #result says. */
async function submitCode(page, typed) {
    const input = page.locator('form input[name="code"]');
    await input.click({ timeout: TIMEOUT });
    await input.fill('', { timeout: TIMEOUT });
    await input.pressSequentially(typed, { timeout: TIMEOUT });
    // Settled either way at once, so a timeout is reported here and never left unhandled.
    const posted = page
        .waitForResponse((r) => r.request().method() === 'POST' && r.request().isNavigationRequest(), { timeout: TIMEOUT })
        .catch(() => null);
    const loaded = page.waitForEvent('load', { timeout: TIMEOUT }).then(
        () => true,
        () => false,
    );
    await page.locator('form button[type="submit"]').click({ timeout: TIMEOUT });
    const response = await posted;
    if (!response) fail('submitting the code: no answer to the POST');
    if (!(await loaded)) fail('submitting the code: the answer page never finished loading');
    const result = page.locator('#result');
    await result.waitFor({ state: 'visible', timeout: TIMEOUT }).catch(() =>
        fail(`POST answered HTTP ${response.status()} without a visible #result`),
    );
    return {
        status: response.status(),
        state: await result.getAttribute('data-state'),
        problem: await result.getAttribute('data-problem'),
        text: (await result.innerText()).replace(/\s+/g, ' ').trim(),
        lang: await page.locator('html').getAttribute('lang'),
    };
}

function describe(result) {
    const what = result.state === 'problem' ? `problem=${result.problem}` : `state=${result.state}`;
    return `${what} (HTTP ${result.status}): "${result.text.slice(0, 200)}"`;
}

async function main() {
    const url = env('PORTAL_URL');
    const code = env('GOOD_CODE').replace(/\s+/g, '');
    const dir = env('SCREENSHOT_DIR');
    if (!/^\d{12}$/.test(code)) fail(`GOOD_CODE must be 12 digits, got "${code}"`);
    const origin = new URL(url).origin;
    // One digit changed: the check digit no longer matches (Damm catches every single-digit error).
    const mistyped = `${code.slice(0, 11)}${(Number(code[11]) + 1) % 10}`;
    mkdirSync(dir, { recursive: true });
    const shot = (page, name) => page.screenshot({ path: path.join(dir, name), timeout: TIMEOUT });

    const browser = await launch();
    let current = null;
    const foreign = [];
    try {
        say(`browser ${browser.version()}, portal ${url}`);

        // (a) Device A, English, phone: the voucher works.
        const a = await browser.newContext({
            viewport: PHONE,
            locale: 'en-US',
            extraHTTPHeaders: { 'x-client-mac': 'aa:aa:aa:aa:aa:01', 'accept-language': 'en' },
        });
        current = await a.newPage();
        watchRequests(current, origin, foreign);
        await openForm(current, url, 'en');
        await shot(current, 'portal-form-en-phone.png');
        say('(a) device A opened the English form (portal-form-en-phone.png)');
        const connected = await submitCode(current, grouped(code));
        if (connected.state !== 'connected') fail(`(a) device A with the good code: expected connected, got ${describe(connected)}`);
        if (connected.lang !== 'en') fail(`(a) the answer is in "${connected.lang}", expected "en"`);
        const until = /\buntil\b.*\b20\d\d\b/i.test(connected.text);
        if (!until && !/no time limit/i.test(connected.text)) {
            fail(`(a) the connected page says neither until when (a year) nor "no time limit": "${connected.text}"`);
        }
        const token = await current.locator('textarea#token').inputValue({ timeout: TIMEOUT });
        if (token.trim().length < 16) fail(`(a) the access token in #token is missing or too short (${token.length} chars)`);
        await shot(current, 'portal-connected-en-phone.png');
        say(`(a) device A connected, ${until ? 'with an end time' : 'no time limit'}, token of ${token.length} chars (portal-connected-en-phone.png)`);

        // (b) Device B, Russian, phone: the same single-use code is refused.
        const b = await browser.newContext({
            viewport: PHONE,
            locale: 'ru-RU',
            extraHTTPHeaders: { 'x-client-mac': 'aa:aa:aa:aa:aa:02', 'accept-language': 'ru-RU,ru;q=0.9' },
        });
        current = await b.newPage();
        watchRequests(current, origin, foreign);
        await openForm(current, url, 'ru');
        const used = await submitCode(current, grouped(code));
        if (used.state !== 'problem' || used.problem !== 'used_elsewhere') {
            fail(`(b) device B with the used code: expected problem=used_elsewhere, got ${describe(used)}`);
        }
        if (used.lang !== 'ru' || !/[а-яё]{4,}/i.test(used.text)) fail(`(b) the refusal is not in Russian: lang="${used.lang}", "${used.text}"`);
        await shot(current, 'portal-used-ru-phone.png');
        say(`(b) device B refused in Russian: used_elsewhere, HTTP ${used.status} (portal-used-ru-phone.png)`);

        // (c) Device B, desktop: a mistyped code is caught before any lookup.
        await current.setViewportSize(DESKTOP);
        await openForm(current, url, 'ru');
        const bad = await submitCode(current, mistyped);
        if (bad.state !== 'problem' || bad.problem !== 'malformed') {
            fail(`(c) device B with the mistyped code ${mistyped}: expected problem=malformed, got ${describe(bad)}`);
        }
        if (bad.lang !== 'ru') fail(`(c) the answer is in "${bad.lang}", expected "ru"`);
        await shot(current, 'portal-malformed-ru-desktop.png');
        say(`(c) mistyped code refused: malformed, HTTP ${bad.status} (portal-malformed-ru-desktop.png)`);

        if (foreign.length > 0) fail(`the page requested something outside ${origin}: ${foreign.join(', ')}`);
        say(`all steps passed; screenshots in ${dir}`);
    } catch (error) {
        if (current) await shot(current, 'portal-failure.png').catch(() => {});
        throw error;
    } finally {
        await browser.close();
    }
}

await run('portal', main);
