//! A real OTLP/HTTP trace receiver on 127.0.0.1 for the tests, built on the
//! `opentelemetry-proto` types: it decodes every `POST /v1/traces` and keeps the spans.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use super::agent::Running;

#[derive(Clone, Debug)]
pub struct Received {
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent: Vec<u8>,
    pub name: String,
    pub attributes: BTreeMap<String, String>,
    pub events: Vec<String>,
    pub service: String,
}

#[derive(Default)]
pub struct Receiver {
    pub spans: Vec<Received>,
    pub requests: usize,
}

/// An OTLP/HTTP trace receiver; `delay` holds each answer (an export in flight).
pub fn receiver(delay: Duration) -> (Running, Arc<Mutex<Receiver>>) {
    let got = Arc::new(Mutex::new(Receiver::default()));
    let shared = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let got = Arc::clone(&shared);
            async move {
                let Ok(req) = ExportTraceServiceRequest::decode(body.as_ref()) else {
                    return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
                };
                {
                    let mut g = got.lock().expect("lock");
                    g.requests += 1;
                    for rs in &req.resource_spans {
                        let service = rs
                            .resource
                            .as_ref()
                            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                            .and_then(|a| a.value.as_ref())
                            .map(|v| format!("{:?}", v.value))
                            .unwrap_or_default();
                        for ss in &rs.scope_spans {
                            for s in &ss.spans {
                                g.spans.push(Received {
                                    trace_id: s.trace_id.clone(),
                                    span_id: s.span_id.clone(),
                                    parent: s.parent_span_id.clone(),
                                    name: s.name.clone(),
                                    attributes: s
                                        .attributes
                                        .iter()
                                        .map(|a| (a.key.clone(), format!("{:?}", a.value)))
                                        .collect(),
                                    events: s.events.iter().map(|e| e.name.clone()).collect(),
                                    service: service.clone(),
                                });
                            }
                        }
                    }
                }
                tokio::time::sleep(delay).await;
                (
                    axum::http::StatusCode::OK,
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    (Running::start(app), got)
}

/// The trace id Ballast gives a turn's spans: the turn id's bytes.
pub fn trace_id_of(turn: &str) -> Vec<u8> {
    uuid::Uuid::parse_str(turn)
        .expect("uuid")
        .as_bytes()
        .to_vec()
}
