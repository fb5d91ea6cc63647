//! Entry points for fuzzing and property tests of operator input: the
//! config parser and the admin API's request bodies. `fuzz/` (cargo fuzz)
//! and `tests/e2e/operator_input.rs` (which replays the fuzz corpus) call
//! these same functions, so a finding of one is a test of the other.
//!
//! Each panics when an invariant breaks: never a panic inside, always a
//! clear error (a diagnostic with a message, a status of 400, 413 or 422).

/// Parse `data` as a config file. Valid UTF-8 that is not a valid config
/// must give at least one diagnostic, each with a message.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = crate::config::parse(text, "fuzz.yaml") {
        let diags = e.diagnostics();
        assert!(!diags.is_empty(), "an invalid config without a diagnostic");
        // YAML breaks lines at CRLF, CR and LF alike.
        let lines = text.replace("\r\n", "\n").matches(['\r', '\n']).count() + 1;
        for d in &diags {
            assert!(
                !d.message.trim().is_empty(),
                "a diagnostic without a message"
            );
            assert!(
                d.line <= lines,
                "diagnostic on line {} of {lines}: {d}",
                d.line
            );
        }
    }
}

/// The first byte picks an admin route that reads a body; the rest is the
/// body. A refusal must be 400, 413 or 422, with a code and a message.
pub fn admin_body(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let routes = crate::admin::routes::BODY_ROUTES;
    let route = routes[usize::from(pick) % routes.len()];
    if let Err(e) = crate::admin::routes::parse_body(route, body) {
        assert!(
            matches!(e.status.as_u16(), 400 | 413 | 422),
            "{route}: status {} for a bad body",
            e.status
        );
        assert!(
            !e.code.is_empty() && !e.message.is_empty(),
            "{route}: an empty error"
        );
    }
}
