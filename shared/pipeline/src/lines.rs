//! Reading a raw object line by line, each line bounded: a longer one is skipped to its end and
//! reported with its length, never held whole.

use tokio::io::AsyncBufReadExt;

use sluice_aws::raw_objects::ObjectReader;

pub(crate) enum LineRead {
    Line,
    TooLong(usize),
    Eof,
}

/// Reads up to the next `\n` into `buf`, keeping at most `max` bytes; a longer line is skipped
/// to its end and reported with its length.
pub(crate) async fn read_line_capped(
    reader: &mut ObjectReader,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    let mut total = 0usize;
    let mut any = false;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(match (any, total > max) {
                (false, _) => LineRead::Eof,
                (true, true) => LineRead::TooLong(total),
                (true, false) => LineRead::Line,
            });
        }
        any = true;
        let (take, done) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if total + take <= max {
            buf.extend_from_slice(&chunk[..take]);
        }
        total += take;
        let consumed = if done { take + 1 } else { take };
        reader.consume(consumed);
        if done {
            return Ok(if total > max {
                LineRead::TooLong(total)
            } else {
                LineRead::Line
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_capped_and_long_ones_skipped_whole() {
        let data = b"short\nthis line is too long\n\nlast".to_vec();
        let mut reader: ObjectReader = Box::pin(std::io::Cursor::new(data));
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            buf.clear();
            match read_line_capped(&mut reader, &mut buf, 10).await.unwrap() {
                LineRead::Eof => break,
                LineRead::TooLong(n) => got.push(format!("too long {n}")),
                LineRead::Line => got.push(String::from_utf8(buf.clone()).unwrap()),
            }
        }
        assert_eq!(got, ["short", "too long 21", "", "last"]);
    }
}
