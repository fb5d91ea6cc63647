//! The validity period of an X.509 certificate, read straight from its DER
//! (RFC 5280 section 4.1): just enough parsing to refuse an expired
//! certificate before it is served, without an X.509 library.

/// Why the validity could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed certificate: {0}")]
pub struct DerError(&'static str);

/// `(not_before, not_after)` in Unix seconds.
pub fn validity(cert_der: &[u8]) -> Result<(i64, i64), DerError> {
    let (cert, _) = tlv(cert_der, SEQUENCE)?;
    let (mut tbs, _) = tlv(cert, SEQUENCE)?;
    if tbs.first() == Some(&0xa0) {
        tbs = skip(tbs)?; // [0] version
    }
    tbs = skip(tbs)?; // serialNumber
    tbs = skip(tbs)?; // signature algorithm
    tbs = skip(tbs)?; // issuer
    let (validity, _) = tlv(tbs, SEQUENCE)?;
    let (not_before, rest) = time(validity)?;
    let (not_after, _) = time(rest)?;
    Ok((not_before, not_after))
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The content of the element at the start of `input` (whose tag must be
/// `tag`) and what follows it.
fn tlv(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), DerError> {
    match input.first() {
        Some(&t) if t == tag => element(input),
        _ => Err(DerError("unexpected element")),
    }
}

fn skip(input: &[u8]) -> Result<&[u8], DerError> {
    element(input).map(|(_, rest)| rest)
}

fn element(input: &[u8]) -> Result<(&[u8], &[u8]), DerError> {
    let short = DerError("truncated");
    let first = *input.get(1).ok_or(short.clone())?;
    let (len, header) = match first {
        n if n < 0x80 => (usize::from(n), 2),
        n @ 0x81..=0x83 => {
            let k = usize::from(n & 0x7f);
            let bytes = input.get(2..2 + k).ok_or(short.clone())?;
            (
                bytes.iter().fold(0, |a, &b| (a << 8) | usize::from(b)),
                2 + k,
            )
        }
        _ => return Err(DerError("unsupported length")),
    };
    let content = input.get(header..header + len).ok_or(short)?;
    Ok((content, &input[header + len..]))
}

fn time(input: &[u8]) -> Result<(i64, &[u8]), DerError> {
    let (tag, (s, rest)) = match input.first() {
        Some(&UTC_TIME) => (UTC_TIME, element(input)?),
        Some(&GENERALIZED_TIME) => (GENERALIZED_TIME, element(input)?),
        _ => return Err(DerError("validity is not a time")),
    };
    let bad = DerError("bad time");
    let digits = |r: std::ops::Range<usize>| -> Result<i64, DerError> {
        let d = s.get(r).ok_or(bad.clone())?;
        d.iter().try_fold(0i64, |a, &b| {
            b.is_ascii_digit()
                .then(|| a * 10 + i64::from(b - b'0'))
                .ok_or(bad.clone())
        })
    };
    let (year, at) = if tag == UTC_TIME {
        // RFC 5280 4.1.2.5.1: YY >= 50 is 19YY.
        let yy = digits(0..2)?;
        (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
    } else {
        (digits(0..4)?, 4)
    };
    if s.len() != at + 11 || s[at + 10] != b'Z' {
        return Err(bad);
    }
    let (month, day) = (digits(at..at + 2)?, digits(at + 2..at + 4)?);
    let (h, m, sec) = (
        digits(at + 4..at + 6)?,
        digits(at + 6..at + 8)?,
        digits(at + 8..at + 10)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return Err(bad);
    }
    let days = days_from_civil(year, month, day);
    Ok((days * 86_400 + h * 3_600 + m * 60 + sec, rest))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        p.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        // 2020 is a UTCTime, 2060 a GeneralizedTime.
        let der = cert((2020, 1, 2), (2060, 6, 30));
        assert_eq!(validity(&der).unwrap(), (1_577_923_200, 2_855_779_200));
        let der = cert((1999, 12, 31), (2049, 12, 31));
        assert_eq!(validity(&der).unwrap(), (946_598_400, 2_524_521_600));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let der = cert((2020, 1, 2), (2060, 6, 30));
        for cut in [0, 1, 5, 40, der.len() / 2] {
            assert!(validity(&der[..cut]).is_err(), "cut at {cut}");
        }
        assert!(validity(b"\x30\x84\xff\xff\xff\xff").is_err());
    }
}
