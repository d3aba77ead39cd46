//! [`PostgresCheckpointer`]: graph checkpoints in PostgreSQL.

use async_trait::async_trait;
use catena_core::{Error, Result};
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::checkpoint::{Checkpoint, Checkpointer, PendingWrite, decode_rows};

/// Checkpoints in PostgreSQL (sqlx): for several app servers sharing threads. The same layout
/// as `SqliteCheckpointer`: one row per checkpoint holding its step's updates, one per pending
/// task write, both committed with the checkpoint that absorbs them; unreadable rows are moved
/// to `catena_graph_quarantine`. Two processes running the same thread at once collide on the
/// checkpoint's key, and the second fails instead of interleaving its steps.
#[derive(Debug, Clone)]
pub struct PostgresCheckpointer {
    pool: PgPool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS catena_graph_checkpoints (
    thread TEXT NOT NULL,
    id BIGINT NOT NULL,
    parent BIGINT,
    step BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (thread, id)
);
CREATE TABLE IF NOT EXISTS catena_graph_pending (
    thread TEXT NOT NULL,
    checkpoint BIGINT NOT NULL,
    task TEXT NOT NULL,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    data TEXT NOT NULL,
    PRIMARY KEY (thread, checkpoint, task)
);
CREATE TABLE IF NOT EXISTS catena_graph_quarantine (
    thread TEXT NOT NULL,
    kind TEXT NOT NULL,
    id BIGINT NOT NULL,
    data TEXT NOT NULL,
    reason TEXT NOT NULL,
    moved_at_ms BIGINT NOT NULL
);";

fn error(e: sqlx::Error) -> Error {
    Error::store(format!("PostgreSQL checkpoint store: {e}")).with_source(e)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PostgresCheckpointer {
    /// Connects to `url` (`postgres://user:password@host/database`) and creates the tables if
    /// needed.
    ///
    /// # Errors
    /// The server cannot be reached, or refuses the tables.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new().max_connections(4).connect(url).await.map_err(error)?;
        Self::from_pool(pool).await
    }

    /// Uses an existing pool (shared with the rest of an app); creates the tables if needed.
    ///
    /// # Errors
    /// The tables cannot be created.
    pub async fn from_pool(pool: PgPool) -> Result<Self> {
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(error)?;
        Ok(Self { pool })
    }

    /// Bytes of checkpoint and pending data stored for `thread`.
    ///
    /// # Errors
    /// The database cannot be read.
    pub async fn stored_bytes(&self, thread: &str) -> Result<u64> {
        let bytes: i64 = sqlx::query_scalar(
            "SELECT ((SELECT COALESCE(SUM(OCTET_LENGTH(data)), 0) FROM catena_graph_checkpoints WHERE thread = $1) + \
                     (SELECT COALESCE(SUM(OCTET_LENGTH(data)), 0) FROM catena_graph_pending WHERE thread = $1))::BIGINT",
        )
        .bind(thread)
        .fetch_one(&self.pool)
        .await
        .map_err(error)?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    async fn quarantine(&self, thread: &str, kind: &str, id: i64, data: &str, reason: &str) -> Result<()> {
        tracing::warn!(
            thread,
            kind,
            id,
            reason,
            "unreadable graph checkpoint row moved to catena_graph_quarantine"
        );
        let mut tx = self.pool.begin().await.map_err(error)?;
        sqlx::query(
            "INSERT INTO catena_graph_quarantine (thread, kind, id, data, reason, moved_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(thread)
        .bind(kind)
        .bind(id)
        .bind(data)
        .bind(reason)
        .bind(to_i64(super::run::now_ms()))
        .execute(&mut *tx)
        .await
        .map_err(error)?;
        let delete = if kind == "checkpoint" {
            "DELETE FROM catena_graph_checkpoints WHERE thread = $1 AND id = $2"
        } else {
            "DELETE FROM catena_graph_pending WHERE thread = $1 AND seq = $2"
        };
        sqlx::query(delete).bind(thread).bind(id).execute(&mut *tx).await.map_err(error)?;
        tx.commit().await.map_err(error)
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

#[async_trait]
impl Checkpointer for PostgresCheckpointer {
    async fn put(&self, thread: &str, checkpoint: &Checkpoint) -> Result<()> {
        let data = serde_json::to_string(checkpoint)
            .map_err(|e| Error::store(format!("a checkpoint does not serialize: {e}")))?;
        let mut tx = self.pool.begin().await.map_err(error)?;
        sqlx::query(
            "INSERT INTO catena_graph_checkpoints (thread, id, parent, step, created_at_ms, data) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(thread)
        .bind(to_i64(checkpoint.id))
        .bind(checkpoint.parent.map(to_i64))
        .bind(checkpoint.step)
        .bind(to_i64(checkpoint.created_at_ms))
        .bind(&data)
        .execute(&mut *tx)
        .await
        .map_err(error)?;
        if let Some(parent) = checkpoint.parent {
            sqlx::query("DELETE FROM catena_graph_pending WHERE thread = $1 AND checkpoint = $2")
                .bind(thread)
                .bind(to_i64(parent))
                .execute(&mut *tx)
                .await
                .map_err(error)?;
        }
        tx.commit().await.map_err(error)
    }

    async fn put_pending(&self, thread: &str, at: u64, write: &PendingWrite) -> Result<()> {
        let data = serde_json::to_string(write)
            .map_err(|e| Error::store(format!("a pending write does not serialize: {e}")))?;
        // A new row (a new seq) even when the task wrote before, so the order saved is kept.
        let mut tx = self.pool.begin().await.map_err(error)?;
        sqlx::query("DELETE FROM catena_graph_pending WHERE thread = $1 AND checkpoint = $2 AND task = $3")
            .bind(thread)
            .bind(to_i64(at))
            .bind(write.task())
            .execute(&mut *tx)
            .await
            .map_err(error)?;
        sqlx::query(
            "INSERT INTO catena_graph_pending (thread, checkpoint, task, data) VALUES ($1, $2, $3, $4)",
        )
        .bind(thread)
        .bind(to_i64(at))
        .bind(write.task())
        .bind(&data)
        .execute(&mut *tx)
        .await
        .map_err(error)?;
        tx.commit().await.map_err(error)
    }

    async fn checkpoints(&self, thread: &str) -> Result<Vec<Checkpoint>> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, data FROM catena_graph_checkpoints WHERE thread = $1 ORDER BY id")
                .bind(thread)
                .fetch_all(&self.pool)
                .await
                .map_err(error)?;
        self.read_rows(thread, "checkpoint", rows).await
    }

    async fn pending(&self, thread: &str, at: u64) -> Result<Vec<PendingWrite>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, data FROM catena_graph_pending WHERE thread = $1 AND checkpoint = $2 ORDER BY seq",
        )
        .bind(thread)
        .bind(to_i64(at))
        .fetch_all(&self.pool)
        .await
        .map_err(error)?;
        self.read_rows(thread, "pending", rows).await
    }

    async fn threads(&self) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT DISTINCT thread FROM catena_graph_checkpoints ORDER BY thread")
            .fetch_all(&self.pool)
            .await
            .map_err(error)
    }

    async fn delete_thread(&self, thread: &str) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(error)?;
        for delete in [
            "DELETE FROM catena_graph_checkpoints WHERE thread = $1",
            "DELETE FROM catena_graph_pending WHERE thread = $1",
        ] {
            sqlx::query(delete).bind(thread).execute(&mut *tx).await.map_err(error)?;
        }
        tx.commit().await.map_err(error)
    }

    async fn prune(&self, thread: &str, rewrite: &[Checkpoint], delete: &[u64]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(error)?;
        for checkpoint in rewrite {
            let data = serde_json::to_string(checkpoint)
                .map_err(|e| Error::store(format!("a checkpoint does not serialize: {e}")))?;
            sqlx::query("UPDATE catena_graph_checkpoints SET data = $1 WHERE thread = $2 AND id = $3")
                .bind(&data)
                .bind(thread)
                .bind(to_i64(checkpoint.id))
                .execute(&mut *tx)
                .await
                .map_err(error)?;
        }
        for id in delete {
            for statement in [
                "DELETE FROM catena_graph_checkpoints WHERE thread = $1 AND id = $2",
                "DELETE FROM catena_graph_pending WHERE thread = $1 AND checkpoint = $2",
            ] {
                sqlx::query(statement)
                    .bind(thread)
                    .bind(to_i64(*id))
                    .execute(&mut *tx)
                    .await
                    .map_err(error)?;
            }
        }
        tx.commit().await.map_err(error)
    }
}
