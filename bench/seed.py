#!/usr/bin/env python3
"""Seeds a control-plane SQLite database directly, as the API would leave the rows (the
1M-revocation point would take about 15 minutes through the API).

    seed.py revocations DB N   # N revoked live tokens: rows in `tokens` and `changes`, version bumped
"""
import os
import sqlite3
import sys
import time


def revocations(db, n):
    c = sqlite3.connect(db)
    acc, user = c.execute("SELECT account_id, id FROM users LIMIT 1").fetchone()
    now = int(time.time() * 1000)
    exp = now + 7 * 86400 * 1000
    v = c.execute("SELECT version FROM sync_state WHERE id = 1").fetchone()[0]
    batch = 200_000
    for start in range(0, n, batch):
        rows = [(os.urandom(12).hex(),) for _ in range(min(batch, n - start))]
        c.executemany(f"INSERT INTO tokens (id, account_id, user_id, issued_at, not_before, expires_at, revoked_at) "
                      f"VALUES (?, '{acc}', '{user}', {now}, {now}, {exp}, {now})", rows)
        c.executemany("INSERT INTO changes (version, kind, token_id, expires_at, created_at) VALUES (?, 'revoke', ?, ?, ?)",
                      [(v + start + i + 1, rows[i][0], exp, now) for i in range(len(rows))])
    c.execute("UPDATE sync_state SET version = ? WHERE id = 1", (v + n,))
    c.commit()


if __name__ == "__main__":
    what, db, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    {"revocations": revocations}[what](db, n)
