//! The database: one `Any` pool over SQLite or PostgreSQL, the same SQL (`$1`
//! placeholders) on both, and a migrations directory per backend.

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::AnyConnection;
use sqlx::{AnyPool, Connection, Executor, Transaction};

use crate::config::{redact_url, Backend};
use crate::http::error::StartError;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a request waits for a pooled connection before answering 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long SQLite waits on a lock held by another connection.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 5_000;

/// Opens the pool. A SQLite file is created when missing.
pub async fn connect(url: &str, backend: Backend) -> Result<AnyPool, StartError> {
    sqlx::any::install_default_drivers();
    let url = match backend {
        Backend::Sqlite if !url.contains("mode=") => {
            format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
        }
        _ => url.to_owned(),
    };
    let options = AnyPoolOptions::new()
        .max_connections(match backend {
            Backend::Sqlite => 8,
            Backend::Postgres => 16,
        })
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(move |conn, _meta| Box::pin(async move { prepare(conn, backend).await }));
    options.connect(&url).await.map_err(|e| StartError(format!("cannot open the database {}: {e}", redact_url(&url))))
}

/// Per-connection settings. SQLite: WAL so readers never block the writer,
/// `synchronous=FULL` so a committed revocation survives a power cut, a busy timeout
/// instead of failing at once under contention, and foreign keys enforced.
async fn prepare(conn: &mut AnyConnection, backend: Backend) -> Result<(), sqlx::Error> {
    if backend == Backend::Sqlite {
        conn.execute("PRAGMA journal_mode = WAL").await?;
        conn.execute("PRAGMA synchronous = FULL").await?;
        conn.execute(format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}").as_str()).await?;
        conn.execute("PRAGMA foreign_keys = ON").await?;
    }
    Ok(())
}

/// Runs the migrations of `backend`.
pub async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), StartError> {
    let migrator = match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    };
    migrator.run(pool).await.map_err(|e| StartError(format!("database migrations failed: {e}")))
}

/// Starts a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes can fail with
/// `SQLITE_BUSY` without waiting when another writer got in between.
pub async fn begin_write(pool: &AnyPool, backend: Backend) -> Result<Transaction<'static, sqlx::Any>, sqlx::Error> {
    match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => pool.begin().await,
    }
}

/// Starts a read-only transaction whose statements all see one snapshot of the database.
/// SQLite's read transaction does already (in WAL mode its snapshot starts at the first
/// read and writers go on beside it); PostgreSQL's default, READ COMMITTED, gives each
/// statement its own, so there it is REPEATABLE READ.
pub async fn begin_read(pool: &AnyPool, backend: Backend) -> Result<Transaction<'static, sqlx::Any>, sqlx::Error> {
    match backend {
        Backend::Sqlite => pool.begin().await,
        Backend::Postgres => pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await,
    }
}

/// Takes the `sync_state` row lock. Writers that append to the change log take it
/// first, so two of them never lock token rows in opposite orders (PostgreSQL), and
/// their versions commit in order.
///
/// On SQLite this is no statement: every such writer began with [`begin_write`]'s
/// `BEGIN IMMEDIATE`, which already holds the database's single write lock until the
/// commit, so writers are serialized before they read anything. (One statement less per
/// revocation, each a hand-off to sqlx's SQLite thread: BENCHMARKS.md, fan-out.)
pub async fn lock_sync_state(tx: &mut AnyConnection) -> Result<(), sqlx::Error> {
    if tx.backend_name() == "PostgreSQL" {
        sqlx::query("UPDATE sync_state SET version = version WHERE id = 1").execute(&mut *tx).await?;
    }
    Ok(())
}

/// Appends one entry to the change log and returns its version. Call inside the
/// transaction that makes the change, after [`lock_sync_state`].
pub async fn append_change(
    tx: &mut AnyConnection,
    kind: &str,
    token_id: Option<&str>,
    expires_at_ms: i64,
    now_ms: i64,
) -> Result<u64, sqlx::Error> {
    let version = append_changes(tx, kind, &[(token_id, expires_at_ms)], now_ms).await?;
    Ok(version.unwrap_or_default())
}

/// Appends one entry per `(token_id, expires_at_ms)` to the change log, in order, and
/// returns the last version (`None` for no entries): one version bump and one insert per
/// [`CHUNK`] entries, and on PostgreSQL one notification for the lot, however large the
/// revoked tree. Call inside the transaction that makes the change, after
/// [`lock_sync_state`].
pub async fn append_changes(
    tx: &mut AnyConnection,
    kind: &str,
    entries: &[(Option<&str>, i64)],
    now_ms: i64,
) -> Result<Option<u64>, sqlx::Error> {
    if entries.is_empty() {
        return Ok(None);
    }
    let n = i64::try_from(entries.len()).unwrap_or(i64::MAX);
    let last: i64 = sqlx::query_scalar("UPDATE sync_state SET version = version + $1 WHERE id = 1 RETURNING version")
        .bind(n)
        .fetch_one(&mut *tx)
        .await?;
    let mut version = last - n;
    for chunk in entries.chunks(CHUNK) {
        let rows =
            (0..chunk.len()).map(|i| format!("(${}, $1, ${}, ${}, $2)", 3 * i + 3, 3 * i + 4, 3 * i + 5)).collect::<Vec<_>>().join(", ");
        let sql = format!("INSERT INTO changes (version, kind, token_id, expires_at, created_at) VALUES {rows}");
        let mut insert = sqlx::query(&sql).bind(kind).bind(now_ms);
        for (token_id, expires_at_ms) in chunk {
            version += 1;
            insert = insert.bind(version).bind(*token_id).bind(*expires_at_ms);
        }
        insert.execute(&mut *tx).await?;
    }
    // Other replicas LISTEN: the notification is delivered when this transaction
    // commits, and wakes the sync calls they hold.
    if tx.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT pg_notify($1, $2)").bind(NOTIFY_CHANNEL).bind(format!("{kind} {last}")).execute(&mut *tx).await?;
    }
    Ok(Some(to_u64(last)))
}

/// Rows per multi-row statement: 3 parameters each plus 2 stay under SQLite's and
/// PostgreSQL's parameter limits.
const CHUNK: usize = 300;

/// The PostgreSQL channel on which every change-log insert is announced.
pub const NOTIFY_CHANNEL: &str = "tokengate_changes";

/// The current change-log version and the highest version the sweeper removed.
pub async fn sync_state<'e, E: Executor<'e, Database = sqlx::Any>>(db: E) -> Result<(u64, u64), sqlx::Error> {
    let (version, pruned): (i64, i64) = sqlx::query_as("SELECT version, pruned_through FROM sync_state WHERE id = 1").fetch_one(db).await?;
    Ok((to_u64(version), to_u64(pruned)))
}

/// Does the database answer?
pub async fn ping(pool: &AnyPool) -> bool {
    let probe = async {
        let mut conn = pool.acquire().await?;
        conn.ping().await
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), probe).await, Ok(Ok(())))
}

/// Errors that mean "the database is not there right now" (503) rather than a bug (500).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: connection exceptions (08), shutdown (57P0x), too many
            // connections (53300); its codes have five characters. SQLite: busy (5) and
            // locked (6), also as extended codes (low byte).
            if code.len() == 5 {
                code.starts_with("08") || code.starts_with("57P0") || code == "53300"
            } else {
                matches!(code.parse::<i64>().map(|c| c & 0xff), Ok(5 | 6))
            }
        }
        _ => false,
    }
}

/// Database integers are signed; versions and times are never negative.
pub fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default();
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// Every token in the trees rooted at `roots` (the roots included) that is not revoked
/// yet, as `(id, signed expiry ms)`, sorted by id. The signed expiry, not the amended
/// one: a revocation must outlive every moment the token's signature is valid.
///
/// Walks `parent_id` level by level with batched `IN` lists, each answered from the
/// `tokens_parent` index; the roots and their children come in the first read
/// (`id IN (...) OR parent_id IN (...)`), so a token without children is one statement.
/// A recursive CTE did the same in one statement, but both SQLite (bundled) and
/// PostgreSQL planned it as a scan of `tokens`: about 1 s a revocation at 160k tokens on
/// SQLite.
pub async fn live_tree(tx: &mut AnyConnection, roots: Vec<String>) -> Result<Vec<(String, i64)>, sqlx::Error> {
    const BATCH: usize = 500;
    let root_set: std::collections::HashSet<String> = roots.iter().cloned().collect();
    let mut seen = root_set.clone();
    let mut live = Vec::new();
    let mut frontier = roots;
    let mut first = true;
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for chunk in frontier.chunks(BATCH) {
            let marks = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            let filter = if first { format!("id IN ({marks}) OR parent_id IN ({marks})") } else { format!("parent_id IN ({marks})") };
            let sql = format!("SELECT id, COALESCE(signed_expires_at, expires_at), revoked_at FROM tokens WHERE {filter}");
            let mut query = sqlx::query_as::<_, (String, i64, Option<i64>)>(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for (id, expires_at, revoked_at) in query.fetch_all(&mut *tx).await? {
                // A root's own children come in the same first read (every root is in
                // one chunk), so only children are walked further.
                let root_row = first && root_set.contains(&id);
                if root_row || seen.insert(id.clone()) {
                    if revoked_at.is_none() {
                        live.push((id.clone(), expires_at));
                    }
                    if !root_row {
                        next.push(id);
                    }
                }
            }
        }
        first = false;
        frontier = next;
    }
    live.sort();
    live.dedup();
    Ok(live)
}
