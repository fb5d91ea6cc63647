//! PostgreSQL log sequence numbers: a byte position in the write-ahead
//! log, written `16/B374D848` (high and low 32 bits in hex). Pure.

use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl Lsn {
    /// How many bytes `self` is behind `target` (0 when at or past it).
    pub fn behind(self, target: Lsn) -> u64 {
        target.0.saturating_sub(self.0)
    }
}

impl FromStr for Lsn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not an LSN (e.g. 0/3000060)");
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let part = |p: &str| match p.len() {
            1..=8 => u32::from_str_radix(p, 16).map_err(|_| bad()),
            _ => Err(bad()),
        };
        Ok(Lsn((u64::from(part(hi)?) << 32) | u64::from(part(lo)?)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_read_and_print_as_postgres_writes_them() {
        for s in ["0/0", "0/3000060", "16/B374D848", "FFFFFFFF/FFFFFFFF"] {
            let l: Lsn = s.parse().unwrap();
            assert_eq!(l.to_string(), s);
        }
        assert_eq!("1/0".parse::<Lsn>().unwrap(), Lsn(1 << 32));
        assert_eq!("0/10".parse::<Lsn>().unwrap(), Lsn(16));
        for bad in ["", "0", "0/", "/1", "g/0", "0/123456789", "0/1/2", "-1/0"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad}");
        }
    }

    #[test]
    fn behind_counts_bytes_and_never_goes_negative() {
        let a: Lsn = "0/3000060".parse().unwrap();
        let b: Lsn = "1/60".parse().unwrap();
        assert_eq!(a.behind(b), (1u64 << 32) + 0x60 - 0x300_0060);
        assert_eq!(b.behind(a), 0);
        assert_eq!(a.behind(a), 0);
        assert_eq!(serde_json::to_value(a).unwrap(), "0/3000060");
    }
}
