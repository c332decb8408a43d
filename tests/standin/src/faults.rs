//! Fault injection: per-org queues of failures that the next matching requests suffer.
//!
//! Matching: a fault applies to requests of its org (by the bearer token's org id, or for
//! the token and SOAP login endpoints by the username / client_id in the request), whose
//! method equals `method` (if set) and whose path-and-query contains `path_contains` (if
//! set). Faults are consumed first-in first-out: a request takes the oldest matching fault
//! and decrements its `times`; one request suffers at most one fault.
//!
//! Where a fault acts: `Latency`, `Status`, `DropConnection`, `ExpireSession`,
//! `RequestLimitExceeded` and `RefuseConnections` act on the HTTP request as a whole.
//! `UnableToLockRow` is a DML failure, so inside `composite` and `composite/sobjects` it
//! fails the matching subrequest / record (path matched against the subrequest URL, or
//! `/services/data/vXX.X/sobjects/{Type}/{id}` for a collection record) rather than the
//! whole request, as the real service would.

use std::time::Duration;

use crate::json::J;

/// What goes wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Sleep, then answer normally.
    Latency(Duration),
    /// Answer with this status (5xx) and a realistic body, without doing the work.
    Status(u16),
    /// Close the TCP connection without sending an HTTP response.
    DropConnection,
    /// Invalidate the presented session and answer 401 INVALID_SESSION_ID.
    ExpireSession,
    /// 403 REQUEST_LIMIT_EXCEEDED.
    RequestLimitExceeded,
    /// 400 UNABLE_TO_LOCK_ROW (docs/salesforce-api.md §3 table).
    UnableToLockRow,
    /// The whole server stops accepting connections for this long (the listening socket is
    /// closed, so clients get "connection refused"); this request's connection is dropped
    /// and requests arriving on kept-alive connections meanwhile are dropped too.
    RefuseConnections(Duration),
}

/// A queued fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// How many matching requests it hits.
    pub times: u32,
    /// HTTP method to match (case-insensitive); `None`: any.
    pub method: Option<String>,
    /// Substring of the path-and-query to match; `None`: any.
    pub path_contains: Option<String>,
}

impl Fault {
    /// A fault hitting the next matching request once.
    pub fn new(kind: FaultKind) -> Fault {
        Fault {
            kind,
            times: 1,
            method: None,
            path_contains: None,
        }
    }

    pub fn times(mut self, n: u32) -> Fault {
        self.times = n;
        self
    }

    pub fn method(mut self, m: &str) -> Fault {
        self.method = Some(m.to_string());
        self
    }

    pub fn path_contains(mut self, p: &str) -> Fault {
        self.path_contains = Some(p.to_string());
        self
    }

    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }
}

/// Which faults a matcher may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A whole HTTP request that is not a composite: every kind.
    Request,
    /// A composite / collections request: every kind except UnableToLockRow, which waits
    /// for the subrequests.
    CompositeRequest,
    /// A subrequest or collection record: only UnableToLockRow.
    SubRequest,
}

/// The queue of one org.
#[derive(Debug, Default)]
pub(crate) struct FaultQueue {
    items: Vec<Fault>,
}

impl FaultQueue {
    pub fn push(&mut self, f: Fault) {
        if f.times > 0 {
            self.items.push(f);
        }
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// Takes the oldest fault that matches and is allowed in `scope`.
    pub fn take(&mut self, method: &str, path: &str, scope: Scope) -> Option<FaultKind> {
        let allowed = |k: &FaultKind| match scope {
            Scope::Request => true,
            Scope::CompositeRequest => *k != FaultKind::UnableToLockRow,
            Scope::SubRequest => *k == FaultKind::UnableToLockRow,
        };
        let idx = self
            .items
            .iter()
            .position(|f| allowed(&f.kind) && f.matches(method, path))?;
        let f = &mut self.items[idx];
        let kind = f.kind.clone();
        f.times -= 1;
        if f.times == 0 {
            self.items.remove(idx);
        }
        Some(kind)
    }
}

/// A realistic REST body for an injected 5xx: Salesforce answers server-side failures with
/// its usual error array (UNKNOWN_EXCEPTION with an ErrorId; SERVER_UNAVAILABLE when the
/// instance is down for maintenance).
pub(crate) fn status_body(status: u16) -> J {
    let (code, message) = match status {
        503 => (
            "SERVER_UNAVAILABLE",
            "Server temporarily unavailable. Try again later.".to_string(),
        ),
        502 | 504 => (
            "SERVER_UNAVAILABLE",
            "Gateway error. Try again later.".to_string(),
        ),
        _ => (
            "UNKNOWN_EXCEPTION",
            format!(
                "An unexpected error occurred. Please include this ErrorId if you contact support: {}-{} (-{})",
                1_234_567 + u32::from(status),
                42_424,
                987_654_321
            ),
        ),
    };
    J::Arr(vec![J::obj([
        ("errorCode", J::str(code)),
        ("message", J::Str(message)),
    ])])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_matching_and_consumption() {
        let mut q = FaultQueue::default();
        q.push(Fault::new(FaultKind::Status(503)).method("POST").times(2));
        q.push(Fault::new(FaultKind::DropConnection));
        assert_eq!(
            q.take("GET", "/x", Scope::Request),
            Some(FaultKind::DropConnection)
        );
        assert_eq!(
            q.take("post", "/x", Scope::Request),
            Some(FaultKind::Status(503))
        );
        assert_eq!(
            q.take("POST", "/x", Scope::Request),
            Some(FaultKind::Status(503))
        );
        assert_eq!(q.take("POST", "/x", Scope::Request), None);
    }

    #[test]
    fn lock_row_waits_for_subrequests() {
        let mut q = FaultQueue::default();
        q.push(Fault::new(FaultKind::UnableToLockRow).path_contains("/sobjects/Task/"));
        assert_eq!(
            q.take(
                "POST",
                "/services/data/v60.0/composite",
                Scope::CompositeRequest
            ),
            None
        );
        assert_eq!(
            q.take(
                "PATCH",
                "/services/data/v60.0/sobjects/Task/00T",
                Scope::SubRequest
            ),
            Some(FaultKind::UnableToLockRow)
        );
    }
}
