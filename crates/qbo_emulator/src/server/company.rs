//! The company-level reads clients make before anything else (singer's tap calls
//! `companyinfo/{realm}` to discover the company): `CompanyInfo` and `Preferences`, one fixed
//! record each, in QuickBooks' envelope.

use super::*;

/// `GET /v3/company/{realm}/companyinfo/{realm}`'s record.
fn company_info(realm: &str) -> serde_json::Value {
    json!({
        "CompanyName": "qbo_rs Emulator Company",
        "LegalName": "qbo_rs Emulator Company",
        "CompanyAddr": {"Id": "1", "Line1": "123 Sierra Way", "City": "San Pablo", "CountrySubDivisionCode": "CA", "PostalCode": "87999"},
        "Country": "US",
        "Email": {"Address": "noreply@example.com"},
        "SupportedLanguages": "en",
        "FiscalYearStartMonth": "January",
        "CompanyStartDate": "2015-01-01",
        "NameValue": [],
        "domain": "QBO",
        "sparse": false,
        "Id": realm,
        "SyncToken": "1",
        "MetaData": {"CreateTime": "2015-01-01T00:00:00-08:00", "LastUpdatedTime": "2015-01-01T00:00:00-08:00"},
    })
}

/// `GET /v3/company/{realm}/preferences`'s record.
fn preferences() -> serde_json::Value {
    json!({
        "AccountingInfoPrefs": {"TrackDepartments": false, "ClassTrackingPerTxn": false, "CustomerTerminology": "Customers"},
        "SalesFormsPrefs": {"AllowDeposit": false, "AllowDiscount": true, "AllowShipping": false, "DefaultTerms": {"value": "3"}},
        "CurrencyPrefs": {"MultiCurrencyEnabled": false, "HomeCurrency": {"value": "USD"}},
        "TaxPrefs": {"UsingSalesTax": true},
        "domain": "QBO",
        "sparse": false,
        "Id": "1",
        "SyncToken": "1",
        "MetaData": {"CreateTime": "2015-01-01T00:00:00-08:00", "LastUpdatedTime": "2015-01-01T00:00:00-08:00"},
    })
}

/// The body of a company-level read: `{"<Entity>": {...}, "time": ...}`.
fn envelope(name: &str, record: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ name: record, "time": now_time() })).unwrap_or_default()
}

/// `companyinfo/{id}` for the read route: the company when `id` is the realm, else 610.
pub(super) fn company_info_body(realm: &str, id: &str) -> Result<Vec<u8>, QueryError> {
    if id != realm {
        return Err(QueryError {
            code: "610",
            message: "Object Not Found",
            detail: format!("Object Not Found : Something you're trying to use has been made inactive or does not exist. CompanyInfo Id {id}"),
        });
    }
    Ok(envelope("CompanyInfo", company_info(realm)))
}

/// `GET /v3/company/{realm}/preferences`.
pub(super) async fn preferences_route(State(s): State<Arc<Shared>>, Path(realm): Path<String>, headers: HeaderMap) -> Response {
    const ROUTE: &str = "read";
    let Entered { _slot, tid, fault, .. } = match enter(&s, RequestKind::Read, 1, &realm, &headers).await {
        Ok(entered) => entered,
        Err(refused) => return refused,
    };
    deliver(&s, ROUTE, fault, &tid, envelope("Preferences", preferences()), 1)
}
