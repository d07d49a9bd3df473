//! Borrowed views of SQS records in Lambda events, shared by the handlers.
//!
//! The views keep the body and the attributes raw: the body is decoded by the handler, and the
//! attributes land verbatim. `aws_lambda_events`' typed message is not used here because it
//! refuses a whole event when one message attribute has invalid base64.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// One SQS record of a Lambda event.
#[derive(Debug, Deserialize)]
pub(crate) struct SqsRecordView<'a> {
    #[serde(rename = "messageId", borrow, default)]
    pub message_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub body: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub attributes: Option<&'a RawValue>,
    #[serde(rename = "messageAttributes", borrow, default)]
    pub message_attributes: Option<&'a RawValue>,
    #[serde(rename = "eventSourceARN", borrow, default)]
    pub event_source_arn: Option<Cow<'a, str>>,
}

/// The system attributes sluice reads.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct SqsAttributesView<'a> {
    #[serde(rename = "MessageGroupId", borrow, default)]
    pub message_group_id: Option<Cow<'a, str>>,
    #[serde(rename = "ApproximateReceiveCount", borrow, default)]
    pub approximate_receive_count: Option<Cow<'a, str>>,
}

/// The one message attribute sluice reads: its redrive mark.
#[derive(Debug, Deserialize, Default)]
struct MarkAttributes<'a> {
    #[serde(rename = "sluice_redrive", borrow, default)]
    mark: Option<MarkValue<'a>>,
}

#[derive(Debug, Deserialize)]
struct MarkValue<'a> {
    #[serde(rename = "stringValue", borrow, default)]
    string_value: Option<Cow<'a, str>>,
}

impl SqsRecordView<'_> {
    /// The redrive mark of a message sent back from the dead-letter queue
    /// ([`sluice_core::envelope::RedriveMark`]); `None` for any other message.
    pub fn redrive_mark(&self) -> Option<sluice_core::envelope::RedriveMark> {
        let attrs: MarkAttributes<'_> =
            serde_json::from_str(self.message_attributes?.get()).ok()?;
        sluice_core::envelope::RedriveMark::parse(attrs.mark?.string_value.as_deref()?)
    }

    /// The system attributes, or none when they are unreadable.
    pub fn attributes(&self) -> SqsAttributesView<'_> {
        self.attributes
            .and_then(|a| serde_json::from_str(a.get()).ok())
            .unwrap_or_default()
    }

    /// How often the record was tried before this delivery: the deliveries of this message
    /// before this one, plus the retries its redrive mark carries.
    pub fn retry_count(&self) -> u32 {
        let deliveries = self
            .attributes()
            .approximate_receive_count
            .as_deref()
            .and_then(|c| c.parse::<u32>().ok())
            .map_or(0, |c| c.saturating_sub(1));
        deliveries.saturating_add(self.redrive_mark().map_or(0, |m| m.retry_count))
    }
}
