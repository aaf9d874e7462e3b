// V8 timing of the cold path's token verification (bench/v8-verify/src/lib.rs).
//
//   bench/v8-verify/run.sh            # builds both backends, runs this, prints a table
//   node --no-liftoff run.js <name>=<file.wasm> ... [--rounds 30] [--batch 30]
//
// Every build is loaded into ONE V8 and short batches of every op are interleaved over
// the rounds, so each sees the same interference from a shared machine; the figure is
// CPU time per op (process.cpuUsage), min and median over the batches.
'use strict';
const fs = require('fs');
const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i < 0 ? d : parseInt(args[i + 1], 10); };
const ROUNDS = opt('--rounds', 30);
const BATCH = opt('--batch', 30);
const builds = args.filter((a) => a.includes('='));
function load(file) {
  const mod = new WebAssembly.Module(fs.readFileSync(file));
  const imports = {};
  let inst;
  for (const imp of WebAssembly.Module.imports(mod)) {
    imports[imp.module] ??= {};
    if (imp.kind === 'function') imports[imp.module][imp.name] = () => 0; // WASI: unused here
  }
  if (imports.wasi_snapshot_preview1?.clock_time_get) {
    imports.wasi_snapshot_preview1.clock_time_get = (id, prec, ptr) => {
      new DataView(inst.exports.memory.buffer).setBigUint64(ptr, BigInt(Date.now()) * 1000000n, true);
      return 0;
    };
  }
  if (imports.wasi_snapshot_preview1?.fd_write) {
    // What the module logs goes to stderr, and the write reports every byte as written.
    imports.wasi_snapshot_preview1.fd_write = (fd, iovs, n, written) => {
      const mem = new DataView(inst.exports.memory.buffer);
      let total = 0;
      for (let i = 0; i < n; i++) {
        const ptr = mem.getUint32(iovs + 8 * i, true), len = mem.getUint32(iovs + 8 * i + 4, true);
        process.stderr.write(Buffer.from(inst.exports.memory.buffer, ptr, len));
        total += len;
      }
      mem.setUint32(written, total, true);
      return 0;
    };
  }
  inst = new WebAssembly.Instance(mod, imports);
  return inst.exports;
}
const ops = [];
for (const b of builds) {
  const [name, file] = b.split('=');
  const e = load(file);
  ops.push({ label: `${name} | full token verify (rules::token::verify)`, f: (n) => e.bench_tg_verify(n), v: [] });
  ops.push({ label: `${name} | signature only, per-key table`, f: (n) => e.bench_signature(n), v: [] });
  ops.push({ label: `${name} | ed25519-dalek verify_strict, key decoded once`, f: (n) => e.bench_dalek_strict(n), v: [] });
  if (e.bench_cold_decide) {
    ops.push({ label: `${name} | gate decision, never-seen token (Worker::decide, no host calls)`, f: (n) => e.bench_cold_decide(n), v: [] });
    ops.push({ label: `${name} | gate decision, 300 cached tokens (Worker::decide, no host calls)`, f: (n) => e.bench_warm_decide(n), k: 100, v: [] });
  }
}
if (!ops.length) throw new Error('usage: node run.js <name>=<file.wasm> ...');
for (const o of ops) o.k ??= 1;
for (const o of ops) for (let i = 0; i < 5; i++) if (o.f(8 * o.k) !== 8 * o.k) throw new Error(`${o.label}: verification failed`);
for (let r = 0; r < ROUNDS; r++) {
  for (const o of ops) {
    const c0 = process.cpuUsage();
    const ok = o.f(BATCH * o.k);
    const c = process.cpuUsage(c0);
    if (ok !== BATCH * o.k) throw new Error(`${o.label}: ${ok}/${BATCH * o.k} verified`);
    o.v.push((c.user + c.system) / (BATCH * o.k));
  }
}
console.log(`| V8 (node ${process.version}, ${process.execArgv.join(' ') || 'default tiers'}), ${ROUNDS} batches of ${BATCH} | min µs | median µs |`);
console.log('|---|---|---|');
for (const o of ops) {
  o.v.sort((a, b) => a - b);
  console.log(`| ${o.label} | ${o.v[0].toFixed(1)} | ${o.v[o.v.length >> 1].toFixed(1)} |`);
}
