//! Schema introspection and the schema text a model reads.
//!
//! The rendering follows LangChain's `SQLDatabase.get_table_info`, which text-to-SQL prompts and
//! papers have settled on: each table as a `CREATE TABLE` statement with its keys, then a comment
//! with a few sample rows so the model sees what values look like (`'Germany'`, not `'DE'`).

use std::collections::BTreeMap;

use catena_core::{Embedder, Error, Result, RunContext};
use serde::Serialize;
use serde_json::Value;

use super::database::{SqlDatabase, cell_text, cut};
use super::guard::SqlDialect;

/// One column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnInfo {
    /// Its name.
    pub name: String,
    /// Its declared type (`INTEGER`, `NVARCHAR(160)`, `character varying(160)`...).
    pub data_type: String,
    /// Whether it may be NULL.
    pub nullable: bool,
}

/// A foreign key: `columns` of this table reference `ref_columns` of `ref_table`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignKey {
    /// The referencing columns.
    pub columns: Vec<String>,
    /// The referenced table.
    pub ref_table: String,
    /// The referenced columns.
    pub ref_columns: Vec<String>,
}

/// One table as introspected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableInfo {
    /// Its name, as the database spells it.
    pub name: String,
    /// Its columns in order.
    pub columns: Vec<ColumnInfo>,
    /// Primary key columns.
    pub primary_key: Vec<String>,
    /// Foreign keys.
    pub foreign_keys: Vec<ForeignKey>,
    /// Index definitions (empty unless [`SchemaOptions::indexes`]).
    pub indexes: Vec<String>,
    /// A few rows, cells as JSON.
    pub sample_rows: Vec<Vec<Value>>,
    /// A description given by the application, rendered as a comment.
    pub description: Option<String>,
}

/// What [`SqlDatabase::schema`] reads and how the schema is rendered.
#[derive(Debug, Clone)]
pub struct SchemaOptions {
    /// Only these tables (case-insensitive); all when `None`.
    pub include_tables: Option<Vec<String>>,
    /// Never these tables.
    pub ignore_tables: Vec<String>,
    /// Sample rows per table (default 3; 0 for none).
    pub sample_rows: usize,
    /// Sample cells are cut to this many characters (default 100).
    pub max_cell_chars: usize,
    /// Include index definitions (default false).
    pub indexes: bool,
    /// Descriptions per table, shown to the model and used to pick relevant tables.
    pub descriptions: BTreeMap<String, String>,
}

impl Default for SchemaOptions {
    fn default() -> Self {
        Self {
            include_tables: None,
            ignore_tables: Vec::new(),
            sample_rows: 3,
            max_cell_chars: 100,
            indexes: false,
            descriptions: BTreeMap::new(),
        }
    }
}

impl SchemaOptions {
    fn wants(&self, table: &str) -> bool {
        let lower = table.to_lowercase();
        let included =
            self.include_tables.as_ref().is_none_or(|list| list.iter().any(|t| t.to_lowercase() == lower));
        included && !self.ignore_tables.iter().any(|t| t.to_lowercase() == lower)
    }
}

/// The tables of a database, ready to render into a prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schema {
    /// The dialect.
    #[serde(skip)]
    pub dialect: SqlDialect,
    /// The tables, sorted by name.
    pub tables: Vec<TableInfo>,
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl TableInfo {
    /// The table as `CREATE TABLE` text followed by its sample rows in a comment.
    #[must_use]
    pub fn render(&self, max_cell_chars: usize) -> String {
        let mut lines: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let null = if c.nullable { "" } else { " NOT NULL" };
                format!("\t{} {}{null}", quote_ident(&c.name), c.data_type)
            })
            .collect();
        if !self.primary_key.is_empty() {
            let cols: Vec<String> = self.primary_key.iter().map(|c| quote_ident(c)).collect();
            lines.push(format!("\tPRIMARY KEY ({})", cols.join(", ")));
        }
        for fk in &self.foreign_keys {
            let cols: Vec<String> = fk.columns.iter().map(|c| quote_ident(c)).collect();
            let refs: Vec<String> = fk.ref_columns.iter().map(|c| quote_ident(c)).collect();
            lines.push(format!(
                "\tFOREIGN KEY({}) REFERENCES {} ({})",
                cols.join(", "),
                quote_ident(&fk.ref_table),
                refs.join(", ")
            ));
        }
        let mut out = String::new();
        if let Some(description) = &self.description {
            out.push_str(&format!("-- {}\n", description.replace('\n', " ")));
        }
        out.push_str(&format!("CREATE TABLE {} (\n{}\n)", quote_ident(&self.name), lines.join(", \n")));
        for index in &self.indexes {
            out.push_str(&format!("\n{index}"));
        }
        if !self.sample_rows.is_empty() {
            let header: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
            out.push_str(&format!(
                "\n\n/*\n{} rows from {} table:\n{}",
                self.sample_rows.len(),
                self.name,
                header.join("\t")
            ));
            for row in &self.sample_rows {
                let cells: Vec<String> = row.iter().map(|v| cut(&cell_text(v), max_cell_chars)).collect();
                out.push('\n');
                out.push_str(&cells.join("\t"));
            }
            out.push_str("\n*/");
        }
        out
    }

    /// A one-line summary (name, description, columns) for picking relevant tables by embedding.
    #[must_use]
    pub fn summary(&self) -> String {
        let columns: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        match &self.description {
            Some(d) => format!("{}: {d} Columns: {}", self.name, columns.join(", ")),
            None => format!("{}: {}", self.name, columns.join(", ")),
        }
    }
}

impl Schema {
    /// Every table rendered, separated by blank lines.
    #[must_use]
    pub fn render(&self, max_cell_chars: usize) -> String {
        let parts: Vec<String> = self.tables.iter().map(|t| t.render(max_cell_chars)).collect();
        parts.join("\n\n")
    }

    /// The table names.
    #[must_use]
    pub fn table_names(&self) -> Vec<String> {
        self.tables.iter().map(|t| t.name.clone()).collect()
    }

    /// A schema with only the named tables (case-insensitive).
    #[must_use]
    pub fn only(&self, names: &[String]) -> Self {
        let lower: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
        let tables = self.tables.iter().filter(|t| lower.contains(&t.name.to_lowercase())).cloned().collect();
        Self { dialect: self.dialect, tables }
    }

    /// The `k` tables whose summaries are most similar to `question`, plus the tables their
    /// foreign keys reference (a join needs both ends), in schema order.
    pub async fn relevant_tables(
        &self,
        question: &str,
        embedder: &dyn Embedder,
        k: usize,
        ctx: &RunContext,
    ) -> Result<Vec<String>> {
        if self.tables.len() <= k {
            return Ok(self.table_names());
        }
        let mut texts: Vec<String> = self.tables.iter().map(TableInfo::summary).collect();
        texts.push(question.to_owned());
        let vectors = embedder.embed(&texts, ctx).await?;
        let (query, tables) = vectors
            .split_last()
            .ok_or_else(|| Error::store("the embedder returned no vectors for the table summaries"))?;
        let mut scored: Vec<(f32, &TableInfo)> = tables
            .iter()
            .zip(&self.tables)
            .map(|(v, t)| (catena_core::cosine_similarity(v, query), t))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut chosen: Vec<String> = scored.iter().take(k).map(|(_, t)| t.name.to_lowercase()).collect();
        for (_, table) in scored.iter().take(k) {
            for fk in &table.foreign_keys {
                let name = fk.ref_table.to_lowercase();
                if !chosen.contains(&name) {
                    chosen.push(name);
                }
            }
        }
        Ok(self
            .tables
            .iter()
            .filter(|t| chosen.contains(&t.name.to_lowercase()))
            .map(|t| t.name.clone())
            .collect())
    }
}

fn text_at(row: &[Value], i: usize) -> String {
    match row.get(i) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

impl SqlDatabase {
    /// Reads the tables, columns, keys (and indexes, sample rows) the options ask for.
    pub async fn schema(&self, options: &SchemaOptions) -> Result<Schema> {
        let mut tables = match self.dialect() {
            SqlDialect::Sqlite => self.sqlite_tables(options).await?,
            SqlDialect::Postgres => self.postgres_tables(options).await?,
        };
        for table in &mut tables {
            if options.sample_rows > 0 {
                let sql = format!("SELECT * FROM {} LIMIT {}", quote_ident(&table.name), options.sample_rows);
                table.sample_rows = self.execute_unguarded(&sql).await?.rows;
            }
            table.description = options
                .descriptions
                .iter()
                .find(|(name, _)| name.to_lowercase() == table.name.to_lowercase())
                .map(|(_, d)| d.clone());
        }
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Schema { dialect: self.dialect(), tables })
    }

    async fn sqlite_tables(&self, options: &SchemaOptions) -> Result<Vec<TableInfo>> {
        let names = self
            .execute_unguarded(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .await?;
        let mut tables = Vec::new();
        for row in &names.rows {
            let name = text_at(row, 0);
            if !options.wants(&name) {
                continue;
            }
            let quoted = quote_literal(&name);
            // table_info: cid, name, type, notnull, dflt_value, pk (1-based position in the key).
            let cols = self.execute_unguarded(&format!("SELECT * FROM pragma_table_info({quoted})")).await?;
            let mut primary: Vec<(i64, String)> = Vec::new();
            let columns = cols
                .rows
                .iter()
                .map(|c| {
                    let pk = c.get(5).and_then(Value::as_i64).unwrap_or(0);
                    if pk > 0 {
                        primary.push((pk, text_at(c, 1)));
                    }
                    ColumnInfo {
                        name: text_at(c, 1),
                        data_type: text_at(c, 2),
                        nullable: c.get(3).and_then(Value::as_i64) == Some(0) && pk == 0,
                    }
                })
                .collect();
            primary.sort();
            // foreign_key_list: id, seq, table, from, to, ...
            let fks =
                self.execute_unguarded(&format!("SELECT * FROM pragma_foreign_key_list({quoted})")).await?;
            let mut grouped: BTreeMap<i64, ForeignKey> = BTreeMap::new();
            for fk in &fks.rows {
                let id = fk.first().and_then(Value::as_i64).unwrap_or(0);
                let entry = grouped.entry(id).or_insert_with(|| ForeignKey {
                    columns: Vec::new(),
                    ref_table: text_at(fk, 2),
                    ref_columns: Vec::new(),
                });
                entry.columns.push(text_at(fk, 3));
                entry.ref_columns.push(text_at(fk, 4));
            }
            let mut indexes = Vec::new();
            if options.indexes {
                let sql = format!(
                    "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = {quoted} AND sql IS NOT NULL"
                );
                indexes = self.execute_unguarded(&sql).await?.rows.iter().map(|r| text_at(r, 0)).collect();
            }
            tables.push(TableInfo {
                name,
                columns,
                primary_key: primary.into_iter().map(|(_, c)| c).collect(),
                foreign_keys: grouped.into_values().collect(),
                indexes,
                sample_rows: Vec::new(),
                description: None,
            });
        }
        Ok(tables)
    }

    async fn postgres_tables(&self, options: &SchemaOptions) -> Result<Vec<TableInfo>> {
        let schema = quote_literal(&self.options().schema);
        let cols = self
            .execute_unguarded(&format!(
                "SELECT c.table_name::text, c.column_name::text, \
                   CASE WHEN c.character_maximum_length IS NOT NULL \
                        THEN c.data_type || '(' || c.character_maximum_length || ')' \
                        WHEN c.data_type = 'numeric' AND c.numeric_precision IS NOT NULL \
                        THEN 'numeric(' || c.numeric_precision || ',' || c.numeric_scale || ')' \
                        ELSE c.data_type END, \
                   c.is_nullable::text \
                 FROM information_schema.columns c \
                 JOIN information_schema.tables t \
                   ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
                 WHERE c.table_schema = {schema} AND t.table_type = 'BASE TABLE' \
                 ORDER BY c.table_name, c.ordinal_position"
            ))
            .await?;
        let mut tables: BTreeMap<String, TableInfo> = BTreeMap::new();
        for row in &cols.rows {
            let name = text_at(row, 0);
            if !options.wants(&name) {
                continue;
            }
            tables
                .entry(name.clone())
                .or_insert_with(|| TableInfo {
                    name,
                    columns: Vec::new(),
                    primary_key: Vec::new(),
                    foreign_keys: Vec::new(),
                    indexes: Vec::new(),
                    sample_rows: Vec::new(),
                    description: None,
                })
                .columns
                .push(ColumnInfo {
                    name: text_at(row, 1),
                    data_type: text_at(row, 2),
                    nullable: text_at(row, 3) == "YES",
                });
        }
        // Keys from pg_constraint: one row per key column, in key order.
        let keys = self
            .execute_unguarded(&format!(
                "SELECT con.conname::text, con.contype::text, src.relname::text, a.attname::text, \
                   dst.relname::text, fa.attname::text \
                 FROM pg_constraint con \
                 JOIN pg_class src ON src.oid = con.conrelid \
                 JOIN pg_namespace ns ON ns.oid = src.relnamespace \
                 CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, n) \
                 JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum \
                 LEFT JOIN pg_class dst ON dst.oid = con.confrelid \
                 LEFT JOIN pg_attribute fa ON fa.attrelid = con.confrelid AND fa.attnum = con.confkey[k.n] \
                 WHERE ns.nspname = {schema} AND con.contype IN ('p', 'f') \
                 ORDER BY con.conname, k.n"
            ))
            .await?;
        let mut fks: BTreeMap<String, (String, ForeignKey)> = BTreeMap::new();
        for row in &keys.rows {
            let (constraint, kind, table) = (text_at(row, 0), text_at(row, 1), text_at(row, 2));
            let Some(info) = tables.get_mut(&table) else { continue };
            if kind == "p" {
                info.primary_key.push(text_at(row, 3));
            } else {
                let entry = fks.entry(constraint).or_insert_with(|| {
                    (
                        table.clone(),
                        ForeignKey {
                            columns: Vec::new(),
                            ref_table: text_at(row, 4),
                            ref_columns: Vec::new(),
                        },
                    )
                });
                entry.1.columns.push(text_at(row, 3));
                entry.1.ref_columns.push(text_at(row, 5));
            }
        }
        for (table, fk) in fks.into_values() {
            if let Some(info) = tables.get_mut(&table) {
                info.foreign_keys.push(fk);
            }
        }
        if options.indexes {
            let indexes = self
                .execute_unguarded(&format!(
                    "SELECT tablename::text, indexdef FROM pg_indexes WHERE schemaname = {schema} ORDER BY indexname"
                ))
                .await?;
            for row in &indexes.rows {
                if let Some(info) = tables.get_mut(&text_at(row, 0)) {
                    info.indexes.push(text_at(row, 1));
                }
            }
        }
        Ok(tables.into_values().collect())
    }
}
