//! [`SqliteCheckpointer`]: graph checkpoints in an SQLite file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use catena_core::{Error, Result};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::checkpoint::{Checkpoint, Checkpointer, PendingWrite, decode_rows};

/// Checkpoints in an SQLite file (bundled SQLite through sqlx): runs survive the process, and
/// several processes may share the file.
///
/// One row per checkpoint, holding only its step's updates (JSON), and one row per pending task
/// write; a checkpoint and the removal of the pending writes it absorbs commit together (a
/// trigger, so saving a step is one statement). The file
/// is in WAL mode with `synchronous = NORMAL`: a committed checkpoint survives the process being
/// killed at any point; a power loss may lose the last few commits, never corrupt the file. A row
/// that no longer parses is moved to the `graph_quarantine` table with the reason and reported in
/// the log; other rows and threads are unaffected.
#[derive(Debug, Clone)]
pub struct SqliteCheckpointer {
    pool: SqlitePool,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS graph_checkpoints (
    thread TEXT NOT NULL,
    id INTEGER NOT NULL,
    parent INTEGER,
    step INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (thread, id)
);
CREATE TABLE IF NOT EXISTS graph_pending (
    thread TEXT NOT NULL,
    checkpoint INTEGER NOT NULL,
    task TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (thread, checkpoint, task)
);
CREATE TRIGGER IF NOT EXISTS graph_checkpoint_absorbs_pending AFTER INSERT ON graph_checkpoints
WHEN NEW.parent IS NOT NULL BEGIN
    DELETE FROM graph_pending WHERE thread = NEW.thread AND checkpoint = NEW.parent;
END;
CREATE TABLE IF NOT EXISTS graph_quarantine (
    thread TEXT NOT NULL,
    kind TEXT NOT NULL,
    id INTEGER NOT NULL,
    data TEXT NOT NULL,
    reason TEXT NOT NULL,
    moved_at_ms INTEGER NOT NULL
);";

impl SqliteCheckpointer {
    /// Opens (creating if needed) the checkpoint file at `path`.
    ///
    /// # Errors
    /// The file cannot be created or opened, or is not an SQLite database.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| Self::error_at(&path, e))?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(|e| Self::error_at(&path, e))?;
        Ok(Self { pool, path })
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of checkpoint and pending data stored for `thread` (what grows with its steps).
    ///
    /// # Errors
    /// The database cannot be read.
    pub async fn stored_bytes(&self, thread: &str) -> Result<u64> {
        let bytes: i64 = sqlx::query_scalar(
            "SELECT (SELECT COALESCE(SUM(LENGTH(data)), 0) FROM graph_checkpoints WHERE thread = ?1) + \
                    (SELECT COALESCE(SUM(LENGTH(data)), 0) FROM graph_pending WHERE thread = ?1)",
        )
        .bind(thread)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    fn error_at(path: &Path, e: sqlx::Error) -> Error {
        Error::store(format!("checkpoint store {}: {e}", path.display())).with_source(e)
    }

    fn error(&self, e: sqlx::Error) -> Error {
        Self::error_at(&self.path, e)
    }

    async fn quarantine(&self, thread: &str, kind: &str, id: i64, data: &str, reason: &str) -> Result<()> {
        tracing::warn!(store = %self.path.display(), thread, kind, id, reason, "unreadable graph checkpoint row moved to graph_quarantine");
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        sqlx::query("INSERT INTO graph_quarantine (thread, kind, id, data, reason, moved_at_ms) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(thread)
            .bind(kind)
            .bind(id)
            .bind(data)
            .bind(reason)
            .bind(i64::try_from(super::run::now_ms()).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error(e))?;
        let delete = if kind == "checkpoint" {
            "DELETE FROM graph_checkpoints WHERE thread = ? AND id = ?"
        } else {
            "DELETE FROM graph_pending WHERE thread = ? AND seq = ?"
        };
        sqlx::query(delete).bind(thread).bind(id).execute(&mut *tx).await.map_err(|e| self.error(e))?;
        tx.commit().await.map_err(|e| self.error(e))
    }

    /// Rows read as `T`; the ones that do not parse are moved to the quarantine table.
    async fn read_rows<T: serde::de::DeserializeOwned>(
        &self,
        thread: &str,
        kind: &str,
        rows: Vec<(i64, String)>,
    ) -> Result<Vec<T>> {
        let (good, bad) = decode_rows(rows);
        for (key, data, reason) in bad {
            self.quarantine(thread, kind, key, &data, &reason).await?;
        }
        Ok(good)
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl Checkpointer for SqliteCheckpointer {
    async fn put(&self, thread: &str, checkpoint: &Checkpoint) -> Result<()> {
        let data = serde_json::to_string(checkpoint)
            .map_err(|e| Error::store(format!("a checkpoint does not serialize: {e}")))?;
        // One statement: the trigger drops the parent's pending writes in the same implicit
        // transaction (and one round trip to SQLite's thread instead of four).
        sqlx::query(
            "INSERT INTO graph_checkpoints (thread, id, parent, step, created_at_ms, data) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(thread)
        .bind(to_i64(checkpoint.id))
        .bind(checkpoint.parent.map(to_i64))
        .bind(checkpoint.step)
        .bind(to_i64(checkpoint.created_at_ms))
        .bind(&data)
        .execute(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn put_pending(&self, thread: &str, at: u64, write: &PendingWrite) -> Result<()> {
        let data = serde_json::to_string(write)
            .map_err(|e| Error::store(format!("a pending write does not serialize: {e}")))?;
        sqlx::query(
            "INSERT OR REPLACE INTO graph_pending (thread, checkpoint, task, seq, data) VALUES (?, ?, ?, \
             (SELECT COALESCE(MAX(seq), 0) + 1 FROM graph_pending), ?)",
        )
        .bind(thread)
        .bind(to_i64(at))
        .bind(write.task())
        .bind(&data)
        .execute(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn checkpoints(&self, thread: &str) -> Result<Vec<Checkpoint>> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, data FROM graph_checkpoints WHERE thread = ? ORDER BY id")
                .bind(thread)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.error(e))?;
        self.read_rows(thread, "checkpoint", rows).await
    }

    async fn pending(&self, thread: &str, at: u64) -> Result<Vec<PendingWrite>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, data FROM graph_pending WHERE thread = ? AND checkpoint = ? ORDER BY seq",
        )
        .bind(thread)
        .bind(to_i64(at))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        self.read_rows(thread, "pending", rows).await
    }

    async fn threads(&self) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT DISTINCT thread FROM graph_checkpoints ORDER BY thread")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))
    }

    async fn delete_thread(&self, thread: &str) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        for delete in
            ["DELETE FROM graph_checkpoints WHERE thread = ?", "DELETE FROM graph_pending WHERE thread = ?"]
        {
            sqlx::query(delete).bind(thread).execute(&mut *tx).await.map_err(|e| self.error(e))?;
        }
        tx.commit().await.map_err(|e| self.error(e))
    }

    async fn prune(&self, thread: &str, rewrite: &[Checkpoint], delete: &[u64]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        for checkpoint in rewrite {
            let data = serde_json::to_string(checkpoint)
                .map_err(|e| Error::store(format!("a checkpoint does not serialize: {e}")))?;
            sqlx::query("UPDATE graph_checkpoints SET data = ? WHERE thread = ? AND id = ?")
                .bind(&data)
                .bind(thread)
                .bind(to_i64(checkpoint.id))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.error(e))?;
        }
        for id in delete {
            for statement in [
                "DELETE FROM graph_checkpoints WHERE thread = ? AND id = ?",
                "DELETE FROM graph_pending WHERE thread = ? AND checkpoint = ?",
            ] {
                sqlx::query(statement)
                    .bind(thread)
                    .bind(to_i64(*id))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.error(e))?;
            }
        }
        tx.commit().await.map_err(|e| self.error(e))
    }
}
