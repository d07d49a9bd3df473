//! Exact decimals: reading number text of any size without floating point, and the canonical
//! text DynamoDB stores (at most 38 significant digits).

/// A decimal number's parts: sign, significant digits (no leading or trailing zeros), and the
/// position of the decimal point relative to the first digit (`value = 0.DIGITS × 10^point`).
pub(crate) struct Decimal {
    pub(crate) negative: bool,
    pub(crate) digits: String,
    pub(crate) point: i64,
}

/// Whether text is a decimal number (`-12.5E3`), of any size.
pub(crate) fn is_number(text: &str) -> bool {
    parse_decimal(text).is_ok()
}

pub(crate) fn parse_decimal(text: &str) -> Result<Decimal, &'static str> {
    let t = text.trim();
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        Some(_) => (false, t),
        None => return Err("empty"),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (
            &body[..i],
            body[i + 1..].parse::<i64>().map_err(|_| "not a number")?,
        ),
        None => (body, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err("not a number");
    }
    let all = format!("{int_part}{frac_part}");
    let leading = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_matches('0').to_owned();
    let int_len = i64::try_from(int_part.len()).map_err(|_| "too long")?;
    let lead = i64::try_from(leading).map_err(|_| "too long")?;
    let point = int_len - lead + exponent;
    Ok(Decimal {
        negative: negative && !digits.is_empty(),
        digits,
        point,
    })
}

pub(crate) fn plain(d: &Decimal) -> String {
    if d.digits.is_empty() {
        return "0".into();
    }
    let mut s = String::new();
    if d.negative {
        s.push('-');
    }
    let len = i64::try_from(d.digits.len()).unwrap_or(i64::MAX);
    if d.point <= 0 {
        s.push_str("0.");
        for _ in 0..(-d.point) {
            s.push('0');
        }
        s.push_str(&d.digits);
    } else if d.point >= len {
        s.push_str(&d.digits);
        for _ in 0..(d.point - len) {
            s.push('0');
        }
    } else {
        let cut = usize::try_from(d.point).unwrap_or(0);
        s.push_str(&d.digits[..cut]);
        s.push('.');
        s.push_str(&d.digits[cut..]);
    }
    s
}

/// The canonical text of an exact decimal that DynamoDB can store: at most 38 significant
/// digits, magnitude between 1E-130 and 1E+126. No exponent, no insignificant zeros.
pub fn canonical_decimal(text: &str) -> Result<String, &'static str> {
    let d = parse_decimal(text)?;
    if d.digits.len() > 38 {
        return Err("more than 38 significant digits, which DynamoDB cannot store");
    }
    if !d.digits.is_empty() && !(-129..=126).contains(&d.point) {
        return Err("outside DynamoDB's number range (1E-130 to 1E+126)");
    }
    Ok(plain(&d))
}

/// The canonical text of a whole number within `i64`.
pub fn canonical_int(text: &str) -> Result<String, &'static str> {
    let d = parse_decimal(text)?;
    let len = i64::try_from(d.digits.len()).unwrap_or(i64::MAX);
    if d.point < len {
        return Err("not a whole number");
    }
    if d.point > 19 {
        return Err("outside the int range");
    }
    let s = plain(&d);
    s.parse::<i64>().map_err(|_| "outside the int range")?;
    Ok(s)
}

/// The canonical text of a finite binary float: its shortest round-trip form.
pub fn canonical_float(text: &str) -> Result<String, &'static str> {
    parse_decimal(text)?;
    let f: f64 = text.trim().parse().map_err(|_| "not a number")?;
    if !f.is_finite() {
        return Err("not finite");
    }
    canonical_decimal(&format!("{f:e}"))
}
