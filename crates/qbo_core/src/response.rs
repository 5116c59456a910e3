//! Reading QBO response bodies without copying records: the entity array is borrowed as
//! raw JSON slices of the response buffer, and only the few fields we need (Id, SyncToken,
//! MetaData times, TxnDate) are looked at. Faults are read in both casings QBO uses
//! (`Fault/Error/Message` and the 401 envelope's `fault/error/message`) and from XML.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A QBO fault, whatever envelope it came in.
#[derive(Debug, Clone, Default)]
pub struct Fault {
    pub fault_type: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
}

impl Fault {
    pub fn is_throttle(&self) -> bool {
        self.code == "3001" || self.message.contains("ThrottleExceeded")
    }

    pub fn is_validation(&self) -> bool {
        self.fault_type.eq_ignore_ascii_case("ValidationFault")
    }

    pub fn is_auth(&self) -> bool {
        matches!(self.fault_type.to_ascii_uppercase().as_str(), "AUTHENTICATION" | "AUTHENTICATIONFAULT" | "AUTHORIZATIONFAULT")
            || self.code == "3200"
            || self.code == "3100"
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.fault_type, self.code, self.message)?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

/// The parts of a query response we use.
#[derive(Debug, Default)]
pub struct Envelope<'a> {
    pub has_query_response: bool,
    /// The body is a Change Data Capture answer (read by [`crate::cdc::parse_cdc`]).
    pub has_cdc_response: bool,
    pub records: Vec<&'a RawValue>,
    pub total_count: Option<u64>,
    pub fault: Option<Fault>,
}

impl Envelope<'_> {
    /// Whether the body carries the answer its call asks for.
    pub fn answers(&self, cdc: bool) -> bool {
        if cdc {
            self.has_cdc_response
        } else {
            self.has_query_response
        }
    }
}

/// Parses a JSON body; `Err` means the body is not JSON at all (truncated, HTML, XML).
pub fn parse_envelope<'a>(body: &'a [u8], entity: &str) -> Result<Envelope<'a>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let env = MapSeed(EnvelopeVisitor { entity }).deserialize(&mut de)?;
    de.end()?;
    Ok(env)
}

/// Deserializes a map with a visitor that carries state (the entity whose array to borrow).
struct MapSeed<V>(V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for MapSeed<V> {
    type Value = V::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self.0)
    }
}

struct EnvelopeVisitor<'e> {
    entity: &'e str,
}

impl<'de> Visitor<'de> for EnvelopeVisitor<'_> {
    type Value = Envelope<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a QBO response object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut env = Envelope::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "QueryResponse" | "queryResponse" => {
                    let qr: Option<QueryResponse<'de>> = map.next_value_seed(OptionalSeed(MapSeed(QueryResponseVisitor { entity: self.entity })))?;
                    if let Some(qr) = qr {
                        env.has_query_response = true;
                        env.records = qr.records;
                        env.total_count = qr.total_count;
                    }
                }
                "CDCResponse" => {
                    env.has_cdc_response = true;
                    map.next_value::<IgnoredAny>()?;
                }
                "Fault" | "fault" => {
                    let raw: Option<FaultBody> = map.next_value()?;
                    if let Some(raw) = raw {
                        env.fault = Some(raw.into_fault());
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(env)
    }
}

struct QueryResponse<'a> {
    records: Vec<&'a RawValue>,
    total_count: Option<u64>,
}

struct QueryResponseVisitor<'e> {
    entity: &'e str,
}

struct OptionalSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for OptionalSeed<S> {
    type Value = Option<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V<S>(S);
        impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for V<S> {
            type Value = Option<S::Value>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("null or a value")
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                self.0.deserialize(d).map(Some)
            }
        }
        d.deserialize_option(V(self.0))
    }
}

impl<'de> Visitor<'de> for QueryResponseVisitor<'_> {
    type Value = QueryResponse<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a QueryResponse object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = QueryResponse { records: Vec::new(), total_count: None };
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key.as_ref() == self.entity {
                out.records = map.next_value::<Vec<&'de RawValue>>()?;
            } else if key.as_ref() == "totalCount" {
                out.total_count = Some(map.next_value::<u64>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

#[derive(Deserialize)]
struct FaultBody {
    #[serde(rename = "Error", alias = "error", default)]
    errors: Vec<FaultError>,
    #[serde(rename = "type", default)]
    fault_type: Option<String>,
}

#[derive(Deserialize)]
struct FaultError {
    #[serde(rename = "Message", alias = "message", default)]
    message: Option<String>,
    #[serde(rename = "Detail", alias = "detail", default)]
    detail: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

impl FaultBody {
    fn into_fault(self) -> Fault {
        let first = self.errors.into_iter().next();
        let (message, detail, code) = match first {
            Some(e) => (
                e.message.unwrap_or_default(),
                e.detail,
                match e.code {
                    Some(serde_json::Value::String(s)) => s,
                    Some(other) => other.to_string(),
                    None => String::new(),
                },
            ),
            None => (String::new(), None, String::new()),
        };
        Fault { fault_type: self.fault_type.unwrap_or_default(), code, message, detail }
    }
}

/// Throttles have arrived as XML even when JSON was asked for; pull the
/// code and message out of `<Fault type=..><Error code=..><Message>..` without an XML parser.
pub fn parse_xml_fault(body: &str) -> Option<Fault> {
    if !body.contains("Fault") {
        return None;
    }
    let attr = |tag_start: &str, name: &str| -> Option<String> {
        let at = body.find(tag_start)?;
        let rest = &body[at..body[at..].find('>').map_or(body.len(), |e| at + e)];
        let key = format!("{name}=\"");
        let v = rest.find(&key)? + key.len();
        Some(rest[v..v + rest[v..].find('"')?].to_string())
    };
    let element = |tag: &str| -> Option<String> {
        let open = format!("<{tag}>");
        let s = body.find(&open)? + open.len();
        Some(body[s..s + body[s..].find(&format!("</{tag}>"))?].trim().to_string())
    };
    Some(Fault {
        fault_type: attr("<Fault", "type").unwrap_or_default(),
        code: attr("<Error", "code").unwrap_or_default(),
        message: element("Message").unwrap_or_default(),
        detail: element("Detail"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_records_count_and_empty() {
        let body = br#"{"QueryResponse":{"Invoice":[{"Id":"1","SyncToken":"0"},{"Id":"2"}],"startPosition":1,"maxResults":2},"time":"x"}"#;
        let env = parse_envelope(body, "Invoice").unwrap();
        assert!(env.has_query_response);
        assert_eq!(env.records.len(), 2);
        assert_eq!(env.records[1].get(), r#"{"Id":"2"}"#);
        let env = parse_envelope(br#"{"QueryResponse":{},"time":"x"}"#, "Invoice").unwrap();
        assert!(env.has_query_response && env.records.is_empty());
        let env = parse_envelope(br#"{"QueryResponse":{"totalCount":41},"time":"x"}"#, "Invoice").unwrap();
        assert_eq!(env.total_count, Some(41));
    }

    #[test]
    fn reads_both_fault_casings_and_xml() {
        let upper = br#"{"Fault":{"Error":[{"Message":"Invalid query","Detail":"bad","code":"4001"}],"type":"ValidationFault"},"time":"x"}"#;
        let f = parse_envelope(upper, "Invoice").unwrap().fault.unwrap();
        assert!(f.is_validation());
        assert_eq!(f.code, "4001");
        let lower = br#"{"warnings":null,"intuitObject":null,"fault":{"error":[{"message":"message=AuthenticationFailed; errorCode=003200; statusCode=401","detail":"Token expired","code":"3200","element":null}],"type":"AUTHENTICATION"},"report":null,"queryResponse":null,"batchItemResponse":[],"time":1601391072830}"#;
        let env = parse_envelope(lower, "Invoice").unwrap();
        assert!(!env.has_query_response);
        assert!(env.fault.unwrap().is_auth());
        let xml = r#"<?xml version="1.0"?><IntuitResponse><Fault type="SERVICE"><Error code="3001"><Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message><Detail>The request limit was reached.</Detail></Error></Fault></IntuitResponse>"#;
        let f = parse_xml_fault(xml).unwrap();
        assert!(f.is_throttle());
        assert_eq!(f.fault_type, "SERVICE");
    }

    #[test]
    fn truncated_body_is_an_error() {
        assert!(parse_envelope(br#"{"QueryResponse":{"Invoice":[{"Id":"1""#, "Invoice").is_err());
    }
}
