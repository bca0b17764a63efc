//! The tables, created and versioned by the store itself.

use mooring_core::store::StoreError;

use crate::link::{Db, Failure, NAME};

/// The version of the tables this build of Mooring creates and reads.
pub const SCHEMA_VERSION: i32 = 2;

/// Serialises schema changes between processes that start at once (any constant will do;
/// this one spells "mooring" in ASCII).
const SCHEMA_LOCK: i64 = 0x006d_6f6f_7269_6e67;

/// Records: the same keys and versioned, checksummed values as every key-value store
/// (`mooring_core::store::layout`). `bytea` compares bytewise, so the primary key's order is
/// the layout's order.
const CREATE: &str = "
CREATE TABLE IF NOT EXISTS mooring_schema (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS mooring_records (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS mooring_owners (
    session bytea PRIMARY KEY,
    name text NOT NULL,
    epoch bigint NOT NULL,
    holder text NOT NULL,
    lease_until timestamptz NOT NULL
);
";

/// Version 2 (issue 32): who holds a session is a name *and* an instance drawn per process,
/// so that two processes given the same name cannot both win; the client identifier of each
/// session, so that one identifier owned under two session keys is noticed; and the last
/// commit of each owner's epoch, so that a commit whose answer was lost can be read back.
const VERSION_2: &str = "
ALTER TABLE mooring_owners ADD COLUMN IF NOT EXISTS instance text NOT NULL DEFAULT '';
ALTER TABLE mooring_owners ADD COLUMN IF NOT EXISTS client_id text;
CREATE INDEX IF NOT EXISTS mooring_owners_client_id ON mooring_owners (client_id);
CREATE TABLE IF NOT EXISTS mooring_commits (
    session bytea NOT NULL,
    epoch bigint NOT NULL,
    last bigint NOT NULL,
    PRIMARY KEY (session, epoch)
);
";

const LOCK: &str = "SELECT pg_advisory_xact_lock($1)";
const VERSION: &str = "SELECT version FROM mooring_schema";
const SET_VERSION: &str = "INSERT INTO mooring_schema (version) VALUES ($1)";
const MIGRATED: &str = "UPDATE mooring_schema SET version = $1";

/// Creates the tables if they are missing, brings an older version's up to this one, and
/// checks that their version is one this build reads.
pub(crate) fn ensure(db: &mut Db) -> Result<(), Failure> {
    // One transaction; a failure part-way drops the connection, and the server rolls it back.
    db.batch_execute("BEGIN")?;
    db.execute(LOCK, &[&SCHEMA_LOCK])?;
    db.batch_execute(CREATE)?;
    let version: Option<i32> = db
        .query_opt(VERSION, &[])?
        .map(|row| row.try_get(0))
        .transpose()?;
    match version {
        None => {
            db.batch_execute(VERSION_2)?;
            db.execute(SET_VERSION, &[&SCHEMA_VERSION])?;
        }
        Some(1) => {
            // Additive: a process of version 1 still running keeps working until it stops.
            db.batch_execute(VERSION_2)?;
            db.execute(MIGRATED, &[&SCHEMA_VERSION])?;
        }
        Some(SCHEMA_VERSION) => {}
        Some(other) => {
            db.batch_execute("ROLLBACK")?;
            return Err(Failure::Store(StoreError::Backend {
                backend: NAME,
                message: format!(
                    "the database holds Mooring's schema version {other}; this build reads \
                     versions 1 to {SCHEMA_VERSION} (written by a newer Mooring?)"
                ),
                source: None,
            }));
        }
    }
    db.batch_execute("COMMIT")?;
    Ok(())
}
