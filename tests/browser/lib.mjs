// What the browser tests share: failing with a reason, reading the environment, and
// launching Debian's Chromium (CHROMIUM overrides /usr/bin/chromium) headless. playwright's
// launch gives Chromium a fresh temporary profile (--user-data-dir) and removes it at close.

import { chromium } from 'playwright-core';

export class Failure extends Error {}

export function fail(message) {
    throw new Failure(message);
}

export function env(name) {
    const value = process.env[name];
    if (!value) fail(`${name} is not set`);
    return value;
}

export function launch() {
    return chromium.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
        timeout: 60_000,
    });
}

/** Runs `main`; on failure prints `<name>: FAILED: <reason>` and sets exit code 1. */
export async function run(name, main) {
    try {
        await main();
    } catch (error) {
        const message = error instanceof Failure ? error.message : (error && error.stack) || String(error);
        console.error(`${name}: FAILED: ${message}`);
        process.exitCode = 1;
    }
}
