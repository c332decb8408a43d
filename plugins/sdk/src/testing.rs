//! An in-memory [`Host`] for native unit tests of plugin logic.
//!
//! HTTP answers come from a queue of canned responses (or a handler closure), in order; every
//! request is recorded for assertions. State, secrets and the phone book are maps; log lines
//! are kept. Nothing here is used inside a component.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};

use crate::Host;
use crate::bindings::pbx::plugin::{contacts, http, log, secrets, state};

type Handler = Box<dyn Fn(&http::Request) -> Result<http::Response, http::HttpError>>;

/// See the module docs.
#[derive(Default)]
pub struct FakeHost {
    responses: RefCell<VecDeque<Result<http::Response, http::HttpError>>>,
    handler: RefCell<Option<Handler>>,
    requests: RefCell<Vec<http::Request>>,
    secrets: RefCell<BTreeMap<String, String>>,
    state: RefCell<BTreeMap<String, (String, Option<u32>)>>,
    contacts: RefCell<BTreeMap<String, contacts::Contact>>,
    logs: RefCell<Vec<(log::Level, String)>>,
    now: Cell<i64>,
}

impl FakeHost {
    /// An empty host; the clock reads 2024-01-01T00:00:00Z.
    pub fn new() -> Self {
        let h = Self::default();
        h.now.set(1_704_067_200_000);
        h
    }

    /// Queues a response for the next request.
    pub fn push_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        self.responses.borrow_mut().push_back(Ok(http::Response {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_string()))
                .collect(),
            body: body.to_vec(),
        }));
    }

    /// Queues a transport error for the next request.
    pub fn push_error(&self, e: http::HttpError) {
        self.responses.borrow_mut().push_back(Err(e));
    }

    /// Answers requests with a closure once the queue is empty.
    pub fn set_handler(
        &self,
        f: impl Fn(&http::Request) -> Result<http::Response, http::HttpError> + 'static,
    ) {
        *self.handler.borrow_mut() = Some(Box::new(f));
    }

    /// Every request sent so far.
    pub fn requests(&self) -> Vec<http::Request> {
        self.requests.borrow().clone()
    }

    /// Sets a secret.
    pub fn set_secret(&self, name: &str, value: &str) {
        self.secrets
            .borrow_mut()
            .insert(name.to_string(), value.to_string());
    }

    /// A state value (ignoring TTL).
    pub fn state_value(&self, key: &str) -> Option<String> {
        self.state.borrow().get(key).map(|(v, _)| v.clone())
    }

    /// The log lines written so far.
    pub fn logs(&self) -> Vec<(log::Level, String)> {
        self.logs.borrow().clone()
    }

    /// Sets the clock.
    pub fn set_now_ms(&self, ms: i64) {
        self.now.set(ms);
    }

    /// Adds a phone-book entry.
    pub fn add_contact(&self, c: contacts::Contact) {
        self.contacts.borrow_mut().insert(c.external_id.clone(), c);
    }
}

impl Host for FakeHost {
    fn http_send(&self, req: &http::Request) -> Result<http::Response, http::HttpError> {
        self.requests.borrow_mut().push(req.clone());
        if let Some(r) = self.responses.borrow_mut().pop_front() {
            return r;
        }
        match self.handler.borrow().as_ref() {
            Some(h) => h(req),
            None => Err(http::HttpError::Connect(format!(
                "FakeHost: no response queued for {} {}",
                req.method, req.url
            ))),
        }
    }

    fn secret(&self, name: &str) -> Result<String, secrets::SecretError> {
        self.secrets
            .borrow()
            .get(name)
            .cloned()
            .ok_or_else(|| secrets::SecretError::NotSet(name.to_string()))
    }

    fn state_get(&self, key: &str) -> Result<Option<String>, state::StateError> {
        Ok(self.state_value(key))
    }

    fn state_set(
        &self,
        key: &str,
        value: &str,
        ttl_seconds: Option<u32>,
    ) -> Result<(), state::StateError> {
        self.state
            .borrow_mut()
            .insert(key.to_string(), (value.to_string(), ttl_seconds));
        Ok(())
    }

    fn state_delete(&self, key: &str) -> Result<(), state::StateError> {
        self.state.borrow_mut().remove(key);
        Ok(())
    }

    fn contacts_upsert(
        &self,
        entries: &[contacts::Contact],
    ) -> Result<u32, contacts::ContactsError> {
        for e in entries {
            self.add_contact(e.clone());
        }
        Ok(u32::try_from(entries.len()).unwrap_or(u32::MAX))
    }

    fn contacts_delete(&self, external_id: &str) -> Result<(), contacts::ContactsError> {
        self.contacts.borrow_mut().remove(external_id);
        Ok(())
    }

    fn contacts_get(
        &self,
        external_id: &str,
    ) -> Result<contacts::Contact, contacts::ContactsError> {
        self.contacts
            .borrow()
            .get(external_id)
            .cloned()
            .ok_or_else(|| contacts::ContactsError::NotFound(external_id.to_string()))
    }

    /// Matches by digits (the real host normalises with the tenant's country; tests use
    /// numbers written alike or in E.164).
    fn contacts_lookup(
        &self,
        number: &str,
    ) -> Result<Vec<contacts::Contact>, contacts::ContactsError> {
        let want: String = number.chars().filter(char::is_ascii_digit).collect();
        let mut found: Vec<contacts::Contact> = self
            .contacts
            .borrow()
            .values()
            .filter(|c| {
                c.phones.iter().any(|p| {
                    let d: String = p.number.chars().filter(char::is_ascii_digit).collect();
                    !d.is_empty() && d == want
                })
            })
            .cloned()
            .collect();
        found.sort_by_key(|c| std::cmp::Reverse(c.modified_at));
        Ok(found)
    }

    fn log(&self, level: log::Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn now_ms(&self) -> i64 {
        self.now.get()
    }
}

/// A context for tests: tenant "t1", plugin "p1", the given settings JSON.
pub fn sample_context(config: &str) -> crate::Context {
    crate::Context {
        tenant_id: "t1".into(),
        plugin_id: "p1".into(),
        invocation_id: "inv-1".into(),
        config: config.into(),
        attempt: 0,
    }
}

/// A call event for tests: call "1001" from 03-1234-5678 to extension 201 (inbound) or the
/// reverse (outbound), answered, 65 s, agent 201, ended 2024-01-01T00:01:05Z.
pub fn sample_event(kind: crate::EventKind, direction: crate::Direction) -> crate::CallEvent {
    let (caller, callee) = match direction {
        crate::Direction::Outbound => ("201", "03-1234-5678"),
        crate::Direction::Internal => ("201", "202"),
        crate::Direction::Inbound => ("03-1234-5678", "201"),
    };
    let start = 1_704_067_200_000;
    crate::CallEvent {
        event_id: "ev-1".into(),
        kind,
        occurred_at: start + 65_000,
        call: crate::Call {
            call_id: "1001".into(),
            direction,
            caller: caller.into(),
            callee: callee.into(),
            agent: Some(crate::Agent {
                extension: "201".into(),
                user_id: Some("u-201".into()),
                user_name: Some("Agent 201".into()),
                user_email: Some("agent201@example.com".into()),
            }),
            queue: None,
            dial_started_at: start,
            answered_at: Some(start + 5_000),
            ended_at: Some(start + 65_000),
            duration_seconds: 60,
            outcome: Some(crate::Outcome::Answered),
            transfer: None,
            recording_url: None,
            predictive: None,
            crm_record_id: None,
        },
        memo: Vec::new(),
        transcript: None,
    }
}
