//! The files provider on PostgreSQL: a row per file in `llama_stack_files` and its bytes in
//! `llama_stack_file_parts`, written in one transaction so a file is whole or absent, and read
//! from one snapshot so a concurrent delete never yields half a file. Nothing is cached in the
//! process: every replica on the database sees every file at once.

use async_trait::async_trait;
use futures::TryStreamExt;
use llama_stack_core::{Error, ErrorKind, Result};
use llama_stack_memory::files::{
    FileListQuery, FileObject, FilePage, FilesProvider, NewFile, file_not_found as not_found,
};
use llama_stack_storage::PostgresSettings;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, Row, Transaction};

use crate::config::PostgresFilesConfig;
use crate::shared::{
    DEFAULT_LIST_LIMIT, StoredFile, default_expiry_secs, is_expired, is_file_id, now, unknown_after,
};

/// This provider's bookkeeping table of applied migrations, apart from the registry's and
/// pgvector's so all three can share one database.
const MIGRATIONS_TABLE: &str = "_llama_stack_files_migrations";

/// The record columns, for `concat!` into the static statements sqlx requires.
macro_rules! columns {
    () => {
        "id, filename, purpose, bytes, created_at, created_at_ns, expires_at, owner::text AS owner"
    };
}

/// One page in upload order, or newest first; `$3`/`$4` is the cursor (`after`'s position).
macro_rules! list_sql {
    ($beyond:literal, $direction:literal) => {
        concat!(
            "SELECT ",
            columns!(),
            " FROM llama_stack_files
             WHERE ($1::text IS NULL OR purpose = $1)
               AND (expires_at IS NULL OR expires_at > $2)
               AND ($3::bigint IS NULL OR (created_at_ns, id) ",
            $beyond,
            " ($3, $4::text))
             ORDER BY created_at_ns ",
            $direction,
            ", id ",
            $direction,
            " LIMIT $5"
        )
    };
}

fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

fn db_error(action: &str, err: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Upstream,
        format!("files (PostgreSQL): {action} failed: {err}"),
    )
    .set_temporary(true)
}

/// `remote::postgres` for the files API.
pub struct PostgresFiles {
    pool: PgPool,
    default_expiry_secs: Option<i64>,
    part_bytes: usize,
}

impl PostgresFiles {
    /// Connects and creates the tables when missing. Replicas starting together are safe: the
    /// migrations run under sqlx's advisory lock.
    pub async fn connect(config: &PostgresFilesConfig) -> Result<PostgresFiles> {
        let settings: PostgresSettings = config.postgres_settings();
        let pool = settings.connect_pool(settings.connect_options()).await?;
        migrator().run(&pool).await.map_err(|e| {
            Error::new(
                ErrorKind::Upstream,
                format!(
                    "cannot create the files tables in database `{}` on PostgreSQL at {}: {e}; \
                     the user `{}` needs the right to create tables there",
                    settings.db,
                    settings.address(),
                    settings.user
                ),
            )
        })?;
        Ok(PostgresFiles {
            pool,
            default_expiry_secs: default_expiry_secs(config.ttl_secs),
            part_bytes: usize::try_from(config.part_bytes).unwrap_or(1 << 20),
        })
    }

    /// Removes the files whose time has passed; each replica may do it, as deleting twice is
    /// harmless.
    async fn purge_expired(&self, now_secs: i64) {
        let done = sqlx::query("DELETE FROM llama_stack_files WHERE expires_at <= $1")
            .bind(now_secs)
            .execute(&self.pool)
            .await;
        match done {
            Ok(done) if done.rows_affected() > 0 => {
                tracing::debug!(count = done.rows_affected(), "Removed expired files")
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "Could not remove expired files"),
        }
    }

    /// The live record of `file_id` within `tx`; an expired one is not found (and removed by
    /// the next listing or upload, not here: `tx` already holds a connection of the pool).
    async fn live(&self, tx: &mut Transaction<'_, Postgres>, file_id: &str) -> Result<StoredFile> {
        if !is_file_id(file_id) {
            return Err(not_found(file_id));
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM llama_stack_files WHERE id = $1"
        ))
        .bind(file_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| db_error("reading a file record", e))?;
        let record = row
            .map(|row| decode(&row))
            .transpose()?
            .ok_or_else(|| not_found(file_id))?;
        if is_expired(&record.file, now().0) {
            return Err(not_found(file_id));
        }
        Ok(record)
    }

    async fn begin(&self, read_only: bool) -> Result<Transaction<'_, Postgres>> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| db_error("starting a transaction", e))?;
        if read_only {
            // One snapshot for the record and all its parts.
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error("starting a transaction", e))?;
        }
        Ok(tx)
    }
}

fn decode(row: &PgRow) -> Result<StoredFile> {
    let bytes: i64 = row.get("bytes");
    let owner: Option<String> = row.get("owner");
    let owner = owner
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| Error::internal(format!("files (PostgreSQL): an owner is unreadable: {e}")))?;
    Ok(StoredFile {
        file: FileObject {
            object: "file".into(),
            id: row.get("id"),
            bytes: bytes.max(0) as u64,
            created_at: row.get("created_at"),
            expires_at: row.get("expires_at"),
            filename: row.get("filename"),
            purpose: row.get("purpose"),
            owner,
        },
        created_at_ns: row.get("created_at_ns"),
    })
}

#[async_trait]
impl FilesProvider for PostgresFiles {
    async fn create(&self, file: NewFile) -> Result<FileObject> {
        let record = StoredFile::new(&file, self.default_expiry_secs)?;
        self.purge_expired(record.file.created_at).await;
        let owner = record
            .file
            .owner
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| Error::internal(format!("files: encoding an owner failed: {e}")))?;
        let mut tx = self.begin(false).await?;
        sqlx::query(
            "INSERT INTO llama_stack_files
               (id, filename, purpose, bytes, created_at, created_at_ns, expires_at, owner)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)",
        )
        .bind(&record.file.id)
        .bind(&record.file.filename)
        .bind(&record.file.purpose)
        .bind(i64::try_from(record.file.bytes).unwrap_or(i64::MAX))
        .bind(record.file.created_at)
        .bind(record.created_at_ns)
        .bind(record.file.expires_at)
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("storing a file record", e))?;
        for (part, data) in file.content.chunks(self.part_bytes).enumerate() {
            sqlx::query(
                "INSERT INTO llama_stack_file_parts (file_id, part, data) VALUES ($1, $2, $3)",
            )
            .bind(&record.file.id)
            .bind(i32::try_from(part).unwrap_or(i32::MAX))
            .bind(data)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("storing a file's bytes", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| db_error("committing an upload", e))?;
        Ok(record.file)
    }

    async fn list(&self, query: &FileListQuery) -> Result<FilePage> {
        let now_secs = now().0;
        self.purge_expired(now_secs).await;
        let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        // The cursor must be a file of this very listing (same purpose, live), as in every
        // other files provider.
        let cursor: Option<i64> = match &query.after {
            None => None,
            Some(after) => Some(
                sqlx::query_scalar(
                    "SELECT created_at_ns FROM llama_stack_files WHERE id = $1
                       AND ($2::text IS NULL OR purpose = $2)
                       AND (expires_at IS NULL OR expires_at > $3)",
                )
                .bind(after)
                .bind(&query.purpose)
                .bind(now_secs)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| db_error("reading a file record", e))?
                .ok_or_else(|| unknown_after(after))?,
            ),
        };
        let sql = if query.order_desc {
            list_sql!("<", "DESC")
        } else {
            list_sql!(">", "ASC")
        };
        let rows = sqlx::query(sql)
            .bind(&query.purpose)
            .bind(now_secs)
            .bind(cursor)
            .bind(query.after.as_deref().unwrap_or_default())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error("listing files", e))?;
        let mut data = rows
            .iter()
            .map(|row| decode(row).map(|r| r.file))
            .collect::<Result<Vec<_>>>()?;
        let has_more = data.len() > limit;
        data.truncate(limit);
        Ok(FilePage { data, has_more })
    }

    async fn get(&self, file_id: &str) -> Result<FileObject> {
        let mut tx = self.begin(true).await?;
        Ok(self.live(&mut tx, file_id).await?.file)
    }

    async fn content(&self, file_id: &str) -> Result<Vec<u8>> {
        let mut tx = self.begin(true).await?;
        let record = self.live(&mut tx, file_id).await?;
        let mut content = Vec::with_capacity(usize::try_from(record.file.bytes).unwrap_or(0));
        {
            let mut parts = sqlx::query_scalar::<_, Vec<u8>>(
                "SELECT data FROM llama_stack_file_parts WHERE file_id = $1 ORDER BY part",
            )
            .bind(file_id)
            .fetch(&mut *tx);
            while let Some(part) = parts
                .try_next()
                .await
                .map_err(|e| db_error("reading a file's bytes", e))?
            {
                content.extend_from_slice(&part);
            }
        }
        if content.len() as u64 != record.file.bytes {
            tracing::error!(
                file_id,
                stored = content.len(),
                expected = record.file.bytes,
                "A file's stored bytes do not add up to its size"
            );
            return Err(Error::internal(format!(
                "the bytes of file '{file_id}' are incomplete in the database"
            )));
        }
        Ok(content)
    }

    async fn delete(&self, file_id: &str) -> Result<()> {
        if !is_file_id(file_id) {
            return Err(not_found(file_id));
        }
        let expires_at: Option<Option<i64>> =
            sqlx::query_scalar("DELETE FROM llama_stack_files WHERE id = $1 RETURNING expires_at")
                .bind(file_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| db_error("deleting a file", e))?;
        match expires_at {
            // An expired file was already gone as far as callers could tell.
            Some(Some(at)) if at <= now().0 => Err(not_found(file_id)),
            Some(_) => Ok(()),
            None => Err(not_found(file_id)),
        }
    }
}
