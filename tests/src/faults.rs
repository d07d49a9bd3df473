//! A fault-injecting HTTP proxy between sluice and the endpoint.
//!
//! Tests point `AWS_ENDPOINT_URL` (or a client's endpoint) at [`FaultProxy::url`]; every
//! request is forwarded to the real endpoint unless a [`Rule`] matches it. A rule picks requests
//! by service (from the SigV4 credential scope), operation (from `X-Amz-Target`, or from the
//! method and path for S3) and path, and injects a [`Fault`]: an error response shaped like
//! AWS's, a connection closed before any response (an outage), a response lost after the
//! request was applied (an ambiguous write), or latency.
//!
//! A proxy rather than SDK interceptors: it sits outside the process, so the same faults reach
//! the `sluice` binary run as a subprocess, and it can answer with any response AWS gives,
//! which the endpoint itself never would (S3's `KeyTooLongError`, say).
//!
//! The proxy runs on its own thread and runtime, so a test may block on a subprocess while
//! requests flow through it.
//!
//! Which requests meet a fault is drawn from one seeded generator ([`FaultProxy::seed`]), so a
//! run that failed can be run again with the same draws: the same requests in the same order
//! meet the same faults (the order of concurrent requests can still differ from run to run).
//! A rule may hold for a window of time only ([`Rule::during`]), an outage that starts and ends
//! by itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What a matching request meets.
#[derive(Debug, Clone)]
pub enum Fault {
    /// An error response shaped like AWS's for the service: an XML `<Error>` for S3, a JSON
    /// `__type` for DynamoDB and SQS.
    Error {
        /// The HTTP status.
        status: u16,
        /// The AWS error code, such as `SlowDown` or `KeyTooLongError`.
        code: &'static str,
        /// The error message.
        message: &'static str,
    },
    /// The connection is closed before any response: an outage.
    Refuse,
    /// The request is applied by the endpoint, then the connection is closed before the
    /// response: the caller cannot tell whether it happened.
    Ambiguous,
    /// The request waits this long, then goes through.
    Delay(Duration),
    /// This answer, whatever the request: a body no AWS SDK can read, say.
    Respond {
        /// The HTTP status.
        status: u16,
        /// The body.
        body: &'static str,
    },
}

impl Fault {
    /// S3's answer to a key over 1,024 bytes.
    pub fn key_too_long() -> Self {
        Self::Error {
            status: 400,
            code: "KeyTooLongError",
            message: "Your key is too long",
        }
    }

    /// S3's throttling answer.
    pub fn slow_down() -> Self {
        Self::Error {
            status: 503,
            code: "SlowDown",
            message: "Please reduce your request rate.",
        }
    }

    /// SQS's answer when it cannot serve a request.
    pub fn service_unavailable() -> Self {
        Self::Error {
            status: 503,
            code: "ServiceUnavailable",
            message: "The request has failed due to a temporary failure of the server.",
        }
    }

    /// DynamoDB's answer when the account's request rate is throttled.
    pub fn throttling() -> Self {
        Self::Error {
            status: 400,
            code: "ThrottlingException",
            message: "Rate of requests exceeds the allowed throughput.",
        }
    }

    /// S3's answer when it fails inside.
    pub fn internal_error() -> Self {
        Self::Error {
            status: 500,
            code: "InternalError",
            message: "We encountered an internal error. Please try again.",
        }
    }

    /// DynamoDB's answer when a table's throughput is exceeded.
    pub fn throughput_exceeded() -> Self {
        Self::Error {
            status: 400,
            code: "ProvisionedThroughputExceededException",
            message: "The level of configured provisioned throughput for the table was exceeded.",
        }
    }
}

/// Which requests get a fault, and how often.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The service, as the SigV4 credential scope names it (`s3`, `sqs`, `dynamodb`).
    pub service: Option<&'static str>,
    /// The operation (`PutObject`, `SendMessage`, `PutItem`…).
    pub operation: Option<&'static str>,
    /// A substring of the request's path and query.
    pub path_contains: Option<String>,
    /// A substring of the request's body: the queue URL of an SQS call, which the JSON protocol
    /// sends there.
    pub body_contains: Option<String>,
    /// The chance, from 0 to 1, that a matching request gets the fault.
    pub probability: f64,
    /// The fault.
    pub fault: Fault,
    /// The rule applies only while this is set: an outage that a test can end.
    pub active: Arc<AtomicBool>,
    /// The rule applies only from this long after it is added, for this long.
    pub window: Option<(Duration, Duration)>,
    /// The window as instants, set when the rule is added.
    window_at: Option<(Instant, Instant)>,
}

impl Rule {
    /// A rule for every request of `service` and `operation`, always, until switched off.
    pub fn new(service: &'static str, operation: &'static str, fault: Fault) -> Self {
        Self {
            service: Some(service),
            operation: Some(operation),
            path_contains: None,
            body_contains: None,
            probability: 1.0,
            fault,
            active: Arc::new(AtomicBool::new(true)),
            window: None,
            window_at: None,
        }
    }

    /// Only from `after` the rule is added, for `length`: an outage that ends by itself.
    pub fn during(mut self, after: Duration, length: Duration) -> Self {
        self.window = Some((after, length));
        self
    }

    /// Only requests whose path contains `needle`.
    pub fn path(mut self, needle: impl Into<String>) -> Self {
        self.path_contains = Some(needle.into());
        self
    }

    /// Only requests whose body contains `needle`.
    pub fn body(mut self, needle: impl Into<String>) -> Self {
        self.body_contains = Some(needle.into());
        self
    }

    /// Only this share of matching requests.
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = p;
        self
    }

    /// Every request of `service`, whatever the operation.
    pub fn any_operation(mut self) -> Self {
        self.operation = None;
        self
    }

    fn matches(&self, call: &Call, body: &[u8], rng: &mut fastrand::Rng) -> bool {
        let now = Instant::now();
        self.active.load(Ordering::SeqCst)
            && self
                .window_at
                .is_none_or(|(from, until)| from <= now && now < until)
            && self.service.is_none_or(|s| s == call.service)
            && self.operation.is_none_or(|o| o == call.operation)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|n| call.path.contains(n))
            && self
                .body_contains
                .as_deref()
                .is_none_or(|n| body.windows(n.len().max(1)).any(|w| w == n.as_bytes()))
            && (self.probability >= 1.0 || rng.f64() < self.probability)
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The service.
    pub service: String,
    /// The operation.
    pub operation: String,
    /// The path and query, decoded as sent.
    pub path: String,
    /// The fault it met, if any (`Refuse`, `Ambiguous`, an error code…).
    pub fault: Option<String>,
}

struct Shared {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    calls: Mutex<Vec<Call>>,
    rng: Mutex<fastrand::Rng>,
}

/// A running proxy.
pub struct FaultProxy {
    /// Where to send requests: `http://127.0.0.1:<port>`.
    pub url: String,
    /// The seed of the draws; `SLUICE_FAULT_SEED` sets it for [`FaultProxy::start`].
    pub seed: u64,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (an `http://host:port` endpoint), with the seed
    /// in `SLUICE_FAULT_SEED` or a new one.
    pub fn start(upstream: &str) -> Self {
        let seed = std::env::var("SLUICE_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fastrand::u64(..));
        Self::start_seeded(upstream, seed)
    }

    /// Starts a proxy whose draws come from `seed`.
    pub fn start_seeded(upstream: &str, seed: u64) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            rules: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let serving = shared.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the proxy");
            runtime.block_on(serve(listener, serving));
        });
        Self { url, seed, shared }
    }

    /// Adds a rule; rules are tried in the order they were added. A rule's window starts now.
    pub fn add(&self, mut rule: Rule) {
        rule.window_at = rule.window.map(|(after, length)| {
            let from = Instant::now() + after;
            (from, from + length)
        });
        self.shared.rules.lock().unwrap().push(rule);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// Every request seen so far.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// How many requests of `service` and `operation` were seen.
    pub fn count(&self, service: &str, operation: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.service == service && c.operation == operation)
            .count()
    }
}

async fn serve(listener: std::net::TcpListener, shared: Arc<Shared>) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (shared, client) = (shared.clone(), client.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (shared, client) = (shared.clone(), client.clone());
                handle(req, shared, client)
            });
            // A connection closed on purpose ends here with an error; that is the fault.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Upstream = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    client: Upstream,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(io)?.to_bytes();
    let mut call = Call {
        service: service_of(&parts.headers),
        operation: String::new(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        fault: None,
    };
    call.operation = operation_of(&parts, &call.service);
    let fault = {
        let mut rng = shared.rng.lock().unwrap();
        shared
            .rules
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.matches(&call, &body, &mut rng))
            .map(|r| r.fault.clone())
    };
    call.fault = fault.as_ref().map(|f| match f {
        Fault::Error { code, .. } => (*code).to_owned(),
        other => format!("{other:?}"),
    });
    shared.calls.lock().unwrap().push(call.clone());
    match fault {
        Some(Fault::Refuse) => return Err(io("injected outage: connection closed")),
        Some(Fault::Error {
            status,
            code,
            message,
        }) => return Ok(error_response(&call.service, status, code, message)),
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Respond { status, body }) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() =
                hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
            response.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("application/x-amz-json-1.0"),
            );
            return Ok(response);
        }
        Some(Fault::Ambiguous) | None => {}
    }
    let uri = format!("{}{}", shared.upstream, call.path);
    let mut forward = Request::builder().method(parts.method).uri(uri);
    for (name, value) in &parts.headers {
        forward = forward.header(name, value);
    }
    let forward = forward.body(Full::new(body)).map_err(io)?;
    let response = client.request(forward).await.map_err(io)?;
    if matches!(fault, Some(Fault::Ambiguous)) {
        return Err(io("injected ambiguity: applied, response dropped"));
    }
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(io)?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The service named in the SigV4 credential scope: `Credential=KEY/DATE/REGION/SERVICE/aws4_request`.
fn service_of(headers: &hyper::HeaderMap) -> String {
    headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|scope| scope.split('/').nth(3))
        .unwrap_or_default()
        .to_owned()
}

/// The operation: `X-Amz-Target` for JSON protocols, else S3's method and path.
fn operation_of(parts: &hyper::http::request::Parts, service: &str) -> String {
    if let Some(target) = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        return target.rsplit('.').next().unwrap_or_default().to_owned();
    }
    if service != "s3" {
        return String::new();
    }
    let path = parts.uri.path().trim_start_matches('/');
    let query = parts.uri.query().unwrap_or_default();
    let has_key = path.split_once('/').is_some_and(|(_, key)| !key.is_empty());
    let method = parts.method.as_str();
    match (method, has_key) {
        ("PUT", true) if query.contains("partNumber") => "UploadPart",
        ("PUT", true) => "PutObject",
        ("GET", true) => "GetObject",
        ("HEAD", true) => "HeadObject",
        ("DELETE", true) => "DeleteObject",
        ("GET", false) if query.contains("list-type=2") => "ListObjectsV2",
        ("GET", false) => "ListObjects",
        ("PUT", false) if query.contains("notification") => "PutBucketNotificationConfiguration",
        ("PUT", false) => "CreateBucket",
        ("POST", false) if query.contains("delete") => "DeleteObjects",
        _ => "",
    }
    .to_owned()
}

fn error_response(service: &str, status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let (content_type, body) = if service == "s3" {
        (
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>FAULTPROXY</RequestId><HostId>faultproxy</HostId></Error>"
            ),
        )
    } else {
        let namespace = match service {
            "dynamodb" => "com.amazonaws.dynamodb.v20120810",
            "sqs" => "com.amazonaws.sqs",
            _ => "com.amazonaws",
        };
        (
            "application/x-amz-json-1.0",
            serde_json::json!({"__type": format!("{namespace}#{code}"), "message": message})
                .to_string(),
        )
    };
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amzn-requestid", "FAULTPROXY");
    if service == "sqs" {
        builder = builder.header(
            "x-amzn-query-error",
            format!("AWS.SimpleQueueService.{code};Receiver"),
        );
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
