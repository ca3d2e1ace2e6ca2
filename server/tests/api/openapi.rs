//! The API document (`/marketplace/api/openapi.json`): every route the router declares is in it
//! with its method, nothing in it is missing from the router, it is valid OpenAPI 3.1 (it parses
//! as such with `oas3`, its operation ids are unique, every path parameter is described, every
//! `$ref` resolves), and the 4xx answers it documents are the ones the app gives.

use crate::helpers::{build_app_with, Serving};
use http::Method;
use oas3::spec::{ObjectOrReference, Operation, ParameterIn, Spec};
use reqwest::StatusCode;
use serde_json::{json, Value};
use server::http::route_table::{DeclaredRoute, RouteKind};
use std::collections::BTreeSet;

const DOCUMENT: &str = "/marketplace/api/openapi.json";

/// The app built on the test configuration (simulator backend: `/dev/phone` is routed), its
/// declared routes, and the document it serves.
async fn served_document() -> (Serving, Vec<DeclaredRoute>, Value) {
    let app = build_app_with(|_| {}).await.expect("the app builds");
    let routes = app.routes();
    let serving = Serving::start(app).await;
    let response = serving
        .client
        .get(format!("{}{DOCUMENT}", serving.handles.base_url))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json")));
    let raw: Value = response.json().await.expect("JSON");
    (serving, routes, raw)
}

fn parse(raw: &Value) -> Spec {
    oas3::from_json(raw.to_string()).expect("the document is OpenAPI 3.1")
}

fn operation<'a>(document: &'a Spec, path: &str, method: &Method) -> Option<&'a Operation> {
    let item = document.paths.as_ref()?.get(path)?;
    match *method {
        Method::GET => item.get.as_ref(),
        Method::POST => item.post.as_ref(),
        Method::PUT => item.put.as_ref(),
        Method::DELETE => item.delete.as_ref(),
        Method::PATCH => item.patch.as_ref(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_of_the_router_is_in_the_api_document_and_nothing_else() {
    let (mut serving, routes, raw) = served_document().await;
    assert!(
        raw["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        raw["openapi"]
    );
    let document = parse(&raw);

    // The table is the router's own: each kind of route is in it, the document's own route too.
    for kind in [
        RouteKind::Handler,
        RouteKind::Page,
        RouteKind::ServerFunction,
    ] {
        assert!(routes.iter().any(|r| r.kind == kind), "no {kind:?} route");
    }
    assert!(routes
        .iter()
        .any(|r| r.path == DOCUMENT && r.method == Method::GET));
    assert!(routes.iter().any(|r| r.path == "/dev/phone/scan"));

    let missing: Vec<String> = routes
        .iter()
        .filter(|r| operation(&document, &r.path, &r.method).is_none())
        .map(|r| format!("{} {} ({:?})", r.method, r.path, r.kind))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from the API document: {missing:#?}"
    );

    let declared: BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.method.as_str().to_ascii_lowercase(), r.path.clone()))
        .collect();
    let extra: Vec<String> = document
        .operations()
        .map(|(path, method, _)| (method.as_str().to_ascii_lowercase(), path))
        .filter(|key| !declared.contains(key))
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    assert!(
        extra.is_empty(),
        "documented, but not in the router: {extra:#?}"
    );
    serving.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_document_is_valid_openapi_3_with_resolving_references() {
    let (mut serving, _, raw) = served_document().await;
    let document = parse(&raw);

    let mut ids = BTreeSet::new();
    let mut operations = 0;
    for (path, method, op) in document.operations() {
        operations += 1;
        // Operation ids are unique.
        let id = op
            .operation_id
            .clone()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.clone()), "operationId {id} twice");
        assert!(
            op.responses.as_ref().is_some_and(|r| !r.is_empty()),
            "{method} {path}: no responses"
        );
        // Every `{param}` of the template is described as a path parameter.
        let described: BTreeSet<String> = op
            .parameters
            .iter()
            .filter_map(|p| match p {
                ObjectOrReference::Object(p) if p.location == ParameterIn::Path => {
                    Some(p.name.clone())
                }
                _ => None,
            })
            .collect();
        for segment in path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                assert!(
                    described.contains(name),
                    "{method} {path}: path parameter {name} is not described"
                );
            }
        }
    }
    assert!(operations >= 30, "{operations} operations");

    // Every `$ref` points at something in the document.
    let mut references = Vec::new();
    collect_references(&raw, &mut references);
    assert!(
        !references.is_empty(),
        "the document has schemas to refer to"
    );
    for reference in references {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{reference} is not local"));
        assert!(
            raw.pointer(pointer).is_some(),
            "{reference} does not resolve"
        );
    }
    serving.stop().await;
}

fn collect_references(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => into.push(reference.clone()),
                    _ => collect_references(value, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, into)),
        _ => {}
    }
}

/// The refusals an unauthenticated caller can provoke are answered as documented: the status is
/// listed for that operation and its description quotes the message the app sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_refusals_are_the_ones_the_app_gives() {
    let (mut serving, _, raw) = served_document().await;
    let document = parse(&raw);
    let base = serving.handles.base_url.clone();
    let client = serving.client.clone();
    let cases: Vec<(&str, Method, reqwest::RequestBuilder)> = vec![
        (
            "/marketplace/api/events",
            Method::GET,
            client.get(format!("{base}/marketplace/api/events")),
        ),
        (
            "/marketplace/api/status/{session_id}",
            Method::GET,
            client.get(format!("{base}/marketplace/api/status/company_1")),
        ),
        (
            "/webhook/yclients",
            Method::POST,
            client
                .post(format!("{base}/webhook/yclients"))
                .header("content-type", "text/plain")
                .body("{}"),
        ),
        (
            "/webhook/yclients",
            Method::POST,
            client
                .post(format!("{base}/webhook/yclients"))
                .json(&json!({"salon_id": 1, "application_id": 1, "event": "uninstall", "partner_token": "forged"})),
        ),
        (
            "/webhook/yclients/events/{salon_id}/{secret}",
            Method::POST,
            client
                .post(format!("{base}/webhook/yclients/events/1/not-the-secret"))
                .json(&json!({})),
        ),
    ];
    for (path, method, request) in cases {
        let response = request.send().await.expect("request");
        let status = response.status();
        assert!(status.is_client_error(), "{method} {path}: {status}");
        let body: Value = response.json().await.expect("a JSON refusal");
        assert_eq!(body["success"], false);
        let message = body["error"].as_str().expect("error message");
        let op = operation(&document, path, &method).expect("documented");
        let documented = op
            .responses
            .as_ref()
            .and_then(|r| r.get(status.as_str()))
            .and_then(|r| match r {
                ObjectOrReference::Object(response) => response.description.clone(),
                ObjectOrReference::Ref { .. } => None,
            })
            .unwrap_or_else(|| panic!("{method} {path}: {status} is not documented"));
        assert!(
            documented.contains(message),
            "{method} {path}: {status} «{message}» is not in «{documented}»"
        );
    }
    serving.stop().await;
}
