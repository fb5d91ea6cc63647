//! `switchyard check`: placeholder until the validator lands.
use std::path::Path;

pub fn run(path: &Path) -> (bool, String) {
    match super::load(path) {
        Ok(_) => (true, format!("{}: ok", path.display())),
        Err(e) => (false, e.to_string()),
    }
}
