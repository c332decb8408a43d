//! The REST error model (docs/salesforce-api.md §3): a JSON array of
//! `{"message","errorCode","fields"}` objects, with the key order of the recordings.
//!
//! Constructors carry the verbatim texts of the recordings and of §3's table so that every
//! module produces the same wording for the same situation.

use crate::json::J;

/// One REST API error, with the HTTP status it travels with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// `None`: no `fields` key at all (many recorded errors have none); `Some(vec![])`: `"fields":[]`.
    pub fields: Option<Vec<String>>,
    /// `NOT_FOUND` (and other framework-level errors) were recorded with `errorCode` first.
    pub code_first: bool,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            fields: None,
            code_first: false,
        }
    }

    pub fn with_fields<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> ApiError {
        self.fields = Some(fields.into_iter().map(Into::into).collect());
        self
    }

    pub fn code_first(mut self) -> ApiError {
        self.code_first = true;
        self
    }

    /// The error as one object of a REST error array.
    pub fn to_j(&self) -> J {
        let mut pairs = Vec::with_capacity(3);
        if self.code_first {
            pairs.push(("errorCode".to_string(), J::str(&self.code)));
            pairs.push(("message".to_string(), J::str(&self.message)));
        } else {
            pairs.push(("message".to_string(), J::str(&self.message)));
            pairs.push(("errorCode".to_string(), J::str(&self.code)));
        }
        if let Some(fields) = &self.fields {
            pairs.push((
                "fields".to_string(),
                J::Arr(fields.iter().map(J::str).collect()),
            ));
        }
        J::Obj(pairs)
    }

    /// The whole REST error body: `[ {…} ]`.
    pub fn body(&self) -> J {
        J::Arr(vec![self.to_j()])
    }

    /// The error as it appears inside an sObject Collections SaveResult: the key is
    /// `statusCode`, not `errorCode`, and `fields` is always present (docs/salesforce-api.md §2f).
    pub fn to_save_result_error(&self) -> J {
        J::obj([
            ("statusCode", J::str(&self.code)),
            ("message", J::str(&self.message)),
            (
                "fields",
                J::Arr(
                    self.fields
                        .clone()
                        .unwrap_or_default()
                        .iter()
                        .map(J::str)
                        .collect(),
                ),
            ),
        ])
    }

    // ---- constructors with recorded wording -------------------------------------------

    /// §3: 401 INVALID_SESSION_ID.
    pub fn invalid_session() -> ApiError {
        ApiError::new(401, "INVALID_SESSION_ID", "Session expired or invalid")
    }

    /// An `Authorization` header that is not `Bearer …`/`OAuth …` (docs/salesforce-api.md §6,
    /// sf-functions-python `data_api.py` comments).
    pub fn invalid_auth_header() -> ApiError {
        ApiError::new(401, "INVALID_AUTH_HEADER", "INVALID_HEADER_TYPE")
    }

    /// §3 / HEROKU `create-unknown-object.json`: errorCode first.
    pub fn not_found() -> ApiError {
        ApiError::new(404, "NOT_FOUND", "The requested resource does not exist").code_first()
    }

    /// GET `sobjects/{Type}/{x}` where `x` is not an id: Salesforce reads `x` as an
    /// external-id field name.
    pub fn external_id_not_found(segment: &str) -> ApiError {
        ApiError::new(
            404,
            "NOT_FOUND",
            format!("Provided external ID field does not exist or is not accessible: {segment}"),
        )
        .code_first()
    }

    /// §3 / HEROKU `delete-already-deleted.json`.
    pub fn entity_is_deleted() -> ApiError {
        ApiError::new(404, "ENTITY_IS_DELETED", "entity is deleted")
            .with_fields(Vec::<String>::new())
    }

    /// §3 / HEROKU `update-malformed-id.json`.
    pub fn malformed_record_id(id: &str) -> ApiError {
        ApiError::new(
            400,
            "MALFORMED_ID",
            format!("Record ID: id value of incorrect type: {id}"),
        )
        .with_fields(["Id"])
    }

    /// §3: 403 REQUEST_LIMIT_EXCEEDED.
    pub fn request_limit_exceeded() -> ApiError {
        ApiError::new(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        )
    }

    pub fn malformed_query(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "MALFORMED_QUERY", message)
    }

    pub fn invalid_field(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "INVALID_FIELD", message)
    }

    pub fn invalid_type(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "INVALID_TYPE", message)
    }

    pub fn json_parser(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "JSON_PARSER_ERROR", message)
    }

    /// HEROKU `create-invalid-field.json` / `update-invalid-field.json`.
    pub fn no_such_column(field: &str, sobject: &str) -> ApiError {
        ApiError::invalid_field(format!(
            "No such column '{field}' on sobject of type {sobject}"
        ))
    }

    /// HEROKU `create-required-field-missing.json`.
    pub fn required_fields_missing(fields: &[String]) -> ApiError {
        ApiError::new(
            400,
            "REQUIRED_FIELD_MISSING",
            format!("Required fields are missing: [{}]", fields.join(", ")),
        )
        .with_fields(fields.iter().cloned())
    }

    /// HEROKU `create-invalid-picklist-value.json`.
    pub fn bad_restricted_picklist(label: &str, value: &str, field: &str) -> ApiError {
        ApiError::new(
            400,
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            format!("{label}: bad value for restricted picklist field: {value}"),
        )
        .with_fields([field])
    }

    /// §3: the status is [UNCONFIRMED] (400 in production logs, 500 in one fixture); 400 here.
    pub fn unable_to_lock_row(id: &str) -> ApiError {
        ApiError::new(
            400,
            "UNABLE_TO_LOCK_ROW",
            format!("unable to obtain exclusive access to this record or 1 records: {id}"),
        )
        .with_fields(Vec::<String>::new())
    }

    pub fn method_not_allowed(method: &str, allowed: &[&str]) -> ApiError {
        ApiError::new(
            405,
            "METHOD_NOT_ALLOWED",
            format!(
                "HTTP Method '{method}' not allowed. Allowed are {}",
                allowed.join(",")
            ),
        )
        .code_first()
    }

    /// A loud answer for resources the stand-in deliberately does not implement, so a test
    /// that wanders there fails with a clear reason instead of a plausible-looking 404.
    pub fn standin_unsupported(what: &str) -> ApiError {
        ApiError::new(
            501,
            "STANDIN_UNSUPPORTED",
            format!("sf-standin does not implement {what}"),
        )
        .code_first()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_has_error_code_first() {
        assert_eq!(
            ApiError::not_found().body().to_json(),
            r#"[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]"#
        );
    }

    #[test]
    fn recorded_orders() {
        assert_eq!(
            ApiError::entity_is_deleted().body().to_json(),
            r#"[{"message":"entity is deleted","errorCode":"ENTITY_IS_DELETED","fields":[]}]"#
        );
        assert_eq!(
            ApiError::malformed_record_id("a00B000000FSjVUIB1")
                .body()
                .to_json(),
            r#"[{"message":"Record ID: id value of incorrect type: a00B000000FSjVUIB1","errorCode":"MALFORMED_ID","fields":["Id"]}]"#
        );
        assert_eq!(
            ApiError::no_such_column("FavoritePet__c", "Account")
                .body()
                .to_json(),
            r#"[{"message":"No such column 'FavoritePet__c' on sobject of type Account","errorCode":"INVALID_FIELD"}]"#
        );
    }

    #[test]
    fn save_result_errors_use_status_code() {
        let e = ApiError::required_fields_missing(&["Name".to_string()]);
        assert_eq!(
            e.to_save_result_error().to_json(),
            r#"{"statusCode":"REQUIRED_FIELD_MISSING","message":"Required fields are missing: [Name]","fields":["Name"]}"#
        );
    }
}
