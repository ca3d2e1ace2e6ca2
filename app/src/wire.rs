//! JSON on the wire, read in the browser by the browser's own parser.
//!
//! The server writes every answer of a server function, every resource it sends along with the
//! page and every live-channel event with `serde_json`, as before. The browser reads them with
//! `JSON.parse` and turns the parsed object into our types with `serde-wasm-bindgen`, so no JSON
//! parser is compiled into the WASM: `serde_json`'s reader was monomorphised once for each way
//! the page read JSON (a server function's bytes, a resource's or an event's text) and carried
//! float parsing and its error messages along (docs/design.md, "A lighter page"). Everywhere else
//! (the server, native tests) the same functions use `serde_json`.
//!
//! Every number the browser reads fits a JavaScript number exactly: versions and times are
//! milliseconds since 1970 (about 2^41), ids are YClients' (far below 2^53);
//! `serde-wasm-bindgen` refuses an integer that is not exact rather than rounding it.

use serde::de::DeserializeOwned;
use serde::Serialize;
use server_fn::codec::Post;
use server_fn::{Bytes, ContentType, Decodes, Encodes, Format, FormatType};
#[cfg(all(feature = "browser", target_arch = "wasm32"))]
use wasm_bindgen::JsCast;

/// The server functions' answers and errors: `application/json` written by `serde_json`, read
/// with [`from_json`]. Use as `#[server(…, output = BrowserJson)]`.
pub type BrowserJson = Post<BrowserJsonEncoding>;

/// The encoding behind [`BrowserJson`] (and [`crate::api::AppError`]'s).
pub struct BrowserJsonEncoding;

impl ContentType for BrowserJsonEncoding {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl FormatType for BrowserJsonEncoding {
    const FORMAT_TYPE: Format = Format::Text;
}

impl<T: Serialize> Encodes<T> for BrowserJsonEncoding {
    type Error = serde_json::Error;

    fn encode(output: &T) -> Result<Bytes, Self::Error> {
        serde_json::to_vec(output).map(Bytes::from)
    }
}

impl<T: DeserializeOwned> Decodes<T> for BrowserJsonEncoding {
    type Error = JsonError;

    fn decode(bytes: Bytes) -> Result<T, Self::Error> {
        let text = std::str::from_utf8(&bytes).map_err(|e| JsonError(e.to_string()))?;
        from_json(text)
    }
}

/// Why a JSON text could not be read as the type asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(pub String);

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JsonError {}

/// Reads `text` as a `T`: `JSON.parse` and `serde-wasm-bindgen` in the browser, `serde_json`
/// elsewhere.
#[cfg(all(feature = "browser", target_arch = "wasm32"))]
pub fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, JsonError> {
    let value = js_sys::JSON::parse(text).map_err(|e| {
        JsonError(
            e.as_string()
                .or_else(|| {
                    e.dyn_ref::<js_sys::Error>()
                        .map(|e| String::from(e.message()))
                })
                .unwrap_or_else(|| "not JSON".into()),
        )
    })?;
    serde_wasm_bindgen::from_value(value).map_err(|e| JsonError(e.to_string()))
}

/// Reads `text` as a `T`: `JSON.parse` and `serde-wasm-bindgen` in the browser, `serde_json`
/// elsewhere.
#[cfg(not(all(feature = "browser", target_arch = "wasm32")))]
pub fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, JsonError> {
    serde_json::from_str(text).map_err(|e| JsonError(e.to_string()))
}

/// Writes `value` as JSON text: `serde-wasm-bindgen` and `JSON.stringify` in the browser (maps
/// as objects, as `serde_json` writes them), `serde_json` elsewhere.
#[cfg(all(feature = "browser", target_arch = "wasm32"))]
pub fn to_json<T: Serialize>(value: &T) -> Result<String, JsonError> {
    let value = value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsonError(e.to_string()))?;
    js_sys::JSON::stringify(&value)
        .map(String::from)
        .map_err(|_| JsonError("the value cannot be written as JSON".into()))
}

/// Writes `value` as JSON text: `serde-wasm-bindgen` and `JSON.stringify` in the browser (maps
/// as objects, as `serde_json` writes them), `serde_json` elsewhere.
#[cfg(not(all(feature = "browser", target_arch = "wasm32")))]
pub fn to_json<T: Serialize>(value: &T) -> Result<String, JsonError> {
    serde_json::to_string(value).map_err(|e| JsonError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AppError;

    #[test]
    fn an_answer_and_an_error_read_back_as_they_were_written() {
        let error = AppError::TooManyRequests {
            retry_after_secs: 7,
        };
        let bytes = <BrowserJsonEncoding as Encodes<AppError>>::encode(&error).expect("encodes");
        assert_eq!(&bytes[..], br#"{"TooManyRequests":{"retry_after_secs":7}}"#);
        let read: AppError = BrowserJsonEncoding::decode(bytes).expect("decodes");
        assert_eq!(read, error);
    }

    #[test]
    fn text_that_is_not_the_type_is_an_error_not_a_panic() {
        for text in ["", "{", "\"Unauthorized", r#"{"Nope":1}"#, "[1,2]"] {
            assert!(from_json::<AppError>(text).is_err(), "{text:?}");
        }
        let bytes = Bytes::from_static(&[0xff, 0xfe]);
        assert!(<BrowserJsonEncoding as Decodes<AppError>>::decode(bytes).is_err());
    }
}
