//! SOAP `login()` (docs/salesforce-api.md §1d) on `/services/Soap/u/{ver}` (partner) and
//! `/services/Soap/c/{ver}` (enterprise): the success envelope and the INVALID_LOGIN fault
//! (HTTP 500). Other SOAP calls are not implemented (answered with a fault saying so).
//!
//! Accounting as for OAuth (see [`crate::auth`]): login requests count, conservatively.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;
use quick_xml::reader::Reader;
use serde_json::Value;

use crate::faults::Scope;
use crate::http::{FaultEffect, Shared, Style, apply_fault, drop_connection};
use crate::org::Org;
use crate::rest::OLDEST_VERSION;

/// `login()` is available up to this version only (§1d, "Deprecation").
const LAST_LOGIN_VERSION: u32 = 64;

const ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

fn xml_response(status: u16, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    r
}

/// A SOAP fault envelope. Login faults carry `sf:LoginFault`, others `sf:UnexpectedErrorFault`.
pub(crate) fn fault(status: u16, code: &str, message: &str) -> Response {
    let detail_type = if matches!(code, "INVALID_LOGIN" | "LOGIN_MUST_USE_SECURITY_TOKEN") {
        "LoginFault"
    } else {
        "UnexpectedErrorFault"
    };
    let message = escape(message);
    xml_response(
        status,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{ENVELOPE_NS}" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {message}</faultstring><detail><sf:{detail_type} xsi:type="sf:{detail_type}"><sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{message}</sf:exceptionMessage></sf:{detail_type}></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#
        ),
    )
}

/// The recorded INVALID_LOGIN fault (§1d).
pub(crate) fn invalid_login() -> Response {
    fault(
        500,
        "INVALID_LOGIN",
        "Invalid username, password, security token; or user locked out.",
    )
}

fn must_use_token() -> Response {
    fault(
        500,
        "LOGIN_MUST_USE_SECURITY_TOKEN",
        "Invalid username, password, security token; or user locked out. Are you at a new location? When accessing Salesforce--either via a desktop client or the API--from outside of your company’s trusted networks, you must add a security token to your password to log in. To get your new security token, log in to Salesforce. From your personal settings, enter Reset My Security Token in the Quick Find box, then select Reset My Security Token.",
    )
}

/// The operation (first element of the Body) and the login() arguments.
#[derive(Debug, Default, PartialEq)]
struct Call {
    operation: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

fn parse_call(xml: &str) -> Result<Call, String> {
    let mut reader = Reader::from_str(xml);
    let mut call = Call::default();
    let mut stack: Vec<String> = Vec::new();
    let mut text = String::new();
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if stack.last().is_some_and(|p| p == "Body") && call.operation.is_none() {
                    call.operation = Some(name.clone());
                }
                stack.push(name);
                text.clear();
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if stack.last().is_some_and(|p| p == "Body") && call.operation.is_none() {
                    call.operation = Some(name);
                }
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(|e| e.to_string())?),
            Event::CData(t) => text.push_str(&t.decode().map_err(|e| e.to_string())?),
            Event::GeneralRef(r) => {
                if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
                    text.push(c);
                } else {
                    let name = r.decode().map_err(|e| e.to_string())?;
                    let v = resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name};"))?;
                    text.push_str(v);
                }
            }
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                let in_login = stack.last().is_some_and(|p| p == "login");
                if in_login && name == "username" {
                    call.username = Some(text.trim().to_string());
                } else if in_login && name == "password" {
                    call.password = Some(text.clone());
                }
                text.clear();
            }
            Event::Eof => return Ok(call),
            _ => {}
        }
    }
}

fn user_info(org: &Org, version: &str, token: &str, kind: char) -> String {
    let spec = &org.inner.spec;
    let user = org.get("User", &org.login_user_id()).unwrap_or(Value::Null);
    let field = |k: &str| escape(user.get(k).and_then(Value::as_str).unwrap_or("")).into_owned();
    let org15 = &org.inner.id[..15];
    let base = "{BASE}";
    format!(
        "<metadataServerUrl>{base}/services/Soap/m/{version}/{org15}</metadataServerUrl>\
         <passwordExpired>false</passwordExpired>\
         <sandbox>{sandbox}</sandbox>\
         <serverUrl>{base}/services/Soap/{kind}/{version}/{org15}</serverUrl>\
         <sessionId>{token}</sessionId>\
         <userId>{user_id}</userId>\
         <userInfo>\
         <accessibilityMode>false</accessibilityMode>\
         <chatterExternal>false</chatterExternal>\
         <currencySymbol>¥</currencySymbol>\
         <orgAttachmentFileSizeLimit>5242880</orgAttachmentFileSizeLimit>\
         <orgDefaultCurrencyIsoCode>JPY</orgDefaultCurrencyIsoCode>\
         <orgDefaultCurrencyLocale>ja_JP</orgDefaultCurrencyLocale>\
         <orgDisallowHtmlAttachments>false</orgDisallowHtmlAttachments>\
         <orgHasPersonAccounts>{pa}</orgHasPersonAccounts>\
         <organizationId>{org_id}</organizationId>\
         <organizationMultiCurrency>false</organizationMultiCurrency>\
         <organizationName>sf-standin {org15}</organizationName>\
         <profileId>00e5g000000StAnDAA</profileId>\
         <roleId xsi:nil=\"true\"/>\
         <sessionSecondsValid>{secs}</sessionSecondsValid>\
         <userDefaultCurrencyIsoCode xsi:nil=\"true\"/>\
         <userEmail>{email}</userEmail>\
         <userFullName>{name}</userFullName>\
         <userId>{user_id}</userId>\
         <userLanguage>ja</userLanguage>\
         <userLocale>ja_JP</userLocale>\
         <userName>{username}</userName>\
         <userTimeZone>Asia/Tokyo</userTimeZone>\
         <userType>Standard</userType>\
         <userUiSkin>Theme3</userUiSkin>\
         </userInfo>",
        sandbox = spec.sandbox,
        user_id = org.login_user_id(),
        pa = spec.person_accounts,
        org_id = org.inner.id,
        secs = spec.session_seconds,
        email = field("Email"),
        name = field("Name"),
        username = field("Username"),
    )
}

/// `POST /services/Soap/{u|c}/{version}`.
pub(crate) async fn login(
    State(sh): State<Arc<Shared>>,
    Path(version): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let major = version
        .strip_suffix(".0")
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(0);
    let xml = String::from_utf8_lossy(&body);
    let call = match parse_call(&xml) {
        Ok(c) => c,
        Err(e) => {
            return fault(
                500,
                "INVALID_XML",
                &format!("Unable to parse the request: {e}"),
            );
        }
    };
    let org = call.username.as_deref().and_then(|u| sh.org_by_username(u));
    if let Some(org) = &org {
        let fault_kind = org.take_fault("POST", &path, Scope::CompositeRequest);
        match apply_fault(&sh, org, fault_kind, Style::Soap, None).await {
            FaultEffect::Proceed => {}
            FaultEffect::Drop => {
                org.log("POST", &path, 0, false);
                return drop_connection();
            }
            FaultEffect::Respond(r) => {
                org.log("POST", &path, r.status().as_u16(), false);
                return r;
            }
        }
    }
    let kind = if path.contains("/Soap/c/") { 'c' } else { 'u' };
    let resp = login_response(&sh, org.as_ref(), &call, major, &version, kind);
    if let Some(org) = &org {
        org.charge_login();
        org.log("POST", &path, resp.status().as_u16(), true);
    }
    resp
}

fn login_response(
    sh: &Shared,
    org: Option<&Org>,
    call: &Call,
    major: u32,
    version: &str,
    kind: char,
) -> Response {
    if major < OLDEST_VERSION {
        return fault(
            500,
            "UNSUPPORTED_API_VERSION",
            &format!(
                "The API version that was specified ({version}) is below the minimum supported ({OLDEST_VERSION}.0). Change the version number and run the request again."
            ),
        );
    }
    if call.operation.as_deref() != Some("login") {
        return fault(
            500,
            "UNKNOWN_EXCEPTION",
            &format!(
                "sf-standin implements only login() in the SOAP API, not {}",
                call.operation.as_deref().unwrap_or("(no operation)")
            ),
        );
    }
    if major > LAST_LOGIN_VERSION {
        // [UNCONFIRMED wording] login() is retired from v65.0 on (§1d).
        return fault(
            500,
            "INVALID_OPERATION",
            &format!("login() is not available in API version {version}; use OAuth 2.0"),
        );
    }
    let Some(org) = org else {
        return invalid_login();
    };
    let spec = &org.inner.spec;
    let given = call.password.as_deref().unwrap_or("");
    let expected = format!("{}{}", spec.password, spec.security_token);
    if given != expected {
        if given == spec.password && !spec.security_token.is_empty() {
            return must_use_token();
        }
        return invalid_login();
    }
    let active = org
        .get("User", &org.login_user_id())
        .is_some_and(|u| u.get("IsActive") != Some(&Value::Bool(false)));
    if !active {
        return invalid_login();
    }
    if !spec.api_enabled || !spec.rest_api_available {
        return fault(
            500,
            "API_DISABLED_FOR_ORG",
            "API is not enabled for this Organization or Partner",
        );
    }
    let token = org.issue_session();
    let ns = if kind == 'c' {
        "urn:enterprise.soap.sforce.com"
    } else {
        "urn:partner.soap.sforce.com"
    };
    let info = user_info(org, version, &token, kind).replace("{BASE}", &sh.base_url);
    xml_response(
        200,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{ENVELOPE_NS}" xmlns="{ns}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><loginResponse><result>{info}</result></loginResponse></soapenv:Body></soapenv:Envelope>"#
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_request() {
        let xml = r#"<env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">
  <env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com">
    <n1:username>u@example.com</n1:username><n1:password>p&amp;w&#100;TOKEN</n1:password></n1:login></env:Body></env:Envelope>"#;
        let call = parse_call(xml).expect("parses");
        assert_eq!(call.operation.as_deref(), Some("login"));
        assert_eq!(call.username.as_deref(), Some("u@example.com"));
        assert_eq!(call.password.as_deref(), Some("p&wdTOKEN"));
    }

    #[test]
    fn other_operations_are_named() {
        let xml = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><query/></soapenv:Body></soapenv:Envelope>"#;
        assert_eq!(
            parse_call(xml).expect("parses").operation.as_deref(),
            Some("query")
        );
        assert!(parse_call("<a><b></a>").is_err());
    }
}
