//! How a command ends, and how a failure is told: the first line names the real cause and what to
//! do about it; the chain of causes follows, one line each; no backtrace unless asked for
//! (`SLUICE_BACKTRACE=1`).
//!
//! Exit codes: 0 ok, 1 differences or invalid input found, 2 could not run.

use std::sync::OnceLock;

use sluice_aws::AwsError;

/// What a command that ran found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing wrong.
    Ok,
    /// Differences or invalid input: exit code 1.
    Found,
}

/// Input that is wrong (a contract that does not check, a file that is not an event): exit 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// A failure before any call: the endpoint or credentials cannot work. Exit 2.
#[derive(Debug, thiserror::Error)]
pub enum Setup {
    /// `--endpoint-url` (or `AWS_ENDPOINT_URL`) is not a URL.
    #[error(
        "the endpoint {0:?} is not an http:// or https:// URL with a host; pass one like \
         --endpoint-url http://127.0.0.1:4566 (or set AWS_ENDPOINT_URL)"
    )]
    BadEndpoint(String),
    /// No endpoint and no credentials: this would call AWS, as nobody.
    #[error(
        "no endpoint and no AWS credentials: this would call real AWS. For the local emulator, \
         run `eval \"$(bash infra/emulator.sh env)\"` (or pass --endpoint-url); for AWS, configure \
         credentials (`aws configure`, AWS_PROFILE)"
    )]
    NoCredentials,
}

/// The endpoint the command talks to, when one is set, for error messages.
pub static ENDPOINT: OnceLock<String> = OnceLock::new();

/// The exit code and the text of a failure.
pub fn report(err: &anyhow::Error) -> (u8, String) {
    let code = if err.chain().any(|c| c.is::<InvalidInput>()) {
        1
    } else {
        2
    };
    let mut lines = vec![format!("error: {}", headline(err))];
    let mut seen: Vec<String> = vec![lines[0].clone()];
    for cause in err.chain() {
        let text = one_line(&cause.to_string());
        // The SDK's own wrappers (`dispatch failure`, `io error`…) add nothing to the headline.
        if text == "dispatch failure" || text == "service error" {
            break;
        }
        if !seen.iter().any(|s| s.contains(&text)) {
            seen.push(text.clone());
            let full = cause.to_string();
            if full.contains('\n') {
                // A list (every problem of a contract, say): one line each.
                lines.push("  because:".to_owned());
                lines.extend(full.lines().map(|l| format!("    {}", one_line(l))));
            } else {
                lines.push(format!("  because: {text}"));
            }
        }
        // An AWS error already says its root cause; the SDK's wrappers below it add nothing.
        if cause.is::<AwsError>() || lines.len() > 40 {
            break;
        }
    }
    if std::env::var_os("SLUICE_BACKTRACE").is_some_and(|v| v != "0") {
        lines.push(format!("{err:?}"));
    }
    (code, lines.join("\n"))
}

/// The first line: the real cause, and what to do.
fn headline(err: &anyhow::Error) -> String {
    let endpoint = ENDPOINT.get();
    let Some(aws) = err.chain().find_map(|c| c.downcast_ref::<AwsError>()) else {
        // An SDK error that was not classified: its chain still says whether it was sent.
        let unreachable = err.chain().any(|c| {
            let t = c.to_string();
            t.contains("tcp connect error")
                || t.contains("Connection refused")
                || t == "dispatch failure"
        });
        if unreachable {
            let root = err
                .chain()
                .last()
                .map(ToString::to_string)
                .unwrap_or_default();
            return match endpoint {
                Some(url) => format!(
                    "cannot reach {url} ({root}): start the local emulator with `make emulator`, \
                     or check --endpoint-url / AWS_ENDPOINT_URL"
                ),
                None => format!("cannot reach AWS ({root}): check the network"),
            };
        }
        return one_line(&err.to_string());
    };
    if aws.is_unreachable() {
        return match endpoint {
            Some(url) => format!(
                "cannot reach {url} ({}): start the local emulator with `make emulator`, or check \
                 --endpoint-url / AWS_ENDPOINT_URL",
                aws.message
            ),
            None => format!(
                "cannot reach AWS ({}): check the network, or pass --endpoint-url for a local \
                 endpoint",
                aws.message
            ),
        };
    }
    if aws.is_access_denied() {
        return format!(
            "access denied ({}): the credentials in use are not valid for this endpoint or lack \
             the permission; check AWS_PROFILE / AWS_ACCESS_KEY_ID{}",
            aws.message,
            endpoint.map_or_else(String::new, |u| format!(" (endpoint {u})"))
        );
    }
    one_line(&err.to_string())
}

/// Text on one line, at most 400 characters.
fn one_line(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 400 {
        format!("{}…", flat.chars().take(400).collect::<String>())
    } else {
        flat
    }
}

/// Checks an endpoint before anything calls it.
pub fn check_endpoint(url: &str) -> Result<(), Setup> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !rest.starts_with(':')
                && !rest.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(Setup::BadEndpoint(url.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_a_scheme_and_a_host() {
        assert!(check_endpoint("http://127.0.0.1:4566").is_ok());
        assert!(check_endpoint("https://s3.example.internal").is_ok());
        for bad in [
            "127.0.0.1:4566",
            "htp://x",
            "http://",
            "http:///x",
            "",
            "http://a b",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_input_exits_1_and_the_rest_2() {
        let e = anyhow::Error::new(InvalidInput("bad contract".into())).context("checking");
        let (code, text) = report(&e);
        assert_eq!(code, 1);
        assert!(text.starts_with("error: checking"), "{text}");
        assert!(text.contains("because: bad contract"), "{text}");
        let (code, text) = report(&anyhow::Error::new(Setup::NoCredentials));
        assert_eq!(code, 2);
        assert!(text
            .lines()
            .next()
            .unwrap()
            .contains("this would call real AWS"));
        assert!(!text.contains("stack backtrace"));
    }
}
