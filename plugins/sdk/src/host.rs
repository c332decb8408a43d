//! One trait over every host capability.
//!
//! Why a trait: the imports only work inside a component instance. Plugin logic written against
//! `&impl Host` runs unchanged in the component (with [`WasmHost`]) and natively in `cargo test`
//! (with [`crate::testing::FakeHost`], which answers HTTP from canned responses and keeps state,
//! secrets, contacts and log lines in memory).

use crate::bindings::pbx::plugin::{contacts, http, log, secrets, state};

/// The host's capabilities, as the WIT `imports` world defines them.
pub trait Host {
    /// `http.send`: one buffered request.
    fn http_send(&self, req: &http::Request) -> Result<http::Response, http::HttpError>;
    /// `secrets.get`.
    fn secret(&self, name: &str) -> Result<String, secrets::SecretError>;
    /// `state.get`.
    fn state_get(&self, key: &str) -> Result<Option<String>, state::StateError>;
    /// `state.set`.
    fn state_set(
        &self,
        key: &str,
        value: &str,
        ttl_seconds: Option<u32>,
    ) -> Result<(), state::StateError>;
    /// `state.delete`.
    fn state_delete(&self, key: &str) -> Result<(), state::StateError>;
    /// `contacts.upsert`.
    fn contacts_upsert(
        &self,
        entries: &[contacts::Contact],
    ) -> Result<u32, contacts::ContactsError>;
    /// `contacts.delete`.
    fn contacts_delete(&self, external_id: &str) -> Result<(), contacts::ContactsError>;
    /// `contacts.get`.
    fn contacts_get(&self, external_id: &str)
    -> Result<contacts::Contact, contacts::ContactsError>;
    /// `contacts.lookup-by-phone`.
    fn contacts_lookup(
        &self,
        number: &str,
    ) -> Result<Vec<contacts::Contact>, contacts::ContactsError>;
    /// `log.write`.
    fn log(&self, level: log::Level, message: &str);
    /// Wall-clock time in milliseconds since the Unix epoch (WASI clocks in the component).
    fn now_ms(&self) -> i64;
}

/// The real host: calls the component's imports. Only usable inside a component instance;
/// natively every call panics (wit-bindgen's native stubs), so tests use `FakeHost`.
#[derive(Debug, Default, Clone, Copy)]
pub struct WasmHost;

impl Host for WasmHost {
    fn http_send(&self, req: &http::Request) -> Result<http::Response, http::HttpError> {
        http::send(req)
    }
    fn secret(&self, name: &str) -> Result<String, secrets::SecretError> {
        secrets::get(name)
    }
    fn state_get(&self, key: &str) -> Result<Option<String>, state::StateError> {
        state::get(key)
    }
    fn state_set(
        &self,
        key: &str,
        value: &str,
        ttl_seconds: Option<u32>,
    ) -> Result<(), state::StateError> {
        state::set(key, value, ttl_seconds)
    }
    fn state_delete(&self, key: &str) -> Result<(), state::StateError> {
        state::delete(key)
    }
    fn contacts_upsert(
        &self,
        entries: &[contacts::Contact],
    ) -> Result<u32, contacts::ContactsError> {
        contacts::upsert(entries)
    }
    fn contacts_delete(&self, external_id: &str) -> Result<(), contacts::ContactsError> {
        contacts::delete(external_id)
    }
    fn contacts_get(
        &self,
        external_id: &str,
    ) -> Result<contacts::Contact, contacts::ContactsError> {
        contacts::get(external_id)
    }
    fn contacts_lookup(
        &self,
        number: &str,
    ) -> Result<Vec<contacts::Contact>, contacts::ContactsError> {
        contacts::lookup_by_phone(number)
    }
    fn log(&self, level: log::Level, message: &str) {
        log::write(level, message)
    }
    fn now_ms(&self) -> i64 {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(_) => 0,
        }
    }
}

impl<H: Host + ?Sized> Host for &H {
    fn http_send(&self, req: &http::Request) -> Result<http::Response, http::HttpError> {
        (**self).http_send(req)
    }
    fn secret(&self, name: &str) -> Result<String, secrets::SecretError> {
        (**self).secret(name)
    }
    fn state_get(&self, key: &str) -> Result<Option<String>, state::StateError> {
        (**self).state_get(key)
    }
    fn state_set(
        &self,
        key: &str,
        value: &str,
        ttl_seconds: Option<u32>,
    ) -> Result<(), state::StateError> {
        (**self).state_set(key, value, ttl_seconds)
    }
    fn state_delete(&self, key: &str) -> Result<(), state::StateError> {
        (**self).state_delete(key)
    }
    fn contacts_upsert(
        &self,
        entries: &[contacts::Contact],
    ) -> Result<u32, contacts::ContactsError> {
        (**self).contacts_upsert(entries)
    }
    fn contacts_delete(&self, external_id: &str) -> Result<(), contacts::ContactsError> {
        (**self).contacts_delete(external_id)
    }
    fn contacts_get(
        &self,
        external_id: &str,
    ) -> Result<contacts::Contact, contacts::ContactsError> {
        (**self).contacts_get(external_id)
    }
    fn contacts_lookup(
        &self,
        number: &str,
    ) -> Result<Vec<contacts::Contact>, contacts::ContactsError> {
        (**self).contacts_lookup(number)
    }
    fn log(&self, level: log::Level, message: &str) {
        (**self).log(level, message)
    }
    fn now_ms(&self) -> i64 {
        (**self).now_ms()
    }
}
