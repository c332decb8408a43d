//! The `query` / `queryAll` resources and their paging (docs/salesforce-api.md §2a):
//! batches of 2,000 (or `Sforce-Query-Options: batchSize=N`, 200–2,000), `nextRecordsUrl`
//! locators `01g…-2000`, `-4000`, … (HEROKU `query-with-next-records-url*.json`).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::errors::ApiError;
use crate::ids;
use crate::json::J;
use crate::org::OrgData;
use crate::rest::RestCtx;
use crate::soql;

/// Salesforce deletes a cursor after 15 minutes without use.
const CURSOR_IDLE: Duration = Duration::from_secs(15 * 60);
/// At most this many open cursors per user; opening another drops the oldest.
const MAX_CURSORS_PER_USER: usize = 10;

pub const DEFAULT_BATCH: usize = 2000;

/// The remaining rows of a query, kept for `query/{locator}-{offset}`.
pub(crate) struct Cursor {
    rows: Vec<J>,
    batch: usize,
    user: String,
    all_rows: bool,
    last_used: Instant,
}

#[derive(Default)]
pub(crate) struct Cursors {
    map: HashMap<String, Cursor>,
    order: VecDeque<String>,
}

impl Cursors {
    fn insert(&mut self, locator: String, c: Cursor) {
        self.map.retain(|_, c| c.last_used.elapsed() < CURSOR_IDLE);
        self.order.retain(|l| self.map.contains_key(l));
        let user = c.user.clone();
        let mine: Vec<String> = self
            .order
            .iter()
            .filter(|l| self.map.get(*l).is_some_and(|c| c.user == user))
            .cloned()
            .collect();
        if mine.len() >= MAX_CURSORS_PER_USER
            && let Some(oldest) = mine.first()
        {
            self.map.remove(oldest);
            self.order.retain(|l| l != oldest);
        }
        self.order.push_back(locator.clone());
        self.map.insert(locator, c);
    }
}

/// `Sforce-Query-Options: batchSize=N` (200–2,000; out of range values are clamped).
pub fn batch_size(header: Option<&str>) -> usize {
    header
        .and_then(|h| {
            h.split(',').find_map(|part| {
                let (k, v) = part.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("batchSize")
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            })
        })
        .map_or(DEFAULT_BATCH, |n| n.clamp(200, 2000))
}

fn page(ctx: &RestCtx, total: usize, rows: &[J], next: Option<String>) -> J {
    let mut pairs = vec![
        ("totalSize".to_string(), J::uint(total as u64)),
        ("done".to_string(), J::Bool(next.is_none())),
    ];
    if let Some(n) = next {
        pairs.push((
            "nextRecordsUrl".to_string(),
            J::Str(format!("/services/data/v{}/{}", ctx.version, n)),
        ));
    }
    pairs.push(("records".to_string(), J::Arr(rows.to_vec())));
    J::Obj(pairs)
}

fn resource(all_rows: bool) -> &'static str {
    if all_rows { "queryAll" } else { "query" }
}

/// `GET query?q=` / `GET queryAll?q=`.
pub fn run(data: &mut OrgData, ctx: &RestCtx, q: &str, all_rows: bool) -> Result<J, ApiError> {
    let parsed = soql::parse(q)?;
    let out = {
        let env = soql::eval::Env {
            data,
            version: &ctx.version,
            now: ctx.now,
            all_rows,
            src: q,
        };
        soql::eval::run(&env, &parsed)?
    };
    let total = out.total_size;
    if out.records.len() <= ctx.batch_size {
        return Ok(page(ctx, total, &out.records, None));
    }
    let locator = ids::random("01g");
    let first = page(
        ctx,
        total,
        &out.records[..ctx.batch_size],
        Some(format!(
            "{}/{locator}-{}",
            resource(all_rows),
            ctx.batch_size
        )),
    );
    data.cursors.insert(
        locator,
        Cursor {
            rows: out.records,
            batch: ctx.batch_size,
            user: ctx.user_id.clone(),
            all_rows,
            last_used: Instant::now(),
        },
    );
    Ok(first)
}

fn invalid_locator() -> ApiError {
    ApiError::new(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
}

/// `GET query/{locator}-{offset}`.
pub fn more(data: &mut OrgData, ctx: &RestCtx, locator: &str) -> Result<J, ApiError> {
    let (loc, offset) = locator.rsplit_once('-').ok_or_else(invalid_locator)?;
    let offset: usize = offset.parse().map_err(|_| invalid_locator())?;
    let cursor = data.cursors.map.get_mut(loc).ok_or_else(invalid_locator)?;
    if cursor.last_used.elapsed() >= CURSOR_IDLE || cursor.user != ctx.user_id {
        return Err(invalid_locator());
    }
    if offset > cursor.rows.len() || !offset.is_multiple_of(cursor.batch) {
        return Err(invalid_locator());
    }
    cursor.last_used = Instant::now();
    let end = (offset + cursor.batch).min(cursor.rows.len());
    let next =
        (end < cursor.rows.len()).then(|| format!("{}/{loc}-{end}", resource(cursor.all_rows)));
    Ok(page(
        ctx,
        cursor.rows.len(),
        &cursor.rows[offset..end],
        next,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_size_header() {
        assert_eq!(batch_size(None), 2000);
        assert_eq!(batch_size(Some("batchSize=500")), 500);
        assert_eq!(batch_size(Some("batchSize=50")), 200);
        assert_eq!(batch_size(Some("batchSize=5000")), 2000);
        assert_eq!(batch_size(Some("foo=1, batchSize = 300")), 300);
        assert_eq!(batch_size(Some("batchSize=x")), 2000);
    }
}
