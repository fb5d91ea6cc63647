//! A blue/green split in basis points (0.01 % resolution).

use crate::config::{PoolName, WeightsConfig};
use serde::{Deserialize, Serialize};

/// Total of the two weights in basis points.
pub const TOTAL_BP: u32 = 10_000;

/// The split of new requests between the pools. Green's share is stored;
/// blue's is the rest, so the two always sum to 100 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Weights {
    green_bp: u32,
}

impl Weights {
    /// All traffic on `pool`.
    pub const fn all_on(pool: PoolName) -> Self {
        match pool {
            PoolName::Blue => Weights { green_bp: 0 },
            PoolName::Green => Weights { green_bp: TOTAL_BP },
        }
    }

    /// `pool` gets `percent` (0..=100, rounded to 0.01), the other the rest.
    pub fn with_percent(pool: PoolName, percent: f64) -> Self {
        let bp = (percent.clamp(0.0, 100.0) * 100.0).round() as u32;
        match pool {
            PoolName::Green => Weights { green_bp: bp },
            PoolName::Blue => Weights {
                green_bp: TOTAL_BP - bp,
            },
        }
    }

    /// From a validated blue/green pair.
    pub fn from_config(w: &WeightsConfig) -> Self {
        Weights::with_percent(PoolName::Green, w.green)
    }

    pub fn bp(self, pool: PoolName) -> u32 {
        match pool {
            PoolName::Green => self.green_bp,
            PoolName::Blue => TOTAL_BP - self.green_bp,
        }
    }

    pub fn percent(self, pool: PoolName) -> f64 {
        f64::from(self.bp(pool)) / 100.0
    }

    /// The pool for a uniform random draw in `0..TOTAL_BP` (also a sticky bucket).
    #[inline]
    pub fn pick(self, draw: u32) -> PoolName {
        if draw < self.green_bp {
            PoolName::Green
        } else {
            PoolName::Blue
        }
    }

    /// The pool holding 100 %, if one does.
    pub fn sole_pool(self) -> Option<PoolName> {
        match self.green_bp {
            0 => Some(PoolName::Blue),
            TOTAL_BP => Some(PoolName::Green),
            _ => None,
        }
    }

    pub fn to_config(self) -> WeightsConfig {
        WeightsConfig {
            blue: self.percent(PoolName::Blue),
            green: self.percent(PoolName::Green),
        }
    }
}

impl Serialize for Weights {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_config().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Weights {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WeightsConfig::deserialize(d)?;
        if (w.blue + w.green - 100.0).abs() > 0.005 || w.blue < 0.0 || w.green < 0.0 {
            return Err(serde::de::Error::custom(
                "weights must be >= 0 and sum to 100",
            ));
        }
        Ok(Weights::from_config(&w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_is_a_hundredth_of_a_percent() {
        let w = Weights::with_percent(PoolName::Green, 10.01);
        assert_eq!(w.bp(PoolName::Green), 1001);
        assert_eq!(w.bp(PoolName::Blue), 8999);
        assert_eq!(w.pick(1000), PoolName::Green);
        assert_eq!(w.pick(1001), PoolName::Blue);
        assert_eq!(w.percent(PoolName::Blue), 89.99);
    }

    #[test]
    fn extremes_send_nothing_to_the_empty_pool() {
        let blue = Weights::all_on(PoolName::Blue);
        assert!((0..TOTAL_BP).all(|d| blue.pick(d) == PoolName::Blue));
        let green = Weights::all_on(PoolName::Green);
        assert!((0..TOTAL_BP).all(|d| green.pick(d) == PoolName::Green));
        assert_eq!(blue.sole_pool(), Some(PoolName::Blue));
        assert_eq!(
            Weights::with_percent(PoolName::Blue, 50.0).sole_pool(),
            None
        );
    }

    #[test]
    fn serde_round_trip_and_refusal() {
        let w: Weights = serde_json::from_str(r#"{"blue": 75, "green": 25}"#).unwrap();
        assert_eq!(w.bp(PoolName::Green), 2500);
        assert_eq!(
            serde_json::to_string(&w).unwrap(),
            r#"{"blue":75.0,"green":25.0}"#
        );
        assert!(serde_json::from_str::<Weights>(r#"{"blue": 75, "green": 24}"#).is_err());
    }
}
