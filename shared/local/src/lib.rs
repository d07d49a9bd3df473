//! What only the `sluice` CLI and the end-to-end tests need, kept apart so the Lambda functions
//! link neither the DynamoDB Streams nor the CloudWatch SDK:
//!
//! - [`mappings`]: local event source mappings, what `sluice local run` does where no Lambda
//!   service runs;
//! - [`audit`]: reconciliation of sources, raw staging, typed tables and the DLQ;
//! - [`provision`]: creating the local pipeline's resources, idempotently;
//! - [`events`]: Lambda events built from API output (stream records, SQS messages);
//! - [`cloudwatch`]: metrics through `PutMetricData`, where EMF is not collected.

pub mod audit;
pub mod cloudwatch;
pub mod events;
pub mod mappings;
pub mod provision;
pub mod simulate;
