//! Hostile input, generated. Property tests over every surface that takes input from outside: the
//! marketplace redirect, `user_data` and its signature, the onboarding token, the server
//! functions' forms and both webhooks.
//!
//! Each HTTP property spawns one app and drives proptest's runner by hand: every generated input
//! is sent over HTTP, and the answer must never be a 5xx (nor a dropped connection), must be one
//! of the documented statuses, and nothing forged or unsigned may be accepted. A failure is shrunk
//! (a bounded number of steps) and reported with its smallest input. Every property ends by
//! asserting that all its configured cases ran, and prints the count (`-- --nocapture` shows it).
//! The case counts keep the whole module well under a minute on the 2-core machine.

use crate::helpers::{spawn_app_with, TestApp, APPLICATION_ID, OTHER_SALON, PARTNER_TOKEN, SALON};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::engine::GeneralPurpose;
use base64::Engine;
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use serde_json::{json, Value};
use server::entry::{parse_redirect_query, verify_user_data};
use sha2::{Sha256, Sha512};
use std::collections::HashSet;
use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The JWT secret `helpers::spawn_app_with` configures: forged tokens that are right in every
/// respect but one are signed with it, so the verifier itself is what refuses them.
const JWT_SECRET: &str = "test-jwt-secret-that-is-long-enough-for-hs256";

const REDIRECT_CASES: u32 = 600;
const PARSER_CASES: u32 = 1500;
const USER_DATA_CASES: u32 = 1000;
const TOKEN_CASES: u32 = 250;
const FORM_CASES: u32 = 500;
const LIFECYCLE_CASES: u32 = 600;
const ENTITY_CASES: u32 = 600;

/// Shrinking a failure sends more requests; this bounds it.
const MAX_SHRINK_ITERS: u32 = 300;

// ---------------------------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------------------------

/// Runs `cases` generated inputs through `test`; panics with the (shrunk) failing input, then
/// checks that every configured case really ran and prints the count.
fn generate<S>(
    what: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let executed = AtomicUsize::new(0);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: MAX_SHRINK_ITERS,
        ..ProptestConfig::default()
    });
    let started = Instant::now();
    let outcome = runner.run(&strategy, |input| {
        executed.fetch_add(1, Ordering::Relaxed);
        test(input)
    });
    if let Err(failure) = outcome {
        panic!("hostile: {what}: {failure}");
    }
    let executed = executed.into_inner();
    assert_eq!(
        executed, cases as usize,
        "hostile: {what}: every configured case must have run"
    );
    eprintln!(
        "hostile: {what} — {executed} generated inputs, all answered as documented ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

/// [`generate`] for properties that talk to the app: the runner is synchronous, so it runs on a
/// blocking-allowed thread and each case blocks on its requests.
fn generate_http<S, F, Fut>(what: &str, cases: u32, strategy: S, test: F)
where
    S: Strategy,
    S::Value: Debug,
    F: Fn(S::Value) -> Fut,
    Fut: Future<Output = Result<(), TestCaseError>>,
{
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        generate(what, cases, strategy, |input| handle.block_on(test(input)))
    });
}

async fn spawn_generating_app() -> TestApp {
    let app = spawn_app_with(|vars| {
        // Generation sends thousands of redirects from one address.
        vars.insert("RATE_LIMIT_REDIRECT_PER_MINUTE".into(), "1000000".into());
        vars.insert("RATE_LIMIT_REDIRECT_BURST".into(), "1000000".into());
    })
    .await;
    // Both branches are being installed, so generated entries reach every check.
    app.sandbox.create_pending_link(SALON);
    app.sandbox.create_pending_link(OTHER_SALON);
    app
}

#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    location: String,
    body: String,
}

impl Answer {
    fn is_html(&self) -> bool {
        self.content_type
            .to_ascii_lowercase()
            .starts_with("text/html")
    }
}

/// Sends a request; a dropped connection (a panicking handler) is a failure like a 5xx.
async fn answer(request: reqwest::RequestBuilder) -> Result<Answer, TestCaseError> {
    let response = request.send().await.map_err(|e| {
        let error = format!("{e:?}");
        TestCaseError::fail(format!(
            "no answer — the connection failed (a panic in the server?): {}",
            error.chars().take(600).collect::<String>()
        ))
    })?;
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    };
    let status = response.status().as_u16();
    let content_type = header(CONTENT_TYPE);
    let location = header(LOCATION);
    // Bounded: a live stream that wrongly opened must not hang the property.
    let body = tokio::time::timeout(Duration::from_secs(3), response.text())
        .await
        .map(|text| text.unwrap_or_default())
        .unwrap_or_else(|_| "<body still streaming after 3 s>".to_owned());
    Ok(Answer {
        status,
        content_type,
        location,
        body,
    })
}

fn expect_status(what: &str, answer: &Answer, allowed: &[u16]) -> Result<(), TestCaseError> {
    prop_assert!(
        answer.status < 500,
        "{what}: a {} (5xx): {}",
        answer.status,
        answer.body.chars().take(300).collect::<String>()
    );
    prop_assert!(
        allowed.contains(&answer.status),
        "{what}: {} is not a documented status {allowed:?}: {}",
        answer.status,
        answer.body.chars().take(300).collect::<String>()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Generators shared by the properties
// ---------------------------------------------------------------------------------------------

/// Text as an attacker (or a confused client) sends it: control characters, U+0000, bidi marks,
/// markup, SQL, long strings.
fn hostile_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-zA-Z0-9 _.-]{0,16}",
        3 => prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        3 => "[a-z]{0,4}\\x00[a-z]{0,4}",
        1 => "[\\x00-\\x1f\\x7f]{1,8}",
        2 => prop::sample::select(vec![
            "", "\u{0}", "\u{feff}", "\u{202e}", "\u{fffd}", "\u{10ffff}", "null", "true",
            "<script>alert(1)</script>", "'; DROP TABLE salons; --", "%00", "\\u0000",
            "Андрей Иванов", "🙂", "\r\n\r\n", "\"", "\\",
        ])
        .prop_map(String::from),
        1 => (1usize..2048).prop_map(|n| "ж".repeat(n)),
    ]
    .boxed()
}

fn json_number() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
    ]
    .boxed()
}

/// Any JSON value, nested a few levels, with hostile strings (U+0000 included) as keys and values.
fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        hostile_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((hostile_text(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
    .boxed()
}

fn json_object() -> BoxedStrategy<Value> {
    prop::collection::vec((hostile_text(), json_value()), 0..6)
        .prop_map(|fields| Value::Object(fields.into_iter().collect()))
        .boxed()
}

/// What YClients' `user_data` looks like, with hostile values in its fields.
fn user_like_object() -> BoxedStrategy<Value> {
    (
        json_value(),
        hostile_text(),
        hostile_text(),
        hostile_text(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(id, name, phone, email, approved, user_id)| {
            let key = if user_id { "user_id" } else { "id" };
            json!({key: id, "name": name, "phone": phone, "email": email, "is_approved": approved,
                "avatar": null, "salon_name": "Салон «Орхидея»"})
        })
        .boxed()
}

/// JSON nested `depth` levels deep (serde_json refuses more than 128).
fn deeply_nested(depth: usize, object: bool) -> Vec<u8> {
    if object {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)).into_bytes()
    } else {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
    }
}

/// Bytes to sign as `user_data`: objects, non-objects, deep nesting, non-JSON.
fn user_data_payload() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        4 => json_object().prop_map(|v| v.to_string().into_bytes()),
        3 => user_like_object().prop_map(|v| v.to_string().into_bytes()),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => (1usize..400, any::<bool>()).prop_map(|(depth, object)| deeply_nested(depth, object)),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
    .boxed()
}

fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

fn base64_engine(which: u8) -> &'static GeneralPurpose {
    match which % 4 {
        0 => &STANDARD,
        1 => &STANDARD_NO_PAD,
        2 => &URL_SAFE,
        _ => &URL_SAFE_NO_PAD,
    }
}

/// How a value is written into a query string or a form body.
#[derive(Debug, Clone, Copy)]
enum Enc {
    /// `application/x-www-form-urlencoded` (space as `+`).
    Form,
    /// Every byte as `%XX`.
    Percent,
    /// As it is (the URL parser percent-encodes what it must; `&`, `=`, `+`, `#` keep their power).
    Raw,
}

fn enc() -> impl Strategy<Value = Enc> {
    prop_oneof![4 => Just(Enc::Form), 1 => Just(Enc::Percent), 2 => Just(Enc::Raw)]
}

fn encode(value: &str, how: Enc) -> String {
    match how {
        Enc::Form => form_urlencoded::byte_serialize(value.as_bytes()).collect(),
        Enc::Percent => value.bytes().map(|b| format!("%{b:02X}")).collect(),
        Enc::Raw => value.to_owned(),
    }
}

/// Raw query or form fragments that are not well-formed `key=value` pairs.
fn junk_fragment() -> BoxedStrategy<String> {
    prop::sample::select(vec![
        "",
        "&",
        "=",
        "==",
        "%",
        "%zz",
        "%0",
        "%00",
        "%FF%FE",
        "%C0%80",
        "%E2%80",
        "?",
        "#",
        "salon_id",
        "salon_id=",
        "=962302",
        "&&&&",
        ";",
        "%26",
        "%3D",
        "+",
        "%2B",
        "[]",
        "[",
        "a[b]=c",
        "a[]=1&a[]=2",
        "x=%",
        "=%00",
    ])
    .prop_map(String::from)
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// 1. The redirect, over HTTP
// ---------------------------------------------------------------------------------------------

/// Values for an id parameter. Few distinct *valid* ids (each valid, signed entry asks YClients
/// for the company, at 5 requests a second), many invalid ones.
fn salon_id_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(vec![SALON, OTHER_SALON]).prop_map(|id| id.to_string()),
        1 => Just(i64::MAX.to_string()),
        2 => (i64::MIN..=0i64).prop_map(|id| id.to_string()),
        1 => "[1-9][0-9]{19,40}",
        3 => prop::sample::select(vec![
            "", " ", "abc", "1e3", "0x10", "+962302", " 962302 ", "0962302", "00", "-0",
            "9223372036854775808", "18446744073709551616", "NaN", "１２３", "٣", "962302.0",
            "962302,", ",", ",,", "962302,962303", "962302;962303", "962302\u{0}", "\u{0}",
            "962302\n", "[962302]", "{}", "null", "true", "-962302", "962302%00",
        ])
        .prop_map(String::from),
        1 => hostile_text(),
    ]
    .boxed()
}

fn id_param_name() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec!["salon_id", "salon_ids", "salon_ids[]", "salon_ids%5B%5D"])
            .prop_map(String::from),
        3 => (0u32..4, any::<bool>()).prop_map(|(i, encoded)| {
            if encoded { format!("salon_ids%5B{i}%5D") } else { format!("salon_ids[{i}]") }
        }),
        1 => any::<u64>().prop_map(|i| format!("salon_ids[{i}]")),
        1 => prop::sample::select(vec![
            "salon_ids[x]", "salon_ids[-1]", "salon_ids[", "salon_ids]", "salon_ids[0",
            "salon_ids[[0]]", "salon_ids[ 1]", "salon_ids[1][2]", "SALON_ID", "salon_id%00",
            "salon%5Fid", "salon_id ", "salon_ids[4294967296]", "salon_ids[%00]",
        ])
        .prop_map(String::from),
    ]
    .boxed()
}

fn redirect_segment() -> BoxedStrategy<String> {
    prop_oneof![
        6 => (id_param_name(), salon_id_text(), enc())
            .prop_map(|(name, value, how)| format!("{name}={}", encode(&value, how))),
        2 => (prop::collection::vec(salon_id_text(), 0..6), any::<bool>()).prop_map(|(ids, encoded)| {
            let parts: Vec<String> = ids.iter().map(|id| encode(id, Enc::Form)).collect();
            format!("salon_ids={}", parts.join(if encoded { "%2C" } else { "," }))
        }),
        2 => (prop::sample::select(vec!["user_data", "user_data_sign"]), hostile_text(), enc())
            .prop_map(|(name, value, how)| format!("{name}={}", encode(&value, how))),
        1 => "[0-9a-fA-F]{0,70}".prop_map(|sign| format!("user_data_sign={sign}")),
        1 => "[A-Za-z0-9+/=_-]{0,120}".prop_map(|data| format!("user_data={data}")),
        2 => (hostile_text(), hostile_text(), enc())
            .prop_map(|(name, value, how)| format!("{}={}", encode(&name, how), encode(&value, how))),
        2 => junk_fragment(),
        1 => (1usize..10_000, prop::sample::select(vec!["salon_id=", "salon_ids=", "user_data=", "user_data_sign=", "x="]), prop::sample::select(vec!["9", "A", "%00", ",", "+"]))
            .prop_map(|(n, name, unit)| format!("{name}{}", unit.repeat(n))),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct SignedUserData {
    json: Vec<u8>,
    engine: u8,
    how: Enc,
    uppercase_signature: bool,
}

impl SignedUserData {
    /// A correctly signed JSON object: the only `user_data` that may let anyone in.
    fn is_signed_object(&self) -> bool {
        serde_json::from_slice::<Value>(&self.json).is_ok_and(|v| v.is_object())
    }

    fn query_part(&self) -> String {
        let data = base64_engine(self.engine).encode(&self.json);
        let mut signature = hmac_sha256_hex(PARTNER_TOKEN.as_bytes(), &self.json);
        if self.uppercase_signature {
            signature = signature.to_uppercase();
        }
        format!(
            "user_data={}&user_data_sign={signature}",
            encode(&data, self.how)
        )
    }
}

#[derive(Debug, Clone)]
struct RedirectCase {
    segments: Vec<String>,
    /// Correctly signed user data, inserted at `index % (segments + 1)`.
    signed: Option<(usize, SignedUserData)>,
    /// The last segment, repeated this many more times.
    repeats: usize,
    separator: &'static str,
    /// Padded past the 64 KiB hyper accepts in a request target (a 414 from the HTTP layer).
    oversize: bool,
}

impl RedirectCase {
    fn query(&self) -> String {
        let mut parts = self.segments.clone();
        if let Some(last) = parts.last().cloned() {
            parts.extend(std::iter::repeat_n(last, self.repeats));
        }
        if let Some((index, signed)) = &self.signed {
            parts.insert(index % (parts.len() + 1), signed.query_part());
        }
        let mut query = parts.join(self.separator);
        if self.oversize {
            query.push_str("&pad=");
            query.push_str(&"x".repeat(70 * 1024));
        }
        query
    }

    fn carries_signed_object(&self) -> bool {
        self.signed
            .as_ref()
            .is_some_and(|(_, s)| s.is_signed_object())
    }
}

fn redirect_case() -> BoxedStrategy<RedirectCase> {
    let signed = (user_data_payload(), any::<u8>(), enc(), any::<bool>()).prop_map(
        |(json, engine, how, uppercase_signature)| SignedUserData {
            json,
            engine,
            how,
            uppercase_signature,
        },
    );
    (
        prop::collection::vec(redirect_segment(), 0..10),
        prop::option::weighted(0.35, (any::<usize>(), signed)),
        prop_oneof![6 => Just(0usize), 1 => 1usize..500],
        prop::sample::select(vec!["&", "&", "&", "&&", ";", "&amp;"]),
        prop::bool::weighted(0.02),
    )
        .prop_map(
            |(segments, signed, repeats, separator, oversize)| RedirectCase {
                segments,
                signed,
                repeats,
                separator,
                oversize,
            },
        )
        .boxed()
}

/// 414 (a request target over 64 KiB) comes from the HTTP layer before the request reaches the
/// app, with an empty body.
const REDIRECT_STATUSES: &[u16] = &[200, 303, 400, 401, 403, 404, 409, 413, 414, 422, 429];

/// Longer targets are cut to this: past hyper's ~400 KiB head buffer it answers 431 and closes
/// while the client is still writing, which tells nothing about the app.
const MAX_TARGET: usize = 256 * 1024;

/// A GET written by hand: reqwest (like the `http` crate) refuses to build a request target over
/// 64 KiB, and such targets are exactly what the HTTP layer must answer with a 414.
async fn raw_get(address: &str, target: &str) -> Result<Answer, TestCaseError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = address.trim_start_matches("http://");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(host).await?;
        stream
            .write_all(
                format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| TestCaseError::fail("no answer within 10 s"))?
        .map_err(|e| TestCaseError::fail(format!("no answer — the connection failed: {e}")))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| TestCaseError::fail(format!("not an HTTP answer: {head:?}")))?;
    let header = |name: &str| {
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_owned())
            .unwrap_or_default()
    };
    Ok(Answer {
        status,
        content_type: header("content-type"),
        location: header("location"),
        body: body.to_owned(),
    })
}

async fn redirect_property(app: &TestApp, case: RedirectCase) -> Result<(), TestCaseError> {
    let mut url =
        reqwest::Url::parse(&app.url(&format!("/auth/yclients/redirect?{}", case.query())))
            .map_err(|e| TestCaseError::fail(format!("not a URL: {e}")))?;
    // A `#` ends the query; like a browser, the client does not send the fragment.
    url.set_fragment(None);
    let mut target = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    target.truncate(MAX_TARGET); // ASCII: the URL parser percent-encoded the rest
                                 // reqwest (like the `http` crate) builds no request target over 64 KiB: those go by hand,
                                 // encoded as the URL parser encoded them.
    let answer = if target.len() > 65_000 {
        raw_get(&app.address, &target).await?
    } else {
        answer(app.client.get(url)).await?
    };
    expect_status("redirect", &answer, REDIRECT_STATUSES)?;
    if (400..500).contains(&answer.status) && answer.status != 414 {
        prop_assert!(
            answer.is_html(),
            "a {} without an HTML page (content-type {:?})",
            answer.status,
            answer.content_type
        );
    }
    if matches!(answer.status, 200 | 303) {
        prop_assert!(
            case.carries_signed_object(),
            "let in ({}) without correctly signed user data",
            answer.status
        );
    }
    if answer.status == 303 {
        prop_assert!(
            answer
                .location
                .starts_with("/marketplace/onboarding?token="),
            "303 to {:?}",
            answer.location
        );
    }
    if answer.status == 200 {
        prop_assert!(
            answer.is_html() && answer.body.contains("branch-picker"),
            "a 200 that is not the branch picker"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_redirect_queries_get_a_documented_answer_and_never_a_5xx() {
    let app = spawn_generating_app().await;
    // The generator can produce a query that lets the admin in; make sure that path works here.
    let control = RedirectCase {
        segments: vec![format!("salon_id={SALON}")],
        signed: Some((
            1,
            SignedUserData {
                json: br#"{"id":1,"name":"\u0000"}"#.to_vec(),
                engine: 0,
                how: Enc::Raw,
                uppercase_signature: false,
            },
        )),
        repeats: 0,
        separator: "&",
        oversize: false,
    };
    let entered = answer(app.client.get(format!(
        "{}/auth/yclients/redirect?{}",
        app.address,
        control.query()
    )))
    .await
    .expect("answered");
    assert_eq!(
        entered.status, 303,
        "the control entry is let in: {entered:?}"
    );
    generate_http(
        "redirect query (GET /auth/yclients/redirect)",
        REDIRECT_CASES,
        redirect_case(),
        |case| redirect_property(&app, case),
    );
}

// ---------------------------------------------------------------------------------------------
// 2. The pure functions: parse_redirect_query and verify_user_data
// ---------------------------------------------------------------------------------------------

fn any_query_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => any::<String>(),
        3 => prop::collection::vec(any::<char>(), 0..200).prop_map(String::from_iter),
        6 => redirect_case().prop_map(|case| case.query()),
        1 => (1usize..10_240, prop::sample::select(vec!["salon_ids[]=1&", "salon_ids=", "9", "%", ",", "salon_ids[4294967295]=7&", "\u{0}", "я"]))
            .prop_map(|(n, unit)| unit.repeat(n).chars().take(10_240).collect::<String>()),
    ]
    .boxed()
}

#[test]
fn hostile_redirect_query_parser_never_panics_and_returns_only_positive_unique_ids() {
    generate(
        "parse_redirect_query (pure)",
        PARSER_CASES,
        any_query_text(),
        |raw| {
            if let Ok(parsed) = parse_redirect_query(&raw) {
                prop_assert!(!parsed.salon_ids.is_empty(), "Ok without a salon");
                let mut seen = HashSet::new();
                for id in &parsed.salon_ids {
                    prop_assert!(id.get() > 0, "id {} is not positive", id.get());
                    prop_assert!(seen.insert(id.get()), "id {} returned twice", id.get());
                }
                if let Some(data) = &parsed.user_data {
                    prop_assert!(!data.is_empty(), "empty user_data kept");
                }
            }
            Ok(())
        },
    );
}

#[derive(Debug, Clone)]
enum Mutation {
    /// One byte of the signed JSON changed (XOR with a non-zero mask), then encoded again.
    DataByte { index: usize, mask: u8 },
    /// One hex digit of the signature replaced by a digit of another value.
    SignatureDigit { index: usize, shift: u8 },
    /// One character of the signature replaced by any non-hex character.
    SignatureChar { index: usize, replacement: char },
    /// The signature cut short.
    SignatureTruncated { keep: usize },
    /// Signed with another key.
    OtherKey(String),
    /// Signed over the base64 text instead of the decoded JSON (the known wrong variant).
    OverBase64,
    /// No signature at all.
    Missing,
}

#[derive(Debug, Clone)]
struct UserDataCase {
    object: Value,
    engine: u8,
    uppercase_signature: bool,
    padding_spaces: (usize, usize),
    mutation: Mutation,
    non_object: Value,
    junk: (String, Option<String>),
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 1u8..=255).prop_map(|(index, mask)| Mutation::DataByte { index, mask }),
        2 => (any::<usize>(), 1u8..16).prop_map(|(index, shift)| Mutation::SignatureDigit { index, shift }),
        1 => (any::<usize>(), any::<char>().prop_filter("not hex", |c| !c.is_ascii_hexdigit()))
            .prop_map(|(index, replacement)| Mutation::SignatureChar { index, replacement }),
        1 => (0usize..64).prop_map(|keep| Mutation::SignatureTruncated { keep }),
        1 => "[ -~]{0,40}".prop_filter("another key", |k| k != PARTNER_TOKEN).prop_map(Mutation::OtherKey),
        1 => Just(Mutation::OverBase64),
        1 => Just(Mutation::Missing),
    ]
    .boxed()
}

fn user_data_case() -> BoxedStrategy<UserDataCase> {
    (
        prop_oneof![json_object(), user_like_object()],
        any::<u8>(),
        any::<bool>(),
        (0usize..3, 0usize..3),
        mutation(),
        json_value().prop_filter("not an object", |v| !v.is_object()),
        (any::<String>(), prop::option::of(any::<String>())),
    )
        .prop_map(
            |(object, engine, uppercase_signature, padding_spaces, mutation, non_object, junk)| {
                UserDataCase {
                    object,
                    engine,
                    uppercase_signature,
                    padding_spaces,
                    mutation,
                    non_object,
                    junk,
                }
            },
        )
        .boxed()
}

fn check_user_data(case: UserDataCase) -> Result<(), TestCaseError> {
    let token = PARTNER_TOKEN;
    let engine = base64_engine(case.engine);
    let json = case.object.to_string().into_bytes();
    let sign = |bytes: &[u8]| {
        let hex = hmac_sha256_hex(token.as_bytes(), bytes);
        if case.uppercase_signature {
            hex.to_uppercase()
        } else {
            hex
        }
    };
    let data = format!(
        "{}{}{}",
        " ".repeat(case.padding_spaces.0),
        engine.encode(&json),
        " ".repeat(case.padding_spaces.1)
    );
    let signature = sign(&json);

    // Correctly signed objects are accepted, and decode to what was signed.
    let accepted = verify_user_data(token, &data, Some(&signature));
    let expected: Value = serde_json::from_slice(&json).expect("our own JSON parses");
    prop_assert_eq!(
        accepted,
        Ok(expected),
        "a correctly signed object was refused"
    );

    // Correctly signed non-objects are refused.
    let non_object = case.non_object.to_string().into_bytes();
    prop_assert!(
        verify_user_data(token, &engine.encode(&non_object), Some(&sign(&non_object))).is_err(),
        "a signed non-object was accepted"
    );

    // One change anywhere and it is refused.
    let (mutated_data, mutated_signature) = match &case.mutation {
        Mutation::DataByte { index, mask } => {
            let mut bytes = json.clone();
            let at = index % bytes.len();
            bytes[at] ^= mask;
            (engine.encode(&bytes), Some(signature.clone()))
        }
        Mutation::SignatureDigit { index, shift } => {
            let mut chars: Vec<char> = signature.chars().collect();
            let at = index % chars.len();
            let value = chars[at].to_digit(16).expect("hex") as u8;
            let changed = (value + shift) % 16;
            chars[at] = char::from_digit(u32::from(changed), 16).expect("a hex digit");
            (data.clone(), Some(chars.into_iter().collect()))
        }
        Mutation::SignatureChar { index, replacement } => {
            let mut chars: Vec<char> = signature.chars().collect();
            let at = index % chars.len();
            chars[at] = *replacement;
            (data.clone(), Some(chars.into_iter().collect()))
        }
        Mutation::SignatureTruncated { keep } => {
            (data.clone(), Some(signature.chars().take(*keep).collect()))
        }
        Mutation::OtherKey(key) => (data.clone(), Some(hmac_sha256_hex(key.as_bytes(), &json))),
        Mutation::OverBase64 => (
            data.clone(),
            Some(hmac_sha256_hex(
                token.as_bytes(),
                engine.encode(&json).as_bytes(),
            )),
        ),
        Mutation::Missing => (data.clone(), None),
    };
    let refused = verify_user_data(token, &mutated_data, mutated_signature.as_deref());
    prop_assert!(
        refused.is_err(),
        "{:?} was accepted: {:?}",
        case.mutation,
        refused
    );

    // Anything else: never a panic, and never an Ok for something that is not a signed object.
    let (junk_data, junk_signature) = &case.junk;
    if let Ok(value) = verify_user_data(token, junk_data, junk_signature.as_deref()) {
        prop_assert!(value.is_object(), "a non-object came back");
    }
    Ok(())
}

#[test]
fn hostile_user_data_accepts_exactly_the_correctly_signed_objects() {
    generate(
        "verify_user_data (pure)",
        USER_DATA_CASES,
        user_data_case(),
        check_user_data,
    );
}

// ---------------------------------------------------------------------------------------------
// 3. The token verifier, on every surface that takes a token
// ---------------------------------------------------------------------------------------------

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT with any header and claims, signed with `key` by `alg` (`HS256`, `HS512`, or none).
fn jwt(header: &Value, claims: &Value, key: &[u8], alg: &str) -> String {
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = match alg {
        "HS256" => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key");
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        "HS512" => {
            let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(key).expect("any key");
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        _ => Vec::new(),
    };
    format!("{signing_input}.{}", b64url(&signature))
}

fn remove(claims: &mut Value, name: &str) {
    if let Some(fields) = claims.as_object_mut() {
        fields.remove(name);
    }
}

fn good_claims() -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": SALON.to_string(), "aud": "ai-admin-onboarding", "iss": "ai-admin-connect",
        "scope": "onboarding", "iat": now, "exp": now + 3600, "jti": uuid::Uuid::new_v4().to_string(),
        "generation": 0})
}

/// A token signed with the real secret that is right in every respect but one (`defect`), or,
/// with `None`, right in every respect (the control).
fn forged_token(defect: Option<usize>) -> String {
    let mut claims = good_claims();
    let mut header = json!({"alg": "HS256", "typ": "JWT"});
    let mut alg = "HS256";
    let now = chrono::Utc::now().timestamp();
    match defect {
        None => {}
        Some(0) => claims["aud"] = json!("ai-admin-other"),
        Some(1) => remove(&mut claims, "aud"),
        Some(2) => claims["iss"] = json!("someone-else"),
        Some(3) => remove(&mut claims, "iss"),
        Some(4) => claims["scope"] = json!("admin"),
        Some(5) => remove(&mut claims, "scope"),
        Some(6) => claims["sub"] = json!("0"),
        Some(7) => claims["sub"] = json!("-962302"),
        Some(8) => claims["sub"] = json!("abc"),
        Some(9) => remove(&mut claims, "sub"),
        Some(10) => claims["sub"] = json!("9223372036854775808"),
        Some(11) => claims["sub"] = json!(""),
        Some(12) => claims["exp"] = json!(now - 3600),
        Some(13) => remove(&mut claims, "exp"),
        Some(14) => claims["exp"] = json!("never"),
        Some(15) => {
            header["alg"] = json!("HS512");
            alg = "HS512";
        }
        Some(16) => {
            header["alg"] = json!("none");
            alg = "none";
        }
        Some(17) => claims["aud"] = json!(["ai-admin-other"]),
        Some(18) => claims["sub"] = json!(format!("{SALON}\u{0}")),
        // The salon's token generation: missing, or not the one the database holds.
        Some(19) => remove(&mut claims, "generation"),
        Some(20) => claims["generation"] = json!(1),
        Some(21) => claims["generation"] = json!("0"),
        _ => {
            // Right claims, a wrong key.
            return jwt(
                &header,
                &claims,
                b"another-secret-that-is-long-enough-0000",
                alg,
            );
        }
    }
    jwt(&header, &claims, JWT_SECRET.as_bytes(), alg)
}

/// Tokens that must all be refused: random strings, JWT look-alikes, the real token truncated,
/// altered or rearranged, single-defect forgeries, alg none, huge ones, U+0000.
fn hostile_token(valid: String) -> BoxedStrategy<String> {
    let len = valid.len();
    let truncated = {
        let valid = valid.clone();
        (0..len).prop_map(move |n| valid[..n].to_owned())
    };
    let altered = {
        let valid = valid.clone();
        (0..len, any::<char>()).prop_map(move |(at, c)| {
            let original = valid.as_bytes()[at] as char;
            let c = if c == original {
                if original == 'A' {
                    'B'
                } else {
                    'A'
                }
            } else {
                c
            };
            format!("{}{c}{}", &valid[..at], &valid[at + 1..])
        })
    };
    let inserted = {
        let valid = valid.clone();
        (
            0..=len,
            any::<char>().prop_filter("no whitespace: a header's is trimmed", |c| {
                !c.is_whitespace()
            }),
        )
            .prop_map(move |(at, c)| format!("{}{c}{}", &valid[..at], &valid[at..]))
    };
    let rearranged = {
        let valid = valid.clone();
        (0usize..7).prop_map(move |how| {
            let parts: Vec<&str> = valid.split('.').collect();
            let (h, p, s) = (
                parts[0],
                parts[1],
                parts.get(2).copied().unwrap_or_default(),
            );
            match how {
                0 => format!("{p}.{h}.{s}"),
                1 => format!("{h}.{p}"),
                2 => format!("{h}.{p}."),
                3 => format!("{h}.{p}.{s}.{s}"),
                4 => format!("{h}..{s}"),
                5 => format!(".{p}.{s}"),
                _ => format!("{h}.{p}.{}", s.to_uppercase()),
            }
        })
    };
    let huge = {
        let valid = valid.clone();
        (1usize..16_000, any::<bool>()).prop_map(move |(n, prefixed)| {
            if prefixed {
                format!("{valid}{}", "A".repeat(n))
            } else {
                "e".repeat(n)
            }
        })
    };
    prop_oneof![
        2 => prop::collection::vec(any::<char>(), 0..64).prop_map(String::from_iter),
        1 => "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,60}",
        1 => "[A-Za-z0-9_.=+/-]{0,300}",
        1 => "[a-z.]{0,10}\\x00[a-z.]{0,10}",
        2 => truncated,
        3 => altered,
        1 => inserted,
        1 => rearranged,
        4 => (0usize..23).prop_map(|defect| forged_token(Some(defect))),
        1 => huge,
        1 => hostile_text(),
    ]
    .boxed()
}

const SERVER_FNS: &[&str] = &[
    "onboarding/status",
    "onboarding/activate",
    "onboarding/retry-activation",
    "onboarding/pairing-code",
    "onboarding/restart",
];

fn server_fn_request(app: &TestApp, endpoint: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
    app.client
        .post(app.url(&format!("/api/{endpoint}")))
        .header("Accept", "application/json")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
}

fn form_body(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        form.append_pair(name, value);
    }
    form.finish().into_bytes()
}

async fn token_property(
    app: &TestApp,
    token: String,
    requests: &AtomicUsize,
) -> Result<(), TestCaseError> {
    let refused = |what: &str, answer: &Answer| -> Result<(), TestCaseError> {
        expect_status(what, answer, &[400, 401])?;
        prop_assert_eq!(answer.status, 401, "{}: {:?}", what, answer.body);
        Ok(())
    };
    for endpoint in SERVER_FNS {
        let mut fields = vec![("token", token.as_str())];
        if *endpoint == "onboarding/pairing-code" {
            fields.push(("phone", "79990009900"));
        }
        let answer = answer(server_fn_request(app, endpoint, form_body(&fields))).await?;
        refused(endpoint, &answer)?;
    }
    let query = encode(&token, Enc::Form);
    for path in [
        format!("/marketplace/api/events?token={query}"),
        format!("/marketplace/onboarding?token={query}"),
    ] {
        let answer = answer(app.client.get(app.url(&path))).await?;
        refused(path.as_str(), &answer)?;
    }
    let mut sent = SERVER_FNS.len() + 2;
    // A header cannot carry control characters: those tokens only reach the other surfaces.
    if let Ok(bearer) = HeaderValue::from_bytes(format!("Bearer {token}").as_bytes()) {
        let answer = answer(
            app.client
                .get(app.url(&format!("/marketplace/api/status/company_{SALON}")))
                .header(AUTHORIZATION, bearer),
        )
        .await?;
        refused("status endpoint (Bearer)", &answer)?;
        sent += 1;
    }
    requests.fetch_add(sent, Ordering::Relaxed);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_are_refused_with_401_on_every_surface() {
    let app = spawn_generating_app().await;
    let valid = app.enter(SALON).await;
    // Controls: the real token and a forgery with nothing wrong are let in, so the generated
    // refusals are the verifier's doing, not a broken request or a broken forger.
    for token in [valid.clone(), forged_token(None)] {
        assert_eq!(app.status_response(&token, SALON).await.status(), 200);
        let status = app
            .server_fn("onboarding/status", &[("token", &token)])
            .await;
        assert_eq!(status.status(), 200);
    }
    let requests = AtomicUsize::new(0);
    generate_http(
        "onboarding tokens (5 server functions, SSE, page, status endpoint)",
        TOKEN_CASES,
        hostile_token(valid),
        |token| token_property(&app, token, &requests),
    );
    let requests = requests.into_inner();
    assert!(
        requests >= TOKEN_CASES as usize * (SERVER_FNS.len() + 2),
        "every surface was tried for every token: {requests} requests"
    );
    eprintln!("hostile: onboarding tokens — {requests} requests, each a 401");
}

// ---------------------------------------------------------------------------------------------
// 4. The server functions' forms, with a valid token
// ---------------------------------------------------------------------------------------------

/// Phone numbers of every shape.
fn hostile_phone() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[1-9][0-9]{9,14}",
        2 => "\\+?[0-9 ()-]{0,30}",
        1 => "0[0-9]{9,14}",
        1 => "[0-9]{0,9}",
        1 => "[0-9]{16,40}",
        1 => "[0-9]{5}\\x00[0-9]{5}",
        1 => (1000usize..1100).prop_map(|n| "9".repeat(n)),
        1 => prop::sample::select(vec![
            "", "\u{0}", "٧٩٩٩٠٠٠٩٩٠٠", "７９９９０００９９００", "+7 (999) 000-99-00", "8 999 000 99 00",
            "79990009900\n", "-79990009900", "7999000990O", "null", "[]", "{}",
        ])
        .prop_map(String::from),
        2 => hostile_text(),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
enum FormPart {
    /// `name=<the valid token>`, `name` one of `token` and its look-alikes.
    ValidToken(&'static str),
    Token(String, Enc),
    Phone(&'static str, String, Enc),
    Extra(String, String, Enc),
    Junk(String),
    /// Raw bytes, not necessarily UTF-8.
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
struct FormCase {
    endpoint: &'static str,
    parts: Vec<FormPart>,
}

impl FormCase {
    fn body(&self, valid: &str) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                body.push(b'&');
            }
            let text = match part {
                FormPart::ValidToken(name) => format!("{name}={}", encode(valid, Enc::Form)),
                FormPart::Token(value, how) => format!("token={}", encode(value, *how)),
                FormPart::Phone(name, value, how) => format!("{name}={}", encode(value, *how)),
                FormPart::Extra(name, value, how) => {
                    format!("{}={}", encode(name, *how), encode(value, *how))
                }
                FormPart::Junk(text) => text.clone(),
                FormPart::Bytes(bytes) => {
                    body.extend_from_slice(bytes);
                    continue;
                }
            };
            body.extend_from_slice(text.as_bytes());
        }
        body
    }

    fn has_valid_token(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, FormPart::ValidToken(_)))
    }
}

fn form_part() -> BoxedStrategy<FormPart> {
    prop_oneof![
        6 => prop_oneof![
            6 => Just("token"),
            1 => Just("tok%65n"),
            1 => Just("token[]"),
            1 => Just("token[0]"),
            1 => Just("token[a]"),
            1 => Just("TOKEN"),
            1 => Just("token%00"),
        ]
        .prop_map(FormPart::ValidToken),
        1 => (hostile_text(), enc()).prop_map(|(t, how)| FormPart::Token(t, how)),
        5 => (
            prop_oneof![6 => Just("phone"), 1 => Just("phone[]"), 1 => Just("phone[x]"), 1 => Just("Phone")],
            hostile_phone(),
            enc(),
        )
            .prop_map(|(name, phone, how)| FormPart::Phone(name, phone, how)),
        2 => (
            prop_oneof![
                "[a-z_]{1,12}",
                hostile_text(),
                Just("salon_id".to_owned()),
                Just("token[b][c]".to_owned()),
            ],
            hostile_text(),
            enc(),
        )
            .prop_map(|(name, value, how)| FormPart::Extra(name, value, how)),
        1 => junk_fragment().prop_map(FormPart::Junk),
        1 => prop::collection::vec(any::<u8>(), 0..24).prop_map(FormPart::Bytes),
    ]
    .boxed()
}

fn form_case() -> BoxedStrategy<FormCase> {
    (
        prop::sample::select(SERVER_FNS.to_vec()),
        prop::collection::vec(form_part(), 0..6),
    )
        .prop_map(|(endpoint, parts)| FormCase { endpoint, parts })
        .boxed()
}

const SERVER_FN_STATUSES: &[u16] = &[200, 400, 401, 409, 422, 429];

async fn form_property(app: &TestApp, valid: &str, case: FormCase) -> Result<(), TestCaseError> {
    let answer = answer(server_fn_request(app, case.endpoint, case.body(valid))).await?;
    expect_status(case.endpoint, &answer, SERVER_FN_STATUSES)?;
    if answer.status == 200 {
        prop_assert!(
            case.has_valid_token(),
            "{}: a 200 without the token",
            case.endpoint
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_server_function_forms_get_a_documented_status_and_never_a_5xx() {
    let app = spawn_generating_app().await;
    let valid = app.enter(SALON).await;
    generate_http(
        "server function forms (POST /api/onboarding/*)",
        FORM_CASES,
        form_case(),
        |case| form_property(&app, &valid, case),
    );
}

// ---------------------------------------------------------------------------------------------
// 5. and 6. The webhooks
// ---------------------------------------------------------------------------------------------

/// A JSON value written as raw text, including what serde_json itself would not write: numbers
/// past i64/u64/f64, strings with raw control characters.
fn raw_json(value: BoxedStrategy<Value>) -> BoxedStrategy<String> {
    prop_oneof![
        6 => value.prop_map(|v| v.to_string()),
        1 => prop::sample::select(vec![
            "1e400", "-1e400", "99999999999999999999999999", "-9223372036854775809",
            "18446744073709551616", "1.5", "-0", "0", "NaN", "Infinity", "0x10", "01",
            "\"\\u0000\"", "\"\\ud800\"", "null", "true", "[]", "{}", "",
        ])
        .prop_map(String::from),
        1 => hostile_text().prop_map(|s| format!("\"{s}\"")),
    ]
    .boxed()
}

fn text_json(fixed: Vec<&'static str>) -> BoxedStrategy<Value> {
    prop_oneof![
        6 => prop::sample::select(fixed).prop_map(Value::from),
        2 => hostile_text().prop_map(Value::String),
        2 => "[a-z_]{0,8}\\x00[a-z_]{0,8}".prop_map(Value::String),
        1 => (1usize..10_000).prop_map(|n| Value::String("e".repeat(n))),
        1 => json_value(),
    ]
    .boxed()
}

fn id_json(good: Vec<i64>) -> BoxedStrategy<Value> {
    prop_oneof![
        10 => prop::sample::select(good).prop_map(Value::from),
        1 => (1i64..2_000_000).prop_map(Value::from),
        1 => prop::sample::select(vec![0, -1, i64::MIN, i64::MAX]).prop_map(Value::from),
        1 => json_value(),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
enum BodyShape {
    /// `{…}` with these raw fields, in this order.
    Fields(Vec<(String, String)>),
    /// Any other JSON.
    Json(Value),
    /// Not JSON.
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
struct WebhookBody {
    shape: BodyShape,
    content_type: Option<&'static str>,
    /// Padded past the 1 MiB limit.
    oversize: bool,
}

impl WebhookBody {
    fn bytes(&self) -> Vec<u8> {
        let mut bytes = match &self.shape {
            BodyShape::Fields(fields) => {
                let inner: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                    .collect();
                format!("{{{}}}", inner.join(",")).into_bytes()
            }
            BodyShape::Json(value) => value.to_string().into_bytes(),
            BodyShape::Bytes(bytes) => bytes.clone(),
        };
        if self.oversize {
            bytes.extend(std::iter::repeat_n(b' ', 1024 * 1024 + 1));
        }
        bytes
    }

    fn send(&self, client: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
        let request = client.post(url).body(self.bytes());
        match self.content_type {
            Some(content_type) => request.header(CONTENT_TYPE, content_type),
            None => request,
        }
    }
}

fn content_type() -> BoxedStrategy<Option<&'static str>> {
    prop_oneof![
        12 => Just(Some("application/json")),
        1 => Just(Some("application/json; charset=utf-8")),
        1 => Just(Some("Application/JSON")),
        1 => Just(Some("application/jsonx")),
        1 => Just(Some("text/plain")),
        1 => Just(Some("application/x-www-form-urlencoded")),
        1 => Just(Some("")),
        1 => Just(None),
    ]
    .boxed()
}

/// `{known fields, each maybe missing, …junk fields}`, or other JSON, or not JSON at all.
fn webhook_body(known: Vec<(&'static str, BoxedStrategy<String>)>) -> BoxedStrategy<WebhookBody> {
    let fields: Vec<BoxedStrategy<Option<(String, String)>>> = known
        .into_iter()
        .map(|(name, value)| {
            prop::option::weighted(0.9, value.prop_map(move |v| (name.to_owned(), v))).boxed()
        })
        .collect();
    let object = (
        fields,
        prop::collection::vec((hostile_text(), raw_json(json_value())), 0..3),
        any::<bool>(),
    )
        .prop_map(|(known, extra, extra_first)| {
            let known: Vec<(String, String)> = known.into_iter().flatten().collect();
            let fields = if extra_first {
                extra.into_iter().chain(known).collect()
            } else {
                known.into_iter().chain(extra).collect()
            };
            BodyShape::Fields(fields)
        });
    let shape = prop_oneof![
        12 => object,
        1 => json_value().prop_map(BodyShape::Json),
        1 => prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            hostile_text().prop_map(String::into_bytes),
        ]
        .prop_map(BodyShape::Bytes),
    ];
    (shape, content_type(), prop::bool::weighted(0.01))
        .prop_map(|(shape, content_type, oversize)| WebhookBody {
            shape,
            content_type,
            oversize,
        })
        .boxed()
}

fn lifecycle_body() -> BoxedStrategy<WebhookBody> {
    webhook_body(vec![
        ("salon_id", raw_json(id_json(vec![SALON, OTHER_SALON]))),
        ("application_id", raw_json(id_json(vec![APPLICATION_ID]))),
        (
            "event",
            raw_json(text_json(vec!["uninstall", "freeze", "tariff_changed"])),
        ),
        (
            "partner_token",
            raw_json(text_json(vec![
                PARTNER_TOKEN,
                PARTNER_TOKEN,
                PARTNER_TOKEN,
                "test-partner-token",
            ])),
        ),
    ])
}

const LIFECYCLE_STATUSES: &[u16] = &[200, 400, 401, 413, 415, 422];

async fn lifecycle_property(app: &TestApp, body: WebhookBody) -> Result<(), TestCaseError> {
    let answer = answer(body.send(&app.client, &app.url("/webhook/yclients"))).await?;
    expect_status("lifecycle webhook", &answer, LIFECYCLE_STATUSES)?;
    if answer.status == 200 {
        let text = String::from_utf8_lossy(&body.bytes()).into_owned();
        prop_assert!(
            text.contains(&format!("\"partner_token\":\"{PARTNER_TOKEN}\"")),
            "accepted without our partner token"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_lifecycle_webhooks_get_a_documented_status_and_never_a_5xx() {
    let app = spawn_generating_app().await;
    generate_http(
        "lifecycle webhook bodies (POST /webhook/yclients)",
        LIFECYCLE_CASES,
        lifecycle_body(),
        |body| lifecycle_property(&app, body),
    );
}

/// Where an entity event is posted: the registered URL, or one that must be refused with 401.
#[derive(Debug, Clone)]
enum EntityUrl {
    Registered,
    WrongSecret(String),
    OtherSalon,
    JunkSalon(String),
}

fn entity_url() -> BoxedStrategy<EntityUrl> {
    prop_oneof![
        16 => Just(EntityUrl::Registered),
        1 => "[A-Za-z0-9_-]{1,80}".prop_map(EntityUrl::WrongSecret),
        1 => Just(EntityUrl::OtherSalon),
        1 => prop_oneof![
            // `.` and `..` never reach the server as a segment: the client's URL parser (WHATWG)
            // resolves them even percent-encoded, and the request goes to another path.
            hostile_text().prop_filter("a path segment", |s| !s.is_empty() && s != "." && s != ".."),
            Just("0".to_owned()),
            Just("-962302".to_owned()),
            Just("99999999999999999999".to_owned()),
        ]
        .prop_map(EntityUrl::JunkSalon),
    ]
    .boxed()
}

fn record_like_data() -> BoxedStrategy<Value> {
    (
        hostile_text(),
        hostile_text(),
        json_value(),
        json_value(),
        any::<bool>(),
    )
        .prop_map(|(name, phone, datetime, deleted, with_services)| {
            let mut data = json!({"id": 1213336367, "company_id": SALON, "staff_id": 5,
                "datetime": datetime, "client": {"id": 9, "name": name, "phone": phone, "email": ""},
                "attendance": 0, "confirmed": 1, "deleted": deleted, "comment": "", "online": true});
            if with_services {
                data["services"] = json!([{"id": 1, "title": "Стрижка"}]);
            }
            data
        })
        .boxed()
}

fn entity_body() -> BoxedStrategy<WebhookBody> {
    webhook_body(vec![
        ("company_id", raw_json(id_json(vec![SALON]))),
        (
            "resource",
            raw_json(text_json(vec![
                "record",
                "record",
                "client",
                "company",
                "schedule",
                "finances_operation",
                "goods_operations_sale",
                "never_heard_of_it",
            ])),
        ),
        (
            "resource_id",
            raw_json(
                prop_oneof![
                    3 => json_number(),
                    1 => Just(json!(1213336367)),
                    2 => hostile_text().prop_map(Value::String),
                    1 => json_value(),
                ]
                .boxed(),
            ),
        ),
        (
            "status",
            raw_json(text_json(vec!["create", "update", "delete"])),
        ),
        (
            "data",
            raw_json(prop_oneof![record_like_data(), json_value()].boxed()),
        ),
    ])
}

const ENTITY_STATUSES: &[u16] = &[200, 400, 401, 403, 413, 415, 422];

async fn entity_property(
    app: &TestApp,
    registered: &str,
    (url, body): (EntityUrl, WebhookBody),
) -> Result<(), TestCaseError> {
    let base = app.url("/webhook/yclients/events");
    let target = match &url {
        EntityUrl::Registered => registered.to_owned(),
        EntityUrl::WrongSecret(secret) => format!("{base}/{SALON}/{secret}"),
        EntityUrl::OtherSalon => {
            let secret = registered.rsplit('/').next().unwrap_or_default();
            format!("{base}/{OTHER_SALON}/{secret}")
        }
        EntityUrl::JunkSalon(salon) => {
            let secret = registered.rsplit('/').next().unwrap_or_default();
            format!("{base}/{}/{secret}", encode(salon, Enc::Percent))
        }
    };
    let answer = answer(body.send(&app.client, &target)).await?;
    expect_status("entity webhook", &answer, ENTITY_STATUSES)?;
    if !matches!(url, EntityUrl::Registered) && !body.oversize {
        prop_assert_eq!(
            answer.status,
            401,
            "an event to an unregistered URL: {:?}",
            answer.body
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_entity_webhooks_get_a_documented_status_and_never_a_5xx() {
    let app = spawn_generating_app().await;
    let (_, registered) = app.activate(SALON).await;
    generate_http(
        "entity webhook bodies (POST /webhook/yclients/events/…)",
        ENTITY_CASES,
        (entity_url(), entity_body()),
        |case| entity_property(&app, &registered, case),
    );
}
