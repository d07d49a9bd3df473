//! The adapter error: which call failed, on what, and whether a retry can help.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Error codes that AWS services use for throttling and transient server trouble.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "RequestTimeout",
    "RequestTimeoutException",
    "KMS.ThrottlingException",
    // S3: a conflicting operation on the same bucket or key is in progress.
    "OperationAborted",
    // Credentials that expired between signing and arrival; refreshed credentials succeed.
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "RequestTimeTooSkewed",
    "IDPCommunicationError",
    "EC2ThrottledException",
    "BandwidthLimitExceeded",
    "PriorRequestNotComplete",
    "TransactionInProgressException",
    "LimitExceededException",
];

/// Whether a service error is worth retrying: throttling and transient trouble by its code,
/// any 5xx, 429 and 408. Every other 4xx (access denied, no such bucket, a key too long, a
/// validation error) fails the same way again.
pub fn is_transient(status: u16, code: Option<&str>) -> bool {
    status >= 500
        || status == 429
        || status == 408
        || code.is_some_and(|c| TRANSIENT_CODES.contains(&c))
}

/// The innermost cause of an error: what actually went wrong, without the wrappers (and
/// without the response dump some wrappers print).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A failed call to an AWS service.
#[derive(Debug, thiserror::Error)]
#[error("{operation} on {target} failed ({}): {message}", if *.retriable { "retriable" } else { "not retriable" })]
pub struct AwsError {
    /// The API operation, such as `PutObject`.
    pub operation: &'static str,
    /// What it was called on: a bucket and key, or a queue URL.
    pub target: String,
    /// Whether delivering the record again may succeed.
    pub retriable: bool,
    /// The service's error code, when it sent one.
    pub code: Option<String>,
    /// A readable summary.
    pub message: String,
    #[source]
    source: BoxError,
}

impl AwsError {
    /// Classifies an SDK error: throttling, 5xx, timeouts and network failures are retriable.
    pub fn from_sdk<E>(
        operation: &'static str,
        target: impl Into<String>,
        err: SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    {
        let (retriable, code, message) = match &err {
            SdkError::ConstructionFailure(_) => {
                (false, None, "the request could not be built".to_owned())
            }
            SdkError::TimeoutError(_) => (true, None, "the request timed out".to_owned()),
            SdkError::DispatchFailure(d) => {
                let what = if d.is_io() {
                    "connection failed"
                } else if d.is_timeout() {
                    "connection timed out"
                } else {
                    "the request could not be sent"
                };
                (true, None, format!("{what}: {}", root_cause(&err)))
            }
            SdkError::ResponseError(r) => (
                true,
                None,
                format!(
                    "unreadable response (HTTP {}): {}",
                    r.raw().status().as_u16(),
                    root_cause(&err)
                ),
            ),
            // A success status whose body the SDK could not read: the endpoint answered with
            // something that is not the service's format (an emulator that cannot represent
            // the stored data, say). Asking again gets the same answer.
            SdkError::ServiceError(s) if s.raw().status().is_success() => (
                false,
                None,
                format!(
                    "HTTP {}, but the answer could not be read as a {operation} response: {}; \
                     the endpoint returned data the SDK cannot parse",
                    s.raw().status().as_u16(),
                    root_cause(&err)
                ),
            ),
            SdkError::ServiceError(s) => {
                let status = s.raw().status().as_u16();
                let code = s.err().code().map(str::to_owned);
                let transient = is_transient(status, code.as_deref());
                let msg = s.err().message().unwrap_or("no message").to_owned();
                (
                    transient,
                    code.clone(),
                    format!(
                        "HTTP {status} {}: {msg}",
                        code.as_deref().unwrap_or("(no code)")
                    ),
                )
            }
            _ => (true, None, "unknown SDK failure".to_owned()),
        };
        Self {
            operation,
            target: target.into(),
            retriable,
            code,
            message,
            source: Box::new(err),
        }
    }

    /// An error raised before any call was made (serialising a body, for example).
    pub fn local(
        operation: &'static str,
        target: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        let source = source.into();
        Self {
            operation,
            target: target.into(),
            retriable: false,
            code: None,
            message: source.to_string(),
            source,
        }
    }

    /// Whether delivering the record again may succeed.
    pub fn is_retriable(&self) -> bool {
        self.retriable
    }

    /// Whether the call never reached the service: the connection failed or timed out.
    pub fn is_unreachable(&self) -> bool {
        self.message.starts_with("connection failed")
            || self.message.starts_with("connection timed out")
    }

    /// Whether the service refused the caller: bad or expired credentials, or no permission.
    pub fn is_access_denied(&self) -> bool {
        // SQS may qualify a code (`AWS.SimpleQueueService.…`); the name is the last part.
        self.code
            .as_deref()
            .map(|c| c.rsplit('.').next().unwrap_or(c))
            .is_some_and(|c| {
                [
                    "AccessDenied",
                    "AccessDeniedException",
                    "UnrecognizedClientException",
                    "InvalidClientTokenId",
                    "InvalidAccessKeyId",
                    "SignatureDoesNotMatch",
                    "ExpiredToken",
                    "ExpiredTokenException",
                    "MissingAuthenticationToken",
                    "AuthFailure",
                ]
                .contains(&c)
            })
    }

    /// Whether the resource the call names does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code.as_deref().is_some_and(|c| {
            [
                "AWS.SimpleQueueService.NonExistentQueue",
                "QueueDoesNotExist",
                "NoSuchBucket",
                "NoSuchKey",
                "ResourceNotFoundException",
                "NotFound",
            ]
            .contains(&c)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_throttling_and_transient_trouble_are_retried() {
        assert!(is_transient(503, Some("SlowDown")));
        assert!(is_transient(500, Some("InternalError")));
        assert!(is_transient(400, Some("ThrottlingException")));
        assert!(is_transient(
            400,
            Some("ProvisionedThroughputExceededException")
        ));
        assert!(is_transient(409, Some("OperationAborted")));
        assert!(is_transient(400, Some("ExpiredToken")));
        assert!(is_transient(429, None));
        assert!(is_transient(408, None));
        for (status, code) in [
            (400, "KeyTooLongError"),
            (403, "AccessDenied"),
            (404, "NoSuchBucket"),
            (400, "InvalidArgument"),
            (400, "ValidationException"),
            (400, "ConditionalCheckFailedException"),
            (400, "InvalidMessageContents"),
        ] {
            assert!(!is_transient(status, Some(code)), "{code}");
        }
    }
}
