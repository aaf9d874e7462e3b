//! The credential throttle: every attempt at a secret (password now; PIN, token login and
//! voucher codes use the same) reserves its place *before* the secret is checked, so a
//! burst of concurrent wrong attempts is evaluated only up to the limit, and a failure
//! counts even while its hash runs.
//!
//! Policy (SECURITY.md, NIST SP 800-63B §5.2.2):
//! - **Per source and account** (`pair`): an attempt counts toward the streak as soon as
//!   it is reserved (at most [`PAIR_LOCK_AFTER`] in flight), and after [`FREE_FAILURES`]
//!   consecutive *settled* failures each further attempt waits a doubling delay ([`delay_after`]: 1 s, 2 s, 4 s ...); the
//!   [`PAIR_LOCK_AFTER`]th failure locks that source out of that account for
//!   [`FIRST_LOCK_MS`], and each further lock within a day doubles, up to a day. A success
//!   from that source clears its streak.
//! - **Per source** (`source`, over every account): [`SOURCE_LOCK_AFTER`] consecutive
//!   failures lock the source out of every account the same way, so one source cannot
//!   spray names.
//! - **Per account** (`account`, over every source): the backstop. Never more than
//!   [`ACCOUNT_MAX_FAILURES_PER_DAY`] failures in any 24 hours (a sliding window over the
//!   failures' times); then every source waits until the oldest of them is 24 h old.
//!
//! So a burst from one source locks that source, not the account: the owner logs in from
//! anywhere else until the account-wide backstop is reached. Unknown names are throttled
//! exactly like known ones, so a refusal reveals nothing.
//!
//! Atomic across workers and replicas: one write transaction per reservation and per
//! settlement, `BEGIN IMMEDIATE` on SQLite, row locks (`FOR UPDATE`, always in the order
//! account, source, pair) on PostgreSQL.

use std::net::IpAddr;

use serde_json::json;
use sqlx::AnyConnection;

use crate::audit::{self, Actor, Event};
use crate::config::Backend;
use crate::db::{self, now_ms};
use crate::http::error::ApiError;
use crate::AppState;

/// Failures from one source on one account before attempts are delayed.
pub const FREE_FAILURES: i64 = 2;
/// The failure from one source on one account that starts a lock.
pub const PAIR_LOCK_AFTER: i64 = 5;
/// Consecutive failures from one source over all accounts that start a lock.
pub const SOURCE_LOCK_AFTER: i64 = 20;
/// The first lock; each further one within [`DAY_MS`] doubles, up to [`DAY_MS`].
pub const FIRST_LOCK_MS: i64 = 60 * 1000;
pub const DAY_MS: i64 = 24 * 3600 * 1000;
/// NIST SP 800-63B: at most 100 failed attempts per account.
pub const ACCOUNT_MAX_FAILURES_PER_DAY: i64 = 100;

/// The wait before the next attempt after `failures` consecutive ones (ms): none after
/// the first [`FREE_FAILURES`] - 1, then 1 s, 2 s, 4 s ...
pub fn delay_after(failures: i64) -> i64 {
    if failures < FREE_FAILURES {
        0
    } else {
        1000_i64 << (failures - FREE_FAILURES).min(20)
    }
}

/// What a secret is being tried for: the kind (`password`, `pin`, ...) and the account
/// name as given (known or not).
pub struct Attempt<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub source: IpAddr,
    /// The device the attempt is for (voucher redemption, seed 000): a third streak, per
    /// device and account, with the same delays and locks as per source and account, so
    /// a device cannot guess from many addresses either.
    pub device: Option<&'a str>,
    /// The account's backstop: at most this many failures in any 24 hours.
    pub daily_cap: i64,
}

impl<'a> Attempt<'a> {
    /// A credential (password, PIN, token) for the account `name`, from `source`.
    pub fn credential(kind: &'a str, name: &'a str, source: IpAddr) -> Self {
        Attempt { kind, name, source, device: None, daily_cap: ACCOUNT_MAX_FAILURES_PER_DAY }
    }

    fn account_key(&self) -> String {
        format!("a|{}|{}", self.kind, self.name)
    }
    fn source_key(&self) -> String {
        format!("s|{}", self.source)
    }
    fn pair_key(&self) -> String {
        format!("p|{}|{}|{}", self.kind, self.source, self.name)
    }
    fn device_key(&self) -> Option<String> {
        self.device.map(|d| format!("d|{}|{}|{}", self.kind, d, self.name))
    }
}

/// A reserved attempt: settle it with [`succeeded`] or [`failed`].
#[must_use]
pub struct Reservation {
    /// The attempt's kind, for the metrics.
    kind: String,
    account: String,
    source: String,
    pair: String,
    device: Option<String>,
    failure_id: String,
}

impl Reservation {
    /// The per-pair streaks: source and account, and device and account when there is one.
    fn pairs(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.pair).chain(self.device.as_ref())
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    failures: i64,
    next_at: i64,
    locked_until: i64,
    lock_ms: i64,
}

async fn begin(state: &AppState) -> Result<sqlx::Transaction<'static, sqlx::Any>, ApiError> {
    Ok(db::begin_write(&state.pool, state.config.backend).await?)
}

/// The streak row of `key`, created when missing and locked until the commit.
async fn streak(tx: &mut AnyConnection, backend: Backend, key: &str) -> Result<Row, ApiError> {
    sqlx::query(
        "INSERT INTO throttle (key, failures, next_at, locked_until, lock_ms) VALUES ($1, 0, 0, 0, 0) ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .execute(&mut *tx)
    .await?;
    let sql = match backend {
        Backend::Postgres => "SELECT failures, next_at, locked_until, lock_ms FROM throttle WHERE key = $1 FOR UPDATE",
        Backend::Sqlite => "SELECT failures, next_at, locked_until, lock_ms FROM throttle WHERE key = $1",
    };
    Ok(sqlx::query_as(sql).bind(key).fetch_one(&mut *tx).await?)
}

/// Takes the account's row lock until the commit: every reservation and settlement for
/// one account queue here, which keeps its daily count and its sources' streaks exact
/// across workers and replicas (on SQLite the write transaction already serializes).
async fn queue_on_account(tx: &mut AnyConnection, backend: Backend, account_key: &str) -> Result<(), ApiError> {
    streak(tx, backend, account_key).await.map(drop)
}

/// A streak whose last failure is a day old starts again (`next_at` is set at each
/// failure, to the failure's time plus its delay).
fn decayed(row: Row, now: i64) -> Row {
    if row.locked_until <= now && row.next_at + DAY_MS < now {
        Row { failures: 0, ..row }
    } else {
        row
    }
}

fn retry_secs(ms: i64) -> u64 {
    db::to_u64(ms).div_ceil(1000).max(1)
}

/// Reserves one attempt, or refuses it (429 with `Retry-After`) when the source is locked
/// or delayed, when as many attempts are already in flight as the streak has left, or when
/// the account reached its daily backstop. The reservation counts as a failure until it is
/// settled.
pub async fn reserve(state: &AppState, attempt: &Attempt<'_>) -> Result<Reservation, ApiError> {
    let backend = state.config.backend;
    let r = Reservation {
        kind: attempt.kind.to_owned(),
        account: attempt.account_key(),
        source: attempt.source_key(),
        pair: attempt.pair_key(),
        device: attempt.device_key(),
        failure_id: crate::tokens::keys::random_id(12),
    };
    let mut tx = begin(state).await?;
    // Always account, then source, then pair: two reservations never wait on each other
    // in opposite orders.
    queue_on_account(&mut tx, backend, &r.account).await?;
    // The clock is read once the account's queue is ours: an attempt that waited there
    // never sees the time an earlier one wrote as its future.
    let now = now_ms();
    let mut rows = vec![(r.source.clone(), decayed(streak(&mut tx, backend, &r.source).await?, now), SOURCE_LOCK_AFTER)];
    for key in r.pairs() {
        rows.push((key.clone(), decayed(streak(&mut tx, backend, key).await?, now), PAIR_LOCK_AFTER));
    }
    let mut wait = 0;
    for (_, row, limit) in &rows {
        let limit = *limit;
        if row.locked_until > now {
            wait = wait.max(row.locked_until - now);
        } else if row.next_at > now {
            wait = wait.max(row.next_at - now);
        } else if row.failures >= limit {
            // As many attempts in flight as the streak has left: wait for them.
            wait = wait.max(1000);
        }
    }
    let (recent, oldest): (i64, Option<i64>) = sqlx::query_as("SELECT COUNT(*), MIN(at) FROM throttle_failures WHERE key = $1 AND at > $2")
        .bind(&r.account)
        .bind(now - DAY_MS)
        .fetch_one(&mut *tx)
        .await?;
    if recent >= attempt.daily_cap {
        wait = wait.max(oldest.unwrap_or(now) + DAY_MS - now);
    }
    if wait > 0 {
        tx.commit().await?;
        state.metrics.login_throttled.inc();
        state.metrics.attempt(attempt.kind, "throttled");
        return Err(ApiError::TooManyAttempts { retry_after_secs: retry_secs(wait) });
    }
    // The attempt counts toward the streaks (the in-flight cap above) at once; the
    // progressive delay is set only when a failure settles ([`failed`]), so concurrent
    // attempts that turn out right are never taken for a burst of wrong ones.
    // `next_at` moves up to now (no later): it also dates the streak for [`decayed`].
    for (key, row, _) in &rows {
        sqlx::query("UPDATE throttle SET failures = $2, next_at = $3 WHERE key = $1")
            .bind(key)
            .bind(row.failures + 1)
            .bind(row.next_at.max(now))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("INSERT INTO throttle_failures (id, key, at) VALUES ($1, $2, $3)")
        .bind(&r.failure_id)
        .bind(&r.account)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(r)
}

/// The secret was right: the reservation is given back, and the source's streak on this
/// account is cleared.
pub async fn succeeded(state: &AppState, r: Reservation) -> Result<(), ApiError> {
    state.metrics.attempt(&r.kind, "success");
    give_back(state, r).await
}

/// The attempt came to no verdict on the secret (the database failed, say): it is given
/// back as if it had been right, and counted as neither.
pub async fn given_back(state: &AppState, r: Reservation) -> Result<(), ApiError> {
    give_back(state, r).await
}

async fn give_back(state: &AppState, r: Reservation) -> Result<(), ApiError> {
    let mut tx = begin(state).await?;
    sqlx::query("DELETE FROM throttle_failures WHERE id = $1").bind(&r.failure_id).execute(&mut *tx).await?;
    sqlx::query("UPDATE throttle SET failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END WHERE key = $1")
        .bind(&r.source)
        .execute(&mut *tx)
        .await?;
    for key in r.pairs() {
        sqlx::query("UPDATE throttle SET failures = 0, next_at = 0 WHERE key = $1").bind(key).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The secret was wrong: the failure stays counted. Returns `Some(seconds)` when it
/// started a lock (the caller answers 429 for it too). `audited`: the failure's audit
/// entry (a login's `login.failed`), written in the same transaction, with a `user.lock`
/// entry by the same actor when the failure started a lock.
pub async fn failed(state: &AppState, r: Reservation, audited: Option<(Actor, Event)>) -> Result<Option<u64>, ApiError> {
    state.metrics.attempt(&r.kind, "failure");
    let now = now_ms();
    let backend = state.config.backend;
    let mut tx = begin(state).await?;
    queue_on_account(&mut tx, backend, &r.account).await?;
    let mut lock = None;
    let streaks = std::iter::once((&r.source, SOURCE_LOCK_AFTER)).chain(r.pairs().map(|k| (k, PAIR_LOCK_AFTER)));
    for (key, limit) in streaks {
        let row = streak(&mut tx, backend, key).await?;
        if row.failures >= limit && row.locked_until <= now {
            // A day after the last lock ended, start again from the first lock length.
            let next = if row.lock_ms == 0 || row.locked_until + DAY_MS < now { FIRST_LOCK_MS } else { (row.lock_ms * 2).min(DAY_MS) };
            sqlx::query("UPDATE throttle SET failures = 0, next_at = 0, locked_until = $2, lock_ms = $3 WHERE key = $1")
                .bind(key)
                .bind(now + next)
                .bind(next)
                .execute(&mut *tx)
                .await?;
            lock = Some(lock.unwrap_or(0).max(retry_secs(next)));
        } else if key != &r.source {
            // The progressive delay is per source and account; over all accounts a
            // source only has its lock.
            sqlx::query("UPDATE throttle SET next_at = $2 WHERE key = $1")
                .bind(key)
                .bind(now + delay_after(row.failures))
                .execute(&mut *tx)
                .await?;
        }
    }
    if let Some((actor, event)) = audited {
        audit::record(&mut tx, &actor, &event).await?;
        if let Some(secs) = lock {
            let locked = Event { kind: "user.lock", detail: json!({ "lockedForSecs": secs, "after": event.kind }), ..event };
            audit::record(&mut tx, &actor, &locked).await?;
        }
    }
    tx.commit().await?;
    Ok(lock)
}

/// Drops what no longer matters: failures older than a day, streaks idle for a day.
pub async fn sweep(tx: &mut AnyConnection, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM throttle_failures WHERE at < $1").bind(now - DAY_MS).execute(&mut *tx).await?;
    // Kept a day past its lock, so the next lock within a day still doubles.
    sqlx::query("DELETE FROM throttle WHERE locked_until < $1 AND next_at < $1").bind(now - DAY_MS).execute(&mut *tx).await?;
    Ok(())
}
