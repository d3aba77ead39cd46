//! [`SessionStore`]: conversations saved in an SQLite file, so a restarted program resumes them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use catena_core::{Error, Memory, Message, Result};
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

/// A saved conversation, as [`SessionStore::list`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's name.
    pub name: String,
    /// Messages in its transcript.
    pub messages: usize,
    /// When it was last saved, in seconds since the Unix epoch.
    pub updated_at: u64,
}

/// What [`SessionStore::load`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// No session of that name: the memory was left empty.
    New,
    /// The memory now holds the saved session.
    Resumed,
    /// The saved session could not be read; it was renamed (kept, not deleted) and the memory
    /// left empty.
    MovedAside {
        /// The session's new name.
        renamed_to: String,
        /// Why it could not be read.
        reason: String,
    },
}

/// Conversations in one SQLite file: each session's memory [snapshot](Memory::snapshot) (what
/// the memory needs to carry on: a summary and recent turns, say) and its full transcript (every
/// message, for display and audit; the memory may have summarised them away).
///
/// Damage is reported and kept, never silently reset: a file that is not a readable SQLite
/// database is renamed to `<file>.corrupt-<unix time>` and a fresh one created
/// ([`moved_aside`](SessionStore::moved_aside) says where it went); a session whose snapshot does
/// not fit the memory is renamed `<name>.corrupt-<unix time>` and reported by
/// [`load`](SessionStore::load).
#[derive(Debug, Clone)]
pub struct SessionStore {
    pool: SqlitePool,
    path: PathBuf,
    moved_aside: Option<PathBuf>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    name TEXT PRIMARY KEY,
    snapshot TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS transcript (
    session TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (session, seq)
);";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

fn store_error(path: &Path, e: sqlx::Error) -> Error {
    Error::store(format!("session store {}: {e}", path.display())).with_source(e)
}

impl SessionStore {
    /// Opens (or creates) the store at `path`; its folder is created when missing.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        match Self::connect(&path).await {
            Ok(pool) => Ok(Self { pool, path, moved_aside: None }),
            Err(reason) if path.exists() => {
                let aside = PathBuf::from(format!("{}.corrupt-{}", path.display(), now()));
                std::fs::rename(&path, &aside).map_err(|e| Error::io(&path, e))?;
                for suffix in ["-wal", "-shm"] {
                    let side = PathBuf::from(format!("{}{suffix}", path.display()));
                    if side.exists() {
                        let _ = std::fs::rename(&side, format!("{}{suffix}", aside.display()));
                    }
                }
                tracing::warn!(file = %path.display(), moved_to = %aside.display(), %reason, "session store unreadable; moved aside");
                let pool = Self::connect(&path)
                    .await
                    .map_err(|e| Error::store(format!("session store {}: {e}", path.display())))?;
                Ok(Self { pool, path, moved_aside: Some(aside) })
            }
            Err(reason) => Err(Error::store(format!("session store {}: {reason}", path.display()))),
        }
    }

    /// Connects, checks the file's integrity and creates the tables; any failure is the reason
    /// the file is unreadable.
    async fn connect(path: &Path) -> std::result::Result<SqlitePool, String> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| e.to_string())?;
        let check: String =
            sqlx::query_scalar("PRAGMA quick_check").fetch_one(&pool).await.map_err(|e| e.to_string())?;
        if check != "ok" {
            pool.close().await;
            return Err(format!("integrity check failed: {check}"));
        }
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(|e| e.to_string())?;
        Ok(pool)
    }

    /// Turns a database error into a store error naming this store's file.
    fn failed(&self) -> impl Fn(sqlx::Error) -> Error + '_ {
        |e| store_error(&self.path, e)
    }

    /// The store's file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where an unreadable file found at open was moved, if one was.
    #[must_use]
    pub fn moved_aside(&self) -> Option<&Path> {
        self.moved_aside.as_deref()
    }

    /// The saved sessions, most recently saved first.
    pub async fn list(&self) -> Result<Vec<SessionInfo>> {
        let rows = sqlx::query(
            "SELECT s.name, s.updated_at, (SELECT COUNT(*) FROM transcript t WHERE t.session = s.name) AS n \
             FROM sessions s ORDER BY s.updated_at DESC, s.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.failed())?;
        rows.iter()
            .map(|row| {
                Ok(SessionInfo {
                    name: row.try_get("name").map_err(self.failed())?,
                    updated_at: u64::try_from(row.try_get::<i64, _>("updated_at").map_err(self.failed())?)
                        .unwrap_or_default(),
                    messages: usize::try_from(row.try_get::<i64, _>("n").map_err(self.failed())?)
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Fills `memory` with the session `name`, if it exists (see [`Loaded`]).
    pub async fn load(&self, name: &str, memory: &dyn Memory) -> Result<Loaded> {
        let saved: Option<String> = sqlx::query_scalar("SELECT snapshot FROM sessions WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.failed())?;
        let Some(saved) = saved else {
            memory.clear().await?;
            return Ok(Loaded::New);
        };
        let restored = match serde_json::from_str::<Value>(&saved) {
            Ok(snapshot) => memory.restore(snapshot).await,
            Err(e) => Err(Error::parse("session snapshot", e.to_string())),
        };
        match restored {
            Ok(()) => Ok(Loaded::Resumed),
            Err(e @ (Error::Parse { .. } | Error::InvalidInput { .. })) => {
                let renamed_to = format!("{name}.corrupt-{}", now());
                self.rename(name, &renamed_to).await?;
                memory.clear().await?;
                tracing::warn!(session = name, %renamed_to, error = %e, "session unreadable; moved aside");
                Ok(Loaded::MovedAside { renamed_to, reason: e.to_string() })
            }
            Err(e) => Err(e),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(self.failed())?;
        for sql in [
            "UPDATE sessions SET name = ? WHERE name = ?",
            "UPDATE transcript SET session = ? WHERE session = ?",
        ] {
            sqlx::query(sql).bind(to).bind(from).execute(&mut *tx).await.map_err(self.failed())?;
        }
        tx.commit().await.map_err(self.failed())
    }

    /// Saves `memory`'s snapshot as session `name` and appends `new_messages` to its transcript,
    /// in one transaction.
    pub async fn save(&self, name: &str, memory: &dyn Memory, new_messages: &[Message]) -> Result<()> {
        let snapshot = memory.snapshot().await?.to_string();
        let mut tx = self.pool.begin().await.map_err(self.failed())?;
        sqlx::query(
            "INSERT INTO sessions (name, snapshot, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT(name) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(snapshot)
        .bind(i64::try_from(now()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(self.failed())?;
        let next: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq) + 1, 0) FROM transcript WHERE session = ?")
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(self.failed())?;
        for (i, message) in new_messages.iter().enumerate() {
            let text = serde_json::to_string(message).map_err(|e| Error::parse("message", e.to_string()))?;
            sqlx::query("INSERT INTO transcript (session, seq, message) VALUES (?, ?, ?)")
                .bind(name)
                .bind(next + i64::try_from(i).unwrap_or(i64::MAX - next))
                .bind(text)
                .execute(&mut *tx)
                .await
                .map_err(self.failed())?;
        }
        tx.commit().await.map_err(self.failed())
    }

    /// Every message of session `name`, in order. A stored message that cannot be read is an
    /// [`Error::Parse`] naming its position.
    pub async fn transcript(&self, name: &str) -> Result<Vec<Message>> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, message FROM transcript WHERE session = ? ORDER BY seq")
                .bind(name)
                .fetch_all(&self.pool)
                .await
                .map_err(self.failed())?;
        rows.into_iter()
            .map(|(seq, text)| {
                serde_json::from_str(&text)
                    .map_err(|e| Error::parse("session transcript", format!("{name} message {seq}: {e}")))
            })
            .collect()
    }

    /// Deletes session `name`; returns whether it existed.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(self.failed())?;
        sqlx::query("DELETE FROM transcript WHERE session = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(self.failed())?;
        let gone = sqlx::query("DELETE FROM sessions WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(self.failed())?
            .rows_affected();
        tx.commit().await.map_err(self.failed())?;
        Ok(gone > 0)
    }
}
