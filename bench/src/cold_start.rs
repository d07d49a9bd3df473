//! A function binary's cold start: the time from spawning it to its first request to the
//! Lambda Runtime API, which this module serves itself on `127.0.0.1`.
//!
//! The binary gets the variables Lambda sets (`AWS_LAMBDA_RUNTIME_API` pointing here, the
//! function's name, memory, version and log names, the region and test credentials) and the
//! `SLUICE_*` variables the functions require, with dummy values; nothing else of this
//! process's environment but `PATH`. Its first request must be `GET
//! /2018-06-01/runtime/invocation/next`: a function that reports an init error instead (a
//! missing variable, say) fails the measurement rather than timing a crash. The child is killed
//! once its first request has arrived.

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The path of the Runtime API's "next invocation" request.
pub const NEXT_INVOCATION: &str = "/2018-06-01/runtime/invocation/next";

/// The variables a sluice function requires, with dummy values: enough for ingest, transform
/// and redrive to start (see `shared/pipeline/src/config.rs`).
pub const SLUICE_ENV: &[(&str, &str)] = &[
    ("SLUICE_RAW_BUCKET", "bench-raw"),
    ("SLUICE_DLQ_URL", "bench-dlq"),
    ("SLUICE_CONTRACTS", "s3://bench-raw/contracts/"),
    ("SLUICE_TRANSFORM_QUEUE_URL", "bench-transform"),
    ("SLUICE_INGEST_QUEUE_URL", "bench-ingest"),
];

/// The environment Lambda gives a function, pointed at a Runtime API on `api`.
pub fn lambda_env(api: &str, function: &str) -> Vec<(String, String)> {
    let fixed = [
        ("AWS_LAMBDA_RUNTIME_API", api),
        ("AWS_LAMBDA_FUNCTION_NAME", function),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/24/[$LATEST]00000000000000000000000000000000",
        ),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench"),
        ("AWS_REGION", "eu-central-1"),
        ("AWS_DEFAULT_REGION", "eu-central-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_SESSION_TOKEN", "test"),
    ];
    fixed
        .into_iter()
        .chain(SLUICE_ENV.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Starts `bootstrap` once and returns the time until its first request reached the Runtime
/// API, in milliseconds. `extra` adds or overrides variables. Gives up after `timeout`.
pub fn measure_once(
    bootstrap: &Path,
    extra: &[(String, String)],
    timeout: Duration,
) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the Runtime API")?;
    listener.set_nonblocking(true)?;
    let api = listener.local_addr()?.to_string();
    let function = bootstrap
        .file_name()
        .map_or_else(|| "bench".to_owned(), |n| n.to_string_lossy().into_owned());
    let mut command = Command::new(bootstrap);
    command
        .env_clear()
        .envs(lambda_env(&api, &function))
        .envs(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", bootstrap.display()))?;
    let outcome = first_request(&listener, &mut child, started, timeout);
    let _ = child.kill();
    let status = child.wait();
    match outcome {
        Ok(ms) => Ok(ms),
        Err(e) => {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            let tail: String = stderr
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            bail!("{e} (exit: {status:?}; stderr: {tail})")
        }
    }
}

/// Waits for the child's first request and returns the milliseconds from `started` until its
/// head had arrived.
fn first_request(
    listener: &TcpListener,
    child: &mut std::process::Child,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<f64> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let head = read_head(stream)?;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                let request_line = head.lines().next().unwrap_or_default();
                if !request_line.contains(NEXT_INVOCATION) {
                    bail!("the function's first request was {request_line:?}, not the next invocation");
                }
                return Ok(ms);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Some(status) = child.try_wait()? {
                    bail!("the function exited before its first request: {status}");
                }
                if started.elapsed() > timeout {
                    bail!("no request within {timeout:?}");
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(e) => return Err(e).context("accepting the function's connection"),
        }
    }
}

/// Reads a request's head (up to the blank line).
fn read_head(mut stream: TcpStream) -> anyhow::Result<String> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream
            .read(&mut buf)
            .context("reading the function's request")?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 64 * 1024 {
            bail!("request head over 64 KiB");
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Measures `runs` cold starts of `bootstrap`, in milliseconds each.
pub fn run(
    bootstrap: &Path,
    runs: usize,
    extra: &[(String, String)],
    timeout: Duration,
) -> anyhow::Result<Vec<f64>> {
    (0..runs.max(1))
        .map(|_| measure_once(bootstrap, extra, timeout))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell script stands in for a function: it makes the request a runtime client makes.
    fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/usr/bin/env bash\n{body}\n")).unwrap();
        let status = Command::new("chmod").arg("+x").arg(&path).status().unwrap();
        assert!(status.success());
        path
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-bench-cold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_first_next_invocation_request_is_timed() {
        let dir = tempdir();
        let ok = script(
            &dir,
            "ok",
            r#"exec 3<>"/dev/tcp/${AWS_LAMBDA_RUNTIME_API%:*}/${AWS_LAMBDA_RUNTIME_API#*:}"
printf 'GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n' >&3
[ "$SLUICE_RAW_BUCKET" = bench-raw ] || exit 3
exec sleep 5"#,
        );
        let ms = measure_once(&ok, &[], Duration::from_secs(10)).unwrap();
        assert!(ms > 0.0 && ms < 5000.0, "{ms}");
    }

    #[test]
    fn an_init_error_or_an_early_exit_is_not_a_cold_start() {
        let dir = tempdir();
        let init_error = script(
            &dir,
            "init-error",
            r#"exec 3<>"/dev/tcp/${AWS_LAMBDA_RUNTIME_API%:*}/${AWS_LAMBDA_RUNTIME_API#*:}"
printf 'POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: x\r\n\r\n' >&3
exec sleep 5"#,
        );
        let err = measure_once(&init_error, &[], Duration::from_secs(10)).unwrap_err();
        assert!(err.to_string().contains("init/error"), "{err}");
        let exits = script(&dir, "exits", "echo missing variable >&2; exit 2");
        let err = measure_once(&exits, &[], Duration::from_secs(10)).unwrap_err();
        assert!(err.to_string().contains("exited"), "{err}");
        assert!(err.to_string().contains("missing variable"), "{err}");
    }
}
