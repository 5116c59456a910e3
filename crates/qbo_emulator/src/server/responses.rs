//! Response builders: the envelopes and status codes QBO answers with.

use super::*;

// ---------------------------------------------------------------------------------------------
// Response builders

pub(super) fn respond(status: StatusCode, ctype: &'static str, tid: &str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(tid) {
        h.insert("intuit_tid", v);
    }
    r
}

pub(super) fn api_respond(status: StatusCode, ctype: &'static str, tid: &str, body: impl Into<Body>) -> Response {
    let mut r = respond(status, ctype, tid, body);
    let h = r.headers_mut();
    h.insert("qbo-version", HeaderValue::from_static(QBO_VERSION));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=0, no-cache, no-store, must-revalidate, private"));
    h.insert(header::EXPIRES, HeaderValue::from_static("0"));
    r
}

/// The general capitalised Fault envelope (`{"Fault":{"Error":[...],"type":...}}`).
pub(super) fn fault_body(ftype: &str, code: &str, message: &str, detail: &str, element: Option<&str>) -> Vec<u8> {
    let mut err = json!({"Message": message, "Detail": detail, "code": code});
    if let Some(e) = element {
        err["element"] = json!(e);
    }
    serde_json::to_vec(&json!({"Fault": {"Error": [err], "type": ftype}, "time": now_time()})).unwrap_or_default()
}

pub(super) fn validation_fault(tid: &str, e: &QueryError) -> Response {
    api_respond(StatusCode::BAD_REQUEST, JSON_CT, tid, fault_body("ValidationFault", e.code, e.message, &e.detail, Some("")))
}

pub(super) fn system_fault_body() -> Vec<u8> {
    fault_body(
        "SystemFault",
        "10000",
        "An application error has occurred while processing your request",
        "System Failure Error: An unexpected error occurred (injected by qbo_emulator)",
        None,
    )
}

/// The lower-case envelope Intuit sends with 401 and 403 (`{"fault":{"error":[...]}}`).
pub(super) fn lower_envelope(message: &str, detail: &str, code: &str, ftype: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "warnings": null, "intuitObject": null,
        "fault": {"error": [{"message": message, "detail": detail, "code": code, "element": null}], "type": ftype},
        "report": null, "queryResponse": null, "batchItemResponse": [], "attachableResponse": [],
        "syncErrorResponse": null, "requestId": null, "time": Utc::now().timestamp_millis(), "status": null,
        "cdcresponse": []
    }))
    .unwrap_or_default()
}

pub(super) fn unauthorized(tid: &str, e: BearerError) -> Response {
    let body = lower_envelope("message=AuthenticationFailed; errorCode=003200; statusCode=401", e.detail(), "3200", "AUTHENTICATION");
    let mut r = api_respond(StatusCode::UNAUTHORIZED, PLAIN_JSON_CT, tid, body);
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"Intuit\", error=\"invalid_token\""));
    r
}

pub(super) fn forbidden(tid: &str) -> Response {
    let body = lower_envelope(
        "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
        "The application is not authorized to access this realm (company)",
        "3100",
        "SERVICE",
    );
    api_respond(StatusCode::FORBIDDEN, PLAIN_JSON_CT, tid, body)
}

pub(super) fn throttled(tid: &str, k: &Knobs) -> Response {
    const MSG: &str = "message=ThrottleExceeded; errorCode=003001; statusCode=429";
    const DETAIL: &str = "The request limit was reached. Try again later";
    let mut r = match k.throttle_body {
        ThrottleBody::Json => api_respond(StatusCode::TOO_MANY_REQUESTS, JSON_CT, tid, fault_body("SERVICE", "3001", MSG, DETAIL, None)),
        ThrottleBody::Xml => {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
                 <IntuitResponse xmlns=\"http://schema.intuit.com/finance/v3\" time=\"{}\">\
                 <Fault type=\"SERVICE\"><Error code=\"3001\"><Message>{MSG}</Message>\
                 <Detail>{DETAIL}</Detail></Error></Fault></IntuitResponse>",
                now_time()
            );
            api_respond(StatusCode::TOO_MANY_REQUESTS, "application/xml", tid, body)
        }
    };
    if let Some(s) = k.retry_after_secs {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}
