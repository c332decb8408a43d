//! The embedded storage backend: one SQLite file in WAL mode.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::*;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS state (
    tenant TEXT NOT NULL, plugin TEXT NOT NULL, key TEXT NOT NULL,
    value TEXT NOT NULL, expires_at INTEGER,
    PRIMARY KEY (tenant, plugin, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS contacts (
    tenant TEXT NOT NULL, external_id TEXT NOT NULL, plugin TEXT NOT NULL,
    record_type TEXT NOT NULL, name TEXT NOT NULL, company TEXT, email TEXT,
    account_id TEXT, modified_at INTEGER, phones TEXT NOT NULL,
    PRIMARY KEY (tenant, external_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS contact_phones (
    tenant TEXT NOT NULL, e164 TEXT NOT NULL, external_id TEXT NOT NULL,
    PRIMARY KEY (tenant, e164, external_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS contact_phones_by_id ON contact_phones (tenant, external_id);
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL, plugin TEXT NOT NULL, invocation TEXT NOT NULL,
    at INTEGER NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_by_tenant ON log (tenant, id);
CREATE TABLE IF NOT EXISTS usage (
    tenant TEXT NOT NULL, plugin TEXT NOT NULL, day TEXT NOT NULL, counter TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (tenant, plugin, day, counter)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tenant_plugin (
    tenant TEXT NOT NULL, plugin TEXT NOT NULL, enabled INTEGER, config TEXT,
    PRIMARY KEY (tenant, plugin)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schedule_runs (
    tenant TEXT NOT NULL, plugin TEXT NOT NULL, schedule TEXT NOT NULL, last_run INTEGER NOT NULL,
    PRIMARY KEY (tenant, plugin, schedule)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tokens (
    digest TEXT PRIMARY KEY, tenant TEXT NOT NULL, label TEXT NOT NULL, created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL, plugin TEXT NOT NULL, call_id TEXT NOT NULL, event_id TEXT NOT NULL,
    payload TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    host_failures INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL, created_at INTEGER NOT NULL, last_error TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
CREATE INDEX IF NOT EXISTS deliveries_by_call ON deliveries (tenant, plugin, call_id, status, id);
CREATE INDEX IF NOT EXISTS state_expiry ON state (tenant, plugin, expires_at)
    WHERE expires_at IS NOT NULL;
-- Bytes (key + value) and entries each plugin stores per tenant, kept by the triggers below,
-- so that the cap check of a write reads one row instead of summing every key the plugin ever
-- stored. (The cap counts STATE_ROW_OVERHEAD_BYTES per entry on top of `bytes`.)
CREATE TABLE IF NOT EXISTS state_size (
    tenant TEXT NOT NULL, plugin TEXT NOT NULL, bytes INTEGER NOT NULL,
    rows INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, plugin)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS state_size_insert_v3 AFTER INSERT ON state BEGIN
    INSERT INTO state_size (tenant, plugin, bytes, rows)
    VALUES (new.tenant, new.plugin, LENGTH(CAST(new.key AS BLOB)) + LENGTH(CAST(new.value AS BLOB)), 1)
    ON CONFLICT (tenant, plugin) DO UPDATE SET bytes = bytes + excluded.bytes, rows = rows + 1;
END;
CREATE TRIGGER IF NOT EXISTS state_size_update AFTER UPDATE ON state BEGIN
    UPDATE state_size SET bytes = bytes
        - LENGTH(CAST(old.key AS BLOB)) - LENGTH(CAST(old.value AS BLOB))
        + LENGTH(CAST(new.key AS BLOB)) + LENGTH(CAST(new.value AS BLOB))
    WHERE tenant = new.tenant AND plugin = new.plugin;
END;
CREATE TRIGGER IF NOT EXISTS state_size_delete_v3 AFTER DELETE ON state BEGIN
    UPDATE state_size SET bytes = bytes - LENGTH(CAST(old.key AS BLOB)) - LENGTH(CAST(old.value AS BLOB)),
        rows = rows - 1
    WHERE tenant = old.tenant AND plugin = old.plugin;
END;
-- Entries per tenant's phone book, kept by triggers: the cap check of an upsert reads one row.
CREATE TABLE IF NOT EXISTS contact_count (
    tenant TEXT PRIMARY KEY, entries INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS contact_count_insert AFTER INSERT ON contacts BEGIN
    INSERT INTO contact_count (tenant, entries) VALUES (new.tenant, 1)
    ON CONFLICT (tenant) DO UPDATE SET entries = entries + 1;
END;
CREATE TRIGGER IF NOT EXISTS contact_count_delete AFTER DELETE ON contacts BEGIN
    UPDATE contact_count SET entries = entries - 1 WHERE tenant = old.tenant;
END;
-- The readiness probe's row: one write transaction proves the file can still commit.
CREATE TABLE IF NOT EXISTS health (
    id INTEGER PRIMARY KEY CHECK (id = 1), probed_at INTEGER NOT NULL
);
"#;

/// `PRAGMA user_version` of the schema above. 1: `state_size` exists and is filled.
/// 2: `deliveries.host_failures`. 3: `state_size.rows` and `contact_count`, filled.
const SCHEMA_VERSION: i64 = 3;

/// SQLite storage. One connection behind a mutex: SQLite serialises writers anyway, and the
/// statements here are small.
pub struct SqliteStorage {
    conn: Mutex<Connection>,
}

impl SqliteStorage {
    /// Open (or create) the database file.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)
            .map_err(|e| StorageError::Backend(format!("cannot open {}: {e}", path.display())))?;
        Self::init(conn)
    }

    /// A private in-memory database (tests, `replay`).
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        // WAL: readers do not block the writer; NORMAL: a commit survives a process crash
        // (the acknowledgement guarantee we give) without an fsync per statement.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < 3 {
            // state_size counts entries since version 3: its old insert trigger goes, and
            // a file from before gets the column (SCHEMA creates the new triggers).
            conn.execute_batch("DROP TRIGGER IF EXISTS state_size_insert;")?;
            let has_table: i64 = conn.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='state_size'",
                [],
                |r| r.get(0),
            )?;
            let has_rows: i64 = conn.query_row(
                "SELECT COUNT(*) FROM pragma_table_info('state_size') WHERE name='rows'",
                [],
                |r| r.get(0),
            )?;
            if has_table > 0 && has_rows == 0 {
                conn.execute_batch(
                    "ALTER TABLE state_size ADD COLUMN rows INTEGER NOT NULL DEFAULT 0;",
                )?;
            }
            conn.execute_batch("DROP TRIGGER IF EXISTS state_size_delete;")?;
        }
        conn.execute_batch(SCHEMA)?;
        let has_host_failures: i64 = conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('deliveries') WHERE name='host_failures'",
            [],
            |r| r.get(0),
        )?;
        if has_host_failures == 0 {
            // A file from before the column: past host-side failures were not told apart.
            conn.execute_batch(
                "ALTER TABLE deliveries ADD COLUMN host_failures INTEGER NOT NULL DEFAULT 0;",
            )?;
        }
        if version < 3 {
            // A file written before state_size counted entries (or existed), or before
            // contact_count: count what it holds once.
            conn.execute_batch(
                "BEGIN; DELETE FROM state_size; \
                 INSERT INTO state_size (tenant, plugin, bytes, rows) SELECT tenant, plugin, \
                 SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(CAST(value AS BLOB))), COUNT(*) \
                 FROM state GROUP BY tenant, plugin; \
                 DELETE FROM contact_count; \
                 INSERT INTO contact_count (tenant, entries) SELECT tenant, COUNT(*) \
                 FROM contacts GROUP BY tenant; COMMIT;",
            )?;
        }
        if version < SCHEMA_VERSION {
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        // More distinct statements than rusqlite's default cache of 16.
        conn.set_prepared_statement_cache_capacity(64);
        Ok(SqliteStorage {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (statements are
        // atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every statement goes through the connection's prepared-statement cache: parsing and
/// planning these small statements cost as much as running them (profiled: an eighth of the
/// host's CPU per call event went to SQLite's parser before).
trait Cached {
    fn cached_execute<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn cached_query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn cached_execute<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn cached_query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Bytes (keys + values + [`STATE_ROW_OVERHEAD_BYTES`] per entry) a plugin stores for a
/// tenant, and of those the entry `key` (0 if absent). LENGTH of a TEXT counts characters; the cap is in bytes, so both are cast to BLOB.
fn stored_bytes(
    conn: &Connection,
    tenant: &str,
    plugin: &str,
    key: &str,
) -> rusqlite::Result<(u64, u64)> {
    let total: i64 = conn
        .cached_query_row(
            "SELECT bytes + rows * ?3 FROM state_size WHERE tenant=?1 AND plugin=?2",
            params![tenant, plugin, STATE_ROW_OVERHEAD_BYTES as i64],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let this: i64 = conn
        .cached_query_row(
            "SELECT LENGTH(CAST(key AS BLOB)) + LENGTH(CAST(value AS BLOB)) + ?4 FROM state \
             WHERE tenant=?1 AND plugin=?2 AND key=?3",
            params![tenant, plugin, key, STATE_ROW_OVERHEAD_BYTES as i64],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    Ok((total.max(0) as u64, this.max(0) as u64))
}

fn contact_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(ContactRow, String)> {
    Ok((
        ContactRow {
            external_id: row.get(0)?,
            plugin: row.get(1)?,
            record_type: row.get(2)?,
            name: row.get(3)?,
            company: row.get(4)?,
            email: row.get(5)?,
            account_id: row.get(6)?,
            modified_at: row.get(7)?,
            phones: Vec::new(),
        },
        row.get::<_, String>(8)?,
    ))
}

fn decode_phones(json: &str) -> Result<Vec<PhoneRow>> {
    let raw: Vec<(String, String, Option<String>)> =
        serde_json::from_str(json).map_err(|e| StorageError::Corrupt(format!("phones: {e}")))?;
    Ok(raw
        .into_iter()
        .map(|(label, number, e164)| PhoneRow {
            label,
            number,
            e164,
        })
        .collect())
}

fn delivery_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    let status: String = row.get(6)?;
    Ok(Delivery {
        id: row.get(0)?,
        tenant: row.get(1)?,
        plugin: row.get(2)?,
        call_id: row.get(3)?,
        event_id: row.get(4)?,
        payload: row.get(5)?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Dead),
        attempts: row.get(7)?,
        next_at: row.get(8)?,
        created_at: row.get(9)?,
        last_error: row.get(10)?,
        host_failures: row.get(11)?,
    })
}

// Plugin state statements shared by the direct writes and the buffered ones (state_apply).
// Expired entries are gone for the plugin (state_get hides them): a write drops them first so
// that they neither count toward the cap nor pile up.
const PURGE_EXPIRED_STATE: &str =
    "DELETE FROM state WHERE tenant=?1 AND plugin=?2 AND expires_at <= ?3";
const UPSERT_STATE: &str = "INSERT INTO state (tenant, plugin, key, value, expires_at) \
     VALUES (?1,?2,?3,?4,?5) ON CONFLICT (tenant, plugin, key) \
     DO UPDATE SET value=excluded.value, expires_at=excluded.expires_at";
const DELETE_STATE: &str = "DELETE FROM state WHERE tenant=?1 AND plugin=?2 AND key=?3";

const DELIVERY_COLUMNS: &str = "id, tenant, plugin, call_id, event_id, payload, status, attempts, next_at, created_at, last_error, host_failures";

/// Insert or replace phone-book entries inside the caller's transaction. A replaced entry
/// keeps the plugin that wrote it first as its owner.
fn upsert_contacts(tx: &Connection, tenant: &str, rows: &[ContactRow]) -> Result<()> {
    {
        let mut put = tx.prepare_cached(
            "INSERT INTO contacts (tenant, external_id, plugin, record_type, name, company, email, \
             account_id, modified_at, phones) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10) \
             ON CONFLICT (tenant, external_id) DO UPDATE SET \
             record_type=excluded.record_type, name=excluded.name, company=excluded.company, \
             email=excluded.email, account_id=excluded.account_id, \
             modified_at=excluded.modified_at, phones=excluded.phones",
        )?;
        let mut drop_phones =
            tx.prepare_cached("DELETE FROM contact_phones WHERE tenant=?1 AND external_id=?2")?;
        let mut put_phone = tx.prepare_cached(
            "INSERT OR IGNORE INTO contact_phones (tenant, e164, external_id) VALUES (?1,?2,?3)",
        )?;
        for c in rows {
            let phones: Vec<(&str, &str, Option<&str>)> = c
                .phones
                .iter()
                .map(|p| (p.label.as_str(), p.number.as_str(), p.e164.as_deref()))
                .collect();
            let phones_json =
                serde_json::to_string(&phones).map_err(|e| StorageError::Backend(e.to_string()))?;
            put.execute(params![
                tenant,
                c.external_id,
                c.plugin,
                c.record_type,
                c.name,
                c.company,
                c.email,
                c.account_id,
                c.modified_at,
                phones_json
            ])?;
            drop_phones.execute(params![tenant, c.external_id])?;
            for p in &c.phones {
                if let Some(e164) = &p.e164 {
                    put_phone.execute(params![tenant, e164, c.external_id])?;
                }
            }
        }
    }
    Ok(())
}

/// Remove a phone-book entry inside the caller's transaction; true if it was there.
fn delete_contact(tx: &Connection, tenant: &str, external_id: &str) -> Result<bool> {
    tx.cached_execute(
        "DELETE FROM contact_phones WHERE tenant=?1 AND external_id=?2",
        params![tenant, external_id],
    )?;
    let n = tx.cached_execute(
        "DELETE FROM contacts WHERE tenant=?1 AND external_id=?2",
        params![tenant, external_id],
    )?;
    Ok(n > 0)
}

/// Entries in a tenant's phone book (kept by triggers).
fn contact_count(conn: &Connection, tenant: &str) -> rusqlite::Result<u64> {
    let n: Option<i64> = conn
        .cached_query_row(
            "SELECT entries FROM contact_count WHERE tenant=?1",
            params![tenant],
            |r| r.get(0),
        )
        .optional()?;
    Ok(n.unwrap_or(0).max(0) as u64)
}

impl Storage for SqliteStorage {
    fn health_probe(&self, now_ms: i64) -> Result<()> {
        let mut conn = self.conn();
        // IMMEDIATE: take the write lock at BEGIN, as every real write must.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.cached_execute(
            "INSERT INTO health (id, probed_at) VALUES (1, ?1) \
             ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
            params![now_ms],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn state_get(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<String>> {
        let conn = self.conn();
        Ok(conn
            .cached_query_row(
                "SELECT value FROM state WHERE tenant=?1 AND plugin=?2 AND key=?3 \
                 AND (expires_at IS NULL OR expires_at > ?4)",
                params![tenant, plugin, key, now_ms],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn state_set(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
        value: &str,
        expires_at_ms: Option<i64>,
        max_total_bytes: u64,
    ) -> Result<std::result::Result<(), u64>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        // Expired entries are gone for the plugin (state_get hides them): drop them so they
        // neither count toward the cap nor pile up. Otherwise every key ever written with a
        // TTL (the logger's call -> Task links) would count forever, and once the cap was
        // reached every write, and every call log that needs one, would fail for good.
        tx.cached_execute(
            PURGE_EXPIRED_STATE,
            params![tenant, plugin, crate::clock::now_ms()],
        )?;
        let (stored, replaced) = stored_bytes(&tx, tenant, plugin, key)?;
        let total = stored.saturating_sub(replaced)
            + key.len() as u64
            + value.len() as u64
            + STATE_ROW_OVERHEAD_BYTES;
        if total > max_total_bytes {
            return Ok(Err(max_total_bytes));
        }
        tx.cached_execute(
            UPSERT_STATE,
            params![tenant, plugin, key, value, expires_at_ms],
        )?;
        tx.commit()?;
        Ok(Ok(()))
    }

    fn state_delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<()> {
        self.conn()
            .cached_execute(DELETE_STATE, params![tenant, plugin, key])?;
        Ok(())
    }

    fn state_usage(&self, tenant: &str, plugin: &str, key: &str) -> Result<Option<(u64, u64)>> {
        Ok(Some(stored_bytes(&self.conn(), tenant, plugin, key)?))
    }

    fn state_apply(&self, tenant: &str, plugin: &str, writes: &[StateWrite]) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.cached_execute(
            PURGE_EXPIRED_STATE,
            params![tenant, plugin, crate::clock::now_ms()],
        )?;
        for w in writes {
            match &w.value {
                Some(v) => tx.cached_execute(
                    UPSERT_STATE,
                    params![tenant, plugin, w.key, v, w.expires_at_ms],
                )?,
                None => tx.cached_execute(DELETE_STATE, params![tenant, plugin, w.key])?,
            };
        }
        tx.commit()?;
        Ok(())
    }

    fn contacts_upsert(&self, tenant: &str, rows: &[ContactRow]) -> Result<u32> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        upsert_contacts(&tx, tenant, rows)?;
        tx.commit()?;
        Ok(rows.len() as u32)
    }

    fn contacts_delete(&self, tenant: &str, external_id: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let found = delete_contact(&tx, tenant, external_id)?;
        tx.commit()?;
        Ok(found)
    }

    fn contacts_get(&self, tenant: &str, external_id: &str) -> Result<Option<ContactRow>> {
        let conn = self.conn();
        let found = conn
            .cached_query_row(
                "SELECT external_id, plugin, record_type, name, company, email, account_id, \
                 modified_at, phones FROM contacts WHERE tenant=?1 AND external_id=?2",
                params![tenant, external_id],
                contact_from_row,
            )
            .optional()?;
        match found {
            Some((mut c, phones)) => {
                c.phones = decode_phones(&phones)?;
                Ok(Some(c))
            }
            None => Ok(None),
        }
    }

    fn contacts_lookup(&self, tenant: &str, e164: &str) -> Result<Vec<ContactRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT c.external_id, c.plugin, c.record_type, c.name, c.company, c.email, c.account_id, \
             c.modified_at, c.phones FROM contact_phones p JOIN contacts c \
             ON c.tenant=p.tenant AND c.external_id=p.external_id \
             WHERE p.tenant=?1 AND p.e164=?2 ORDER BY c.modified_at DESC, c.external_id LIMIT 200",
        )?;
        let rows = stmt.query_map(params![tenant, e164], contact_from_row)?;
        let mut out = Vec::new();
        for r in rows {
            let (mut c, phones) = r?;
            c.phones = decode_phones(&phones)?;
            out.push(c);
        }
        Ok(out)
    }

    fn contacts_count(&self, tenant: &str) -> Result<u64> {
        Ok(contact_count(&self.conn(), tenant)?)
    }

    fn contacts_upsert_checked(
        &self,
        tenant: &str,
        rows: &[ContactRow],
        writer: ContactWriter<'_>,
        max_entries: u64,
    ) -> Result<std::result::Result<u32, ContactRefusal>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut new_ids = std::collections::BTreeSet::new();
        {
            let mut owner_of = tx
                .prepare_cached("SELECT plugin FROM contacts WHERE tenant=?1 AND external_id=?2")?;
            for r in rows {
                let owner: Option<String> = owner_of
                    .query_row(params![tenant, r.external_id], |row| row.get(0))
                    .optional()?;
                match (owner, writer) {
                    (None, _) => {
                        new_ids.insert(r.external_id.as_str());
                    }
                    (Some(owner), ContactWriter::Owner(me)) if owner != me => {
                        return Ok(Err(ContactRefusal::NotOwner {
                            external_id: r.external_id.clone(),
                        }));
                    }
                    (Some(_), _) => {}
                }
            }
        }
        let new = new_ids.len() as u64;
        if new > 0 && contact_count(&tx, tenant)?.saturating_add(new) > max_entries {
            return Ok(Err(ContactRefusal::Full { limit: max_entries }));
        }
        upsert_contacts(&tx, tenant, rows)?;
        tx.commit()?;
        Ok(Ok(rows.len() as u32))
    }

    fn contacts_delete_checked(
        &self,
        tenant: &str,
        external_id: &str,
        writer: ContactWriter<'_>,
    ) -> Result<std::result::Result<bool, ContactRefusal>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let owner: Option<String> = tx
            .cached_query_row(
                "SELECT plugin FROM contacts WHERE tenant=?1 AND external_id=?2",
                params![tenant, external_id],
                |r| r.get(0),
            )
            .optional()?;
        if let (Some(owner), ContactWriter::Owner(me)) = (&owner, writer)
            && owner != me
        {
            return Ok(Err(ContactRefusal::NotOwner {
                external_id: external_id.to_string(),
            }));
        }
        let found = delete_contact(&tx, tenant, external_id)?;
        tx.commit()?;
        Ok(Ok(found))
    }

    fn log_append(&self, entries: &[LogEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO log (tenant, plugin, invocation, at, level, message) VALUES (?1,?2,?3,?4,?5,?6)",
            )?;
            for e in entries {
                stmt.execute(params![
                    e.tenant,
                    e.plugin,
                    e.invocation,
                    e.at,
                    e.level,
                    e.message
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn log_read(&self, tenant: &str, limit: u32) -> Result<Vec<LogEntry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, tenant, plugin, invocation, at, level, message FROM log \
             WHERE tenant=?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![tenant, limit], |r| {
            Ok(LogEntry {
                id: r.get(0)?,
                tenant: r.get(1)?,
                plugin: r.get(2)?,
                invocation: r.get(3)?,
                at: r.get(4)?,
                level: r.get(5)?,
                message: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn usage_add(
        &self,
        tenant: &str,
        plugin: &str,
        day: &str,
        counters: &[(&str, i64)],
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO usage (tenant, plugin, day, counter, value) VALUES (?1,?2,?3,?4,?5) \
                 ON CONFLICT (tenant, plugin, day, counter) DO UPDATE SET value = value + excluded.value",
            )?;
            for (name, n) in counters {
                if *n != 0 {
                    stmt.execute(params![tenant, plugin, day, name, n])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn usage_read(&self, tenant: &str) -> Result<Vec<UsageRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT plugin, day, counter, value FROM usage WHERE tenant=?1 ORDER BY day DESC, plugin, counter",
        )?;
        let rows = stmt.query_map(params![tenant], |r| {
            Ok(UsageRow {
                plugin: r.get(0)?,
                day: r.get(1)?,
                counter: r.get(2)?,
                value: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn prune(&self, now_ms: i64, retention: &Retention) -> Result<Pruned> {
        // Small transactions: the connection is shared with every writer of the host.
        const CHUNK: i64 = 5_000;
        let mut pruned = Pruned::default();
        let log_cutoff = retention.log_cutoff_ms(now_ms);
        let keep = i64::try_from(retention.log_rows_per_tenant).unwrap_or(i64::MAX);
        let mut after = String::new();
        // Tenant by tenant, each found through the index (no scan of every line).
        loop {
            // The lock is taken per statement, never across them (it is not re-entrant).
            let next: Option<String> = {
                let conn = self.conn();
                conn.cached_query_row(
                    "SELECT tenant FROM log WHERE tenant > ?1 ORDER BY tenant LIMIT 1",
                    params![after],
                    |r| r.get(0),
                )
                .optional()?
            };
            let Some(tenant) = next else { break };
            after = tenant.clone();
            let tenant = &tenant;
            // Lines are appended in time order: everything below the first line young enough
            // and inside the newest `keep` goes (found through the (tenant, id) index).
            let conn = self.conn();
            let first_young: Option<i64> = conn
                .cached_query_row(
                    "SELECT id FROM log WHERE tenant=?1 AND at >= ?2 ORDER BY id LIMIT 1",
                    params![tenant, log_cutoff],
                    |r| r.get(0),
                )
                .optional()?;
            let first_kept: Option<i64> = conn
                .cached_query_row(
                    "SELECT id FROM log WHERE tenant=?1 ORDER BY id DESC LIMIT 1 OFFSET ?2",
                    params![tenant, keep.saturating_sub(1)],
                    |r| r.get(0),
                )
                .optional()?;
            drop(conn);
            // No young line: all go. No line beyond `keep`: the count keeps them all.
            let below = first_young
                .unwrap_or(i64::MAX)
                .max(first_kept.unwrap_or(i64::MIN));
            loop {
                let n = self.conn().cached_execute(
                    "DELETE FROM log WHERE id IN (SELECT id FROM log WHERE tenant=?1 AND id < ?2 \
                     ORDER BY id LIMIT ?3)",
                    params![tenant, below, CHUNK],
                )?;
                pruned.log_rows += n as u64;
                if (n as i64) < CHUNK {
                    break;
                }
            }
        }
        let dead_cutoff = retention.dead_letter_cutoff_ms(now_ms);
        loop {
            let n = self.conn().cached_execute(
                "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries \
                 WHERE status='dead' AND next_at < ?1 LIMIT ?2)",
                params![dead_cutoff, CHUNK],
            )?;
            pruned.dead_letters += n as u64;
            if (n as i64) < CHUNK {
                break;
            }
        }
        Ok(pruned)
    }

    fn override_get(&self, tenant: &str, plugin: &str) -> Result<Option<TenantPluginOverride>> {
        let conn = self.conn();
        let row: Option<(Option<bool>, Option<String>)> = conn
            .cached_query_row(
                "SELECT enabled, config FROM tenant_plugin WHERE tenant=?1 AND plugin=?2",
                params![tenant, plugin],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            None => Ok(None),
            Some((enabled, config)) => {
                let config = match config {
                    Some(c) => Some(
                        serde_json::from_str(&c)
                            .map_err(|e| StorageError::Corrupt(format!("tenant config: {e}")))?,
                    ),
                    None => None,
                };
                Ok(Some(TenantPluginOverride { enabled, config }))
            }
        }
    }

    fn override_set_enabled(&self, tenant: &str, plugin: &str, enabled: bool) -> Result<()> {
        self.conn().cached_execute(
            "INSERT INTO tenant_plugin (tenant, plugin, enabled) VALUES (?1,?2,?3) \
             ON CONFLICT (tenant, plugin) DO UPDATE SET enabled=excluded.enabled",
            params![tenant, plugin, enabled],
        )?;
        Ok(())
    }

    fn override_set_config(
        &self,
        tenant: &str,
        plugin: &str,
        config: &serde_json::Value,
    ) -> Result<()> {
        self.conn().cached_execute(
            "INSERT INTO tenant_plugin (tenant, plugin, config) VALUES (?1,?2,?3) \
             ON CONFLICT (tenant, plugin) DO UPDATE SET config=excluded.config",
            params![tenant, plugin, config.to_string()],
        )?;
        Ok(())
    }

    fn token_add(&self, digest: &str, tenant: &str, label: &str, now_ms: i64) -> Result<()> {
        self.conn().cached_execute(
            "INSERT INTO tokens (digest, tenant, label, created_at) VALUES (?1,?2,?3,?4)",
            params![digest, tenant, label, now_ms],
        )?;
        Ok(())
    }

    fn token_tenant(&self, digest: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .cached_query_row(
                "SELECT tenant FROM tokens WHERE digest=?1",
                params![digest],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn token_revoke_all(&self, tenant: &str) -> Result<u64> {
        Ok(self
            .conn()
            .cached_execute("DELETE FROM tokens WHERE tenant=?1", params![tenant])?
            as u64)
    }

    fn schedule_last_run(&self, tenant: &str, plugin: &str, schedule: &str) -> Result<Option<i64>> {
        Ok(self
            .conn()
            .cached_query_row(
                "SELECT last_run FROM schedule_runs WHERE tenant=?1 AND plugin=?2 AND schedule=?3",
                params![tenant, plugin, schedule],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn schedule_mark_run(
        &self,
        tenant: &str,
        plugin: &str,
        schedule: &str,
        at_ms: i64,
    ) -> Result<()> {
        self.conn().cached_execute(
            "INSERT INTO schedule_runs (tenant, plugin, schedule, last_run) VALUES (?1,?2,?3,?4) \
             ON CONFLICT (tenant, plugin, schedule) DO UPDATE SET last_run=excluded.last_run",
            params![tenant, plugin, schedule, at_ms],
        )?;
        Ok(())
    }

    fn enqueue(&self, items: &[NewDelivery], now_ms: i64) -> Result<Vec<i64>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut ids = Vec::with_capacity(items.len());
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO deliveries (tenant, plugin, call_id, event_id, payload, status, attempts, \
                 next_at, created_at) VALUES (?1,?2,?3,?4,?5,'pending',0,?6,?6)",
            )?;
            for d in items {
                stmt.execute(params![
                    d.tenant, d.plugin, d.call_id, d.event_id, d.payload, now_ms
                ])?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    fn due(&self, now_ms: i64, limit: u32) -> Result<Vec<Delivery>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.status='pending' AND d.next_at <= ?1 \
             AND d.id = (SELECT MIN(e.id) FROM deliveries e WHERE e.tenant=d.tenant AND \
             e.plugin=d.plugin AND e.call_id=d.call_id AND e.status='pending') \
             ORDER BY d.next_at, d.id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![now_ms, limit], delivery_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn due_for(
        &self,
        tenant: &str,
        plugin: &str,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.tenant=?1 AND d.plugin=?2 \
             AND d.status='pending' AND d.next_at <= ?3 \
             AND d.id = (SELECT MIN(e.id) FROM deliveries e WHERE e.tenant=d.tenant AND \
             e.plugin=d.plugin AND e.call_id=d.call_id AND e.status='pending') \
             ORDER BY d.next_at, d.id LIMIT ?4"
        ))?;
        let rows = stmt.query_map(params![tenant, plugin, now_ms, limit], delivery_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn complete(&self, id: i64) -> Result<()> {
        // Done deliveries are removed: the integration log keeps the record of what happened.
        self.conn()
            .cached_execute("DELETE FROM deliveries WHERE id=?1", params![id])?;
        Ok(())
    }

    fn complete_many(&self, ids: &[i64]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for id in ids {
            tx.cached_execute("DELETE FROM deliveries WHERE id=?1", params![id])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn reschedule(&self, id: i64, next_at_ms: i64, error: &str) -> Result<()> {
        self.conn().cached_execute(
            "UPDATE deliveries SET attempts=attempts+1, next_at=?2, last_error=?3 WHERE id=?1",
            params![id, next_at_ms, error],
        )?;
        Ok(())
    }

    fn reschedule_after_host_failure(&self, id: i64, next_at_ms: i64, error: &str) -> Result<()> {
        self.conn().cached_execute(
            "UPDATE deliveries SET attempts=attempts+1, host_failures=host_failures+1, next_at=?2, \
             last_error=?3 WHERE id=?1",
            params![id, next_at_ms, error],
        )?;
        Ok(())
    }

    fn defer(&self, d: &Delivery, next_at_ms: i64) -> Result<()> {
        self.conn().cached_execute(
            "UPDATE deliveries SET next_at=MAX(next_at, ?2) WHERE id=?1 AND status='pending'",
            params![d.id, next_at_ms],
        )?;
        Ok(())
    }

    fn dead_letter(&self, id: i64, error: &str) -> Result<()> {
        // next_at of a dead letter is when it died: its retention runs from there.
        self.conn().cached_execute(
            "UPDATE deliveries SET status='dead', attempts=attempts+1, last_error=?2, next_at=?3 \
             WHERE id=?1",
            params![id, error, crate::clock::now_ms()],
        )?;
        Ok(())
    }

    fn pause(&self, tenant: &str, plugin: &str, until_ms: i64) -> Result<()> {
        self.conn().cached_execute(
            "UPDATE deliveries SET next_at=MAX(next_at, ?3) WHERE tenant=?1 AND plugin=?2 AND status='pending'",
            params![tenant, plugin, until_ms],
        )?;
        Ok(())
    }

    fn release_backoff(
        &self,
        tenant: &str,
        plugin: &str,
        now_ms: i64,
        pace_ms: i64,
    ) -> Result<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let ids: Vec<i64> = {
            let mut stmt = tx.prepare_cached(
                "SELECT id FROM deliveries WHERE tenant=?1 AND plugin=?2 AND status='pending' \
                 AND attempts > 0 AND next_at > ?3 ORDER BY id",
            )?;
            stmt.query_map(params![tenant, plugin, now_ms], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        for (k, id) in ids.iter().enumerate() {
            let at = now_ms.saturating_add(pace_ms.saturating_mul(k as i64));
            tx.cached_execute(
                "UPDATE deliveries SET next_at=MIN(next_at, ?2) WHERE id=?1",
                params![id, at],
            )?;
        }
        tx.commit()?;
        Ok(ids.len() as u64)
    }

    fn probe_backoff(&self, tenant: &str, plugin: &str, now_ms: i64) -> Result<bool> {
        let n = self.conn().cached_execute(
            "UPDATE deliveries SET next_at=?3 WHERE id = (SELECT id FROM deliveries \
             WHERE tenant=?1 AND plugin=?2 AND status='pending' AND attempts > 0 AND next_at > ?3 \
             ORDER BY next_at, id LIMIT 1)",
            params![tenant, plugin, now_ms],
        )?;
        Ok(n > 0)
    }

    fn backed_off(&self, now_ms: i64) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT DISTINCT tenant, plugin FROM deliveries WHERE status='pending' \
             AND attempts > 0 AND next_at > ?1",
        )?;
        let rows = stmt.query_map(params![now_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn deliveries(
        &self,
        tenant: &str,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE tenant=?1 AND (?2 IS NULL OR status=?2) \
             ORDER BY id LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![tenant, status.map(DeliveryStatus::as_str), limit],
            delivery_from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn replay(&self, tenant: &str, id: i64, now_ms: i64) -> Result<bool> {
        let n = self.conn().cached_execute(
            "UPDATE deliveries SET status='pending', next_at=?3, attempts=0, host_failures=0 \
             WHERE id=?2 AND tenant=?1 AND status='dead'",
            params![tenant, id, now_ms],
        )?;
        Ok(n > 0)
    }

    fn pending_count(&self) -> Result<u64> {
        let n: i64 = self.conn().cached_query_row(
            "SELECT COUNT(*) FROM deliveries WHERE status='pending'",
            [],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(tenant: &str, call: &str, ev: &str) -> NewDelivery {
        NewDelivery {
            tenant: tenant.into(),
            plugin: "p".into(),
            call_id: call.into(),
            event_id: ev.into(),
            payload: "{}".into(),
        }
    }

    #[test]
    fn state_is_scoped_and_expires() {
        let s = SqliteStorage::in_memory().unwrap();
        s.state_set("a", "p", "k", "v", Some(100), 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(
            s.state_get("a", "p", "k", 50).unwrap().as_deref(),
            Some("v")
        );
        assert_eq!(s.state_get("a", "p", "k", 100).unwrap(), None, "expired");
        assert_eq!(
            s.state_get("b", "p", "k", 50).unwrap(),
            None,
            "other tenant"
        );
        assert_eq!(
            s.state_get("a", "q", "k", 50).unwrap(),
            None,
            "other plugin"
        );
    }

    #[test]
    fn state_cap_counts_bytes_not_characters() {
        let s = SqliteStorage::in_memory().unwrap();
        // 30 characters of Japanese are 90 bytes (and each entry counts 32 more)
        s.state_set("a", "p", "k1", &"あ".repeat(30), None, 170)
            .unwrap()
            .unwrap();
        assert_eq!(
            s.state_set("a", "p", "k2", &"x".repeat(20), None, 170)
                .unwrap(),
            Err(170),
            "124 + 54 bytes exceed the 170-byte cap (in characters they would fit)"
        );
    }

    #[test]
    fn state_total_size_is_capped() {
        let s = SqliteStorage::in_memory().unwrap();
        s.state_set("a", "p", "k1", &"x".repeat(60), None, 100)
            .unwrap()
            .unwrap();
        assert_eq!(
            s.state_set("a", "p", "k2", &"x".repeat(60), None, 100)
                .unwrap(),
            Err(100)
        );
        // replacing a key counts only its new size: 2 + 66 + 32
        s.state_set("a", "p", "k1", &"y".repeat(66), None, 100)
            .unwrap()
            .unwrap();
    }

    fn summed_state_bytes(s: &SqliteStorage, tenant: &str, plugin: &str) -> (i64, i64) {
        let conn = s.conn();
        let kept: i64 = conn
            .query_row(
                "SELECT COALESCE(SUM(bytes + rows * ?3), 0) FROM state_size \
                 WHERE tenant=?1 AND plugin=?2",
                params![tenant, plugin, STATE_ROW_OVERHEAD_BYTES as i64],
                |r| r.get(0),
            )
            .unwrap();
        let summed: i64 = conn
            .query_row(
                "SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(CAST(value AS BLOB)) + ?3), 0) \
                 FROM state WHERE tenant=?1 AND plugin=?2",
                params![tenant, plugin, STATE_ROW_OVERHEAD_BYTES as i64],
                |r| r.get(0),
            )
            .unwrap();
        (kept, summed)
    }

    #[test]
    fn kept_state_size_follows_inserts_updates_deletes_and_expiry() {
        let s = SqliteStorage::in_memory().unwrap();
        let past = crate::clock::now_ms() - 1;
        for i in 0..20 {
            s.state_set("a", "p", &format!("k{i}"), &"v".repeat(i), None, 1 << 20)
                .unwrap()
                .unwrap();
        }
        s.state_set("a", "p", "gone-soon", "あいう", Some(past), 1 << 20)
            .unwrap()
            .unwrap();
        s.state_set("a", "p", "k3", "longer value", None, 1 << 20)
            .unwrap()
            .unwrap();
        s.state_delete("a", "p", "k7").unwrap();
        s.state_set("b", "p", "k1", "other tenant", None, 1 << 20)
            .unwrap()
            .unwrap();
        // this write purges the expired key
        s.state_set("a", "p", "k20", "x", None, 1 << 20)
            .unwrap()
            .unwrap();
        let (kept, summed) = summed_state_bytes(&s, "a", "p");
        assert_eq!(kept, summed);
        assert!(kept > 0);
        assert_eq!(s.state_get("a", "p", "gone-soon", 0).unwrap(), None);
        let (kept_b, summed_b) = summed_state_bytes(&s, "b", "p");
        assert_eq!((kept_b, summed_b), (14 + 32, 14 + 32));
    }

    #[test]
    fn an_outage_backlog_is_probed_one_at_a_time_then_released_paced() {
        let s = SqliteStorage::in_memory().unwrap();
        let ids = s
            .enqueue(
                &[
                    delivery("a", "c1", "e1"),
                    delivery("a", "c2", "e2"),
                    delivery("a", "c3", "e3"),
                    delivery("b", "c4", "e4"),
                ],
                0,
            )
            .unwrap();
        // Every one failed and backed off; e3 is due soonest; b's is not attempted yet.
        s.reschedule(ids[0], 90_000, "down").unwrap();
        s.reschedule(ids[1], 80_000, "down").unwrap();
        s.reschedule(ids[2], 70_000, "down").unwrap();
        assert_eq!(s.backed_off(1_000).unwrap(), [("a".into(), "p".into())]);
        let due = |now| {
            s.due(now, 10)
                .unwrap()
                .into_iter()
                .map(|d| d.event_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(due(1_000), ["e4"]);
        assert!(s.probe_backoff("a", "p", 1_000).unwrap());
        assert_eq!(due(1_000), ["e4", "e3"], "the probe: the one due soonest");
        assert!(
            !s.probe_backoff("b", "p", 1_000).unwrap(),
            "b has no backoff"
        );
        // Released at 50 ms apart, in queue order; e3 (already due) stays due.
        assert_eq!(s.release_backoff("a", "p", 2_000, 50).unwrap(), 2);
        assert_eq!(due(2_000), ["e4", "e3", "e1"]);
        assert_eq!(due(2_050), ["e4", "e3", "e1", "e2"]);
        assert!(s.backed_off(2_100).unwrap().is_empty());
    }

    #[test]
    fn due_for_reads_one_tenants_plugin_keeping_call_order() {
        let s = SqliteStorage::in_memory().unwrap();
        s.enqueue(
            &[
                delivery("a", "c1", "e1"),
                delivery("b", "c2", "e2"),
                delivery("a", "c1", "e3"),
                delivery("a", "c3", "e4"),
            ],
            0,
        )
        .unwrap();
        let ids = |v: Vec<Delivery>| v.into_iter().map(|d| d.event_id).collect::<Vec<_>>();
        assert_eq!(ids(s.due_for("a", "p", 0, 10).unwrap()), ["e1", "e4"]);
        assert_eq!(ids(s.due_for("a", "p", 0, 1).unwrap()), ["e1"]);
        assert_eq!(ids(s.due_for("b", "p", 0, 10).unwrap()), ["e2"]);
        assert!(s.due_for("a", "other", 0, 10).unwrap().is_empty());
    }

    #[test]
    fn host_failures_are_counted_apart_from_other_attempts_and_replay_resets_both() {
        let s = SqliteStorage::in_memory().unwrap();
        let ids = s.enqueue(&[delivery("a", "c1", "e1")], 0).unwrap();
        s.reschedule(ids[0], 0, "503").unwrap();
        s.reschedule(ids[0], 0, "503").unwrap();
        s.reschedule_after_host_failure(ids[0], 0, "trap").unwrap();
        let d = &s.due(0, 10).unwrap()[0];
        assert_eq!((d.attempts, d.host_failures), (3, 1));
        s.dead_letter(ids[0], "trap").unwrap();
        assert!(s.replay("a", ids[0], 0).unwrap());
        let d = &s.due(0, 10).unwrap()[0];
        assert_eq!((d.attempts, d.host_failures), (0, 0));
    }

    #[test]
    fn a_queue_from_before_the_host_failure_column_is_migrated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT, \
                 tenant TEXT NOT NULL, plugin TEXT NOT NULL, call_id TEXT NOT NULL, \
                 event_id TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL, \
                 attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, \
                 created_at INTEGER NOT NULL, last_error TEXT); \
                 INSERT INTO deliveries (tenant, plugin, call_id, event_id, payload, status, \
                 attempts, next_at, created_at) VALUES ('a','p','c1','e1','{}','pending',2,0,0);",
            )
            .unwrap();
        }
        let s = SqliteStorage::open(&path).unwrap();
        let d = &s.due(0, 10).unwrap()[0];
        assert_eq!(
            (d.event_id.as_str(), d.attempts, d.host_failures),
            ("e1", 2, 0)
        );
    }

    #[test]
    fn a_file_from_before_the_size_table_is_counted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        {
            let s = SqliteStorage::open(&path).unwrap();
            s.state_set("a", "p", "k", &"x".repeat(60), None, 100)
                .unwrap()
                .unwrap();
            // as an older host left it: no size kept, schema version 0
            let conn = s.conn();
            conn.execute_batch("DELETE FROM state_size; PRAGMA user_version = 0;")
                .unwrap();
        }
        let s = SqliteStorage::open(&path).unwrap();
        assert_eq!(summed_state_bytes(&s, "a", "p"), (93, 93));
        assert_eq!(
            s.state_set("a", "p", "k2", &"x".repeat(60), None, 100)
                .unwrap(),
            Err(100),
            "the 93 bytes stored before count toward the cap"
        );
    }

    #[test]
    fn empty_state_entries_are_bounded_by_the_per_entry_overhead() {
        let s = SqliteStorage::in_memory().unwrap();
        let stored = (0..1000)
            .take_while(|i| {
                s.state_set("a", "p", &format!("{i:03}"), "", None, 3500)
                    .unwrap()
                    .is_ok()
            })
            .count();
        // 3 + 0 + 32 bytes each: 100 fit in 3,500 bytes (none would be refused without it).
        assert_eq!(stored, 100);
    }

    #[test]
    fn expired_state_does_not_count_toward_the_cap() {
        let s = SqliteStorage::in_memory().unwrap();
        let past = crate::clock::now_ms() - 1;
        s.state_set("a", "p", "old", &"x".repeat(60), Some(past), 100)
            .unwrap()
            .unwrap();
        s.state_set("a", "p", "new", &"x".repeat(60), None, 100)
            .unwrap()
            .unwrap();
        assert_eq!(s.state_get("a", "p", "old", 0).unwrap(), None, "purged");
    }

    #[test]
    fn due_keeps_call_order_and_skips_later_events_of_a_waiting_call() {
        let s = SqliteStorage::in_memory().unwrap();
        let ids = s
            .enqueue(
                &[
                    delivery("a", "c1", "e1"),
                    delivery("a", "c1", "e2"),
                    delivery("a", "c2", "e3"),
                ],
                0,
            )
            .unwrap();
        let due: Vec<_> = s
            .due(0, 10)
            .unwrap()
            .into_iter()
            .map(|d| d.event_id)
            .collect();
        assert_eq!(due, ["e1", "e3"]);
        // the head of c1 backs off: e2 must still wait behind it
        s.reschedule(ids[0], 1000, "boom").unwrap();
        let due: Vec<_> = s
            .due(10, 10)
            .unwrap()
            .into_iter()
            .map(|d| d.event_id)
            .collect();
        assert_eq!(due, ["e3"]);
        s.complete(ids[2]).unwrap();
        let due: Vec<_> = s
            .due(1000, 10)
            .unwrap()
            .into_iter()
            .map(|d| d.event_id)
            .collect();
        assert_eq!(due, ["e1"]);
        s.dead_letter(ids[0], "gave up").unwrap();
        let due: Vec<_> = s
            .due(1000, 10)
            .unwrap()
            .into_iter()
            .map(|d| d.event_id)
            .collect();
        assert_eq!(
            due,
            ["e2"],
            "a dead-lettered event does not block the rest of its call"
        );
        assert!(s.replay("a", ids[0], 2000).unwrap());
        assert!(
            !s.replay("b", ids[0], 2000).unwrap(),
            "another tenant cannot replay it"
        );
    }

    fn log_line(tenant: &str, at: i64, message: &str) -> LogEntry {
        LogEntry {
            id: 0,
            tenant: tenant.into(),
            plugin: "p".into(),
            invocation: "i".into(),
            at,
            level: "info".into(),
            message: message.into(),
        }
    }

    fn count(s: &SqliteStorage, sql: &str) -> i64 {
        s.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn pruning_drops_old_and_surplus_log_lines_and_old_dead_letters_in_a_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStorage::open(&dir.path().join("host.sqlite3")).unwrap();
        let day = 86_400_000;
        let now = 100 * day;
        // acme: 30 lines 20 days old, then 30 of today; globex: 10 of today.
        let mut lines: Vec<LogEntry> = (0..30)
            .map(|i| log_line("acme", now - 20 * day + i, "old"))
            .collect();
        lines.extend((0..30).map(|i| log_line("acme", now - 1000 + i, "new")));
        lines.extend((0..10).map(|i| log_line("globex", now - 1000 + i, "new")));
        s.log_append(&lines).unwrap();
        // Two dead letters: one died 40 days ago, one yesterday; a pending delivery.
        let ids = s
            .enqueue(
                &[
                    delivery("acme", "c1", "e1"),
                    delivery("acme", "c2", "e2"),
                    delivery("acme", "c3", "e3"),
                ],
                0,
            )
            .unwrap();
        s.dead_letter(ids[0], "gave up").unwrap();
        s.dead_letter(ids[1], "gave up").unwrap();
        s.conn()
            .execute(
                "UPDATE deliveries SET next_at=?2 WHERE id=?1",
                params![ids[0], now - 40 * day],
            )
            .unwrap();
        s.conn()
            .execute(
                "UPDATE deliveries SET next_at=?2 WHERE id=?1",
                params![ids[1], now - day],
            )
            .unwrap();
        let retention = Retention {
            log_days: 14,
            log_rows_per_tenant: 25,
            dead_letter_days: 30,
        };
        let pruned = s.prune(now, &retention).unwrap();
        // acme: the 30 old lines by age, then 5 of the new ones by the row cap.
        assert_eq!(
            pruned,
            Pruned {
                log_rows: 35,
                dead_letters: 1
            }
        );
        let acme = s.log_read("acme", 1000).unwrap();
        assert_eq!(acme.len(), 25);
        assert!(acme.iter().all(|l| l.message == "new"));
        assert_eq!(
            acme.last().unwrap().at,
            now - 1000 + 5,
            "the oldest went first"
        );
        assert_eq!(
            s.log_read("globex", 1000).unwrap().len(),
            10,
            "globex untouched"
        );
        let dead = s
            .deliveries("acme", Some(DeliveryStatus::Dead), 10)
            .unwrap();
        assert_eq!(dead.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[1]]);
        assert_eq!(
            s.pending_count().unwrap(),
            1,
            "pending deliveries are never pruned"
        );
        // Nothing more to do on a second pass; the file still answers after reopening.
        assert_eq!(s.prune(now, &retention).unwrap(), Pruned::default());
        drop(s);
        let s = SqliteStorage::open(&dir.path().join("host.sqlite3")).unwrap();
        assert_eq!(count(&s, "SELECT COUNT(*) FROM log"), 35);
    }

    #[test]
    fn a_dead_letter_remembers_when_it_died() {
        let s = SqliteStorage::in_memory().unwrap();
        let ids = s.enqueue(&[delivery("a", "c1", "e1")], 0).unwrap();
        let before = crate::clock::now_ms();
        s.dead_letter(ids[0], "gave up").unwrap();
        let d = &s.deliveries("a", Some(DeliveryStatus::Dead), 1).unwrap()[0];
        assert!(d.next_at >= before, "{} < {before}", d.next_at);
    }

    fn entry(id: &str, plugin: &str) -> ContactRow {
        ContactRow {
            external_id: id.into(),
            plugin: plugin.into(),
            record_type: "Contact".into(),
            name: id.into(),
            company: None,
            email: None,
            phones: vec![],
            account_id: None,
            modified_at: None,
        }
    }

    #[test]
    fn checked_contact_writes_keep_owners_and_the_cap_all_or_nothing() {
        let s = SqliteStorage::in_memory().unwrap();
        let import = ContactWriter::Owner("import");
        assert_eq!(
            s.contacts_upsert_checked(
                "a",
                &[entry("1", "import"), entry("2", "import")],
                import,
                3
            )
            .unwrap(),
            Ok(2)
        );
        // Over the cap: nothing of the batch is written; replacing entries still fits.
        assert_eq!(
            s.contacts_upsert_checked(
                "a",
                &[
                    entry("1", "import"),
                    entry("3", "import"),
                    entry("4", "import")
                ],
                import,
                3
            )
            .unwrap(),
            Err(ContactRefusal::Full { limit: 3 })
        );
        assert_eq!(s.contacts_count("a").unwrap(), 2);
        assert!(s.contacts_get("a", "3").unwrap().is_none());
        assert_eq!(
            s.contacts_upsert_checked(
                "a",
                &[entry("1", "import"), entry("1", "import")],
                import,
                2
            )
            .unwrap(),
            Ok(2)
        );
        // Another plugin: refused, also within a batch of its own new entries.
        let other = ContactWriter::Owner("rogue");
        assert_eq!(
            s.contacts_upsert_checked("a", &[entry("9", "rogue"), entry("1", "rogue")], other, 10)
                .unwrap(),
            Err(ContactRefusal::NotOwner {
                external_id: "1".into()
            })
        );
        assert!(s.contacts_get("a", "9").unwrap().is_none());
        assert_eq!(
            s.contacts_delete_checked("a", "1", other).unwrap(),
            Err(ContactRefusal::NotOwner {
                external_id: "1".into()
            })
        );
        // With the operator's read-write-all: allowed, and the entry keeps its owner.
        assert_eq!(
            s.contacts_upsert_checked("a", &[entry("1", "rogue")], ContactWriter::Any, 10)
                .unwrap(),
            Ok(1)
        );
        assert_eq!(s.contacts_get("a", "1").unwrap().unwrap().plugin, "import");
        assert_eq!(
            s.contacts_delete_checked("a", "2", ContactWriter::Any)
                .unwrap(),
            Ok(true)
        );
        assert_eq!(
            s.contacts_delete_checked("a", "2", import).unwrap(),
            Ok(false)
        );
        assert_eq!(s.contacts_count("a").unwrap(), 1);
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM contacts WHERE tenant='a'"),
            1,
            "the kept count matches the rows"
        );
    }

    #[test]
    fn a_version_2_file_counts_state_entries_and_phone_books_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.sqlite3");
        {
            // As a version-2 host left it: state_size without entry counts, its triggers,
            // no contact_count.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE state (tenant TEXT NOT NULL, plugin TEXT NOT NULL, key TEXT NOT NULL, \
                 value TEXT NOT NULL, expires_at INTEGER, PRIMARY KEY (tenant, plugin, key)) WITHOUT ROWID; \
                 CREATE TABLE state_size (tenant TEXT NOT NULL, plugin TEXT NOT NULL, \
                 bytes INTEGER NOT NULL, PRIMARY KEY (tenant, plugin)) WITHOUT ROWID; \
                 CREATE TRIGGER state_size_insert AFTER INSERT ON state BEGIN \
                 INSERT INTO state_size (tenant, plugin, bytes) VALUES (new.tenant, new.plugin, \
                 LENGTH(CAST(new.key AS BLOB)) + LENGTH(CAST(new.value AS BLOB))) \
                 ON CONFLICT (tenant, plugin) DO UPDATE SET bytes = bytes + excluded.bytes; END; \
                 CREATE TRIGGER state_size_delete AFTER DELETE ON state BEGIN \
                 UPDATE state_size SET bytes = bytes - LENGTH(CAST(old.key AS BLOB)) \
                 - LENGTH(CAST(old.value AS BLOB)) WHERE tenant = old.tenant AND plugin = old.plugin; END; \
                 CREATE TABLE contacts (tenant TEXT NOT NULL, external_id TEXT NOT NULL, \
                 plugin TEXT NOT NULL, record_type TEXT NOT NULL, name TEXT NOT NULL, company TEXT, \
                 email TEXT, account_id TEXT, modified_at INTEGER, phones TEXT NOT NULL, \
                 PRIMARY KEY (tenant, external_id)) WITHOUT ROWID; \
                 INSERT INTO state VALUES ('a', 'p', 'k', 'v', NULL); \
                 INSERT INTO contacts VALUES ('a', '1', 'p', 'Contact', 'One', NULL, NULL, NULL, NULL, '[]'); \
                 INSERT INTO contacts VALUES ('a', '2', 'p', 'Contact', 'Two', NULL, NULL, NULL, NULL, '[]'); \
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        }
        let s = SqliteStorage::open(&path).unwrap();
        assert_eq!(summed_state_bytes(&s, "a", "p"), (2 + 32, 2 + 32));
        assert_eq!(s.contacts_count("a").unwrap(), 2);
        s.state_set("a", "p", "k2", "v", None, 1 << 20)
            .unwrap()
            .unwrap();
        s.state_delete("a", "p", "k").unwrap();
        assert_eq!(summed_state_bytes(&s, "a", "p"), (35, 35));
        s.contacts_upsert("a", &[entry("3", "p")]).unwrap();
        assert!(s.contacts_delete("a", "1").unwrap());
        assert_eq!(s.contacts_count("a").unwrap(), 2);
    }

    #[test]
    fn contacts_lookup_by_normalised_number_newest_first() {
        let s = SqliteStorage::in_memory().unwrap();
        let mk = |id: &str, at: i64| ContactRow {
            external_id: id.into(),
            plugin: "p".into(),
            record_type: "Contact".into(),
            name: id.into(),
            company: None,
            email: None,
            phones: vec![PhoneRow {
                label: "Phone".into(),
                number: "03-1234-5678".into(),
                e164: Some("+81312345678".into()),
            }],
            account_id: None,
            modified_at: Some(at),
        };
        s.contacts_upsert("a", &[mk("old", 1), mk("new", 2)])
            .unwrap();
        s.contacts_upsert("b", &[mk("other-tenant", 3)]).unwrap();
        let found: Vec<_> = s
            .contacts_lookup("a", "+81312345678")
            .unwrap()
            .into_iter()
            .map(|c| c.external_id)
            .collect();
        assert_eq!(found, ["new", "old"]);
        assert!(s.contacts_delete("a", "old").unwrap());
        assert!(!s.contacts_delete("a", "other-tenant").unwrap());
        assert_eq!(s.contacts_count("a").unwrap(), 1);
        assert_eq!(s.contacts_get("a", "new").unwrap().unwrap().phones.len(), 1);
    }
}
