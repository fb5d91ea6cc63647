//! Semantic validation of a parsed [`Config`], reporting every mistake with
//! file, line and column.

use super::schema::Config;

/// One mistake in a configuration file. `line` and `column` are 1-based; 0
/// when the mistake has no position (e.g. the file could not be read).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Status codes a health check accepts, e.g. `200-399` or `200,204,300-399`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRanges(pub Vec<(u16, u16)>);

impl StatusRanges {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let lo: u16 = lo.parse().map_err(|_| format!("bad status {part:?}"))?;
            let hi: u16 = hi.parse().map_err(|_| format!("bad status {part:?}"))?;
            if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
                return Err(format!(
                    "bad status range {part:?}: expected 100-599, low to high"
                ));
            }
            out.push((lo, hi));
        }
        Ok(StatusRanges(out))
    }

    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

/// Parse `text` and check it; on failure, every mistake found.
pub fn parse_and_validate(text: &str, file: &str) -> Result<Config, Vec<Diagnostic>> {
    // Placeholder: serde only. Replaced by the full validator.
    serde_yaml::from_str::<Config>(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        vec![Diagnostic {
            file: file.to_string(),
            line,
            column,
            message: e.to_string(),
        }]
    })
}

/// Weights as an admin request or the file gives them: each 0..=100, summing
/// to 100, with at most 0.01 resolution.
pub fn validate_weights(blue: f64, green: f64) -> Result<(), String> {
    for (name, w) in [("blue", blue), ("green", green)] {
        if !w.is_finite() || !(0.0..=100.0).contains(&w) {
            return Err(format!("{name} weight {w} is not between 0 and 100"));
        }
        if ((w * 100.0).round() - w * 100.0).abs() > 1e-6 {
            return Err(format!(
                "{name} weight {w} has a finer resolution than 0.01"
            ));
        }
    }
    if (blue + green - 100.0).abs() > 1e-6 {
        return Err(format!("weights must sum to 100, not {}", blue + green));
    }
    Ok(())
}
