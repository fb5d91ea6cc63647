//! Passwords from `.pgpass`-format files, as libpq finds them: each line
//! `hostname:port:database:username:password`, `*` matching anything, `\`
//! escaping `:` and `\`, `#` starting a comment. The first matching line
//! wins. Pure, but for [`from_files`], which reads the files.

use std::path::{Path, PathBuf};

/// Who is connecting where: what a line must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// The host as written, or `localhost` for a Unix socket directory.
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
}

/// The password of the first line of `text` that matches `t`.
pub fn lookup(text: &str, t: &Target<'_>) -> Option<String> {
    let port = t.port.to_string();
    let want = [t.host, port.as_str(), t.database, t.user];
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(fields)
        .find(|f| {
            f[..4]
                .iter()
                .zip(want)
                .all(|(have, want)| have == "*" || have == want)
        })
        .map(|mut f| f.swap_remove(4))
}

/// The five fields of a line, unescaped; None for a line without five.
fn fields(line: &str) -> Option<Vec<String>> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.last_mut()?.extend(chars.next()),
            ':' if out.len() < 5 => out.push(String::new()),
            c => out.last_mut()?.push(c),
        }
    }
    (out.len() == 5).then_some(out)
}

/// Where a password for the gate's connection may be, in libpq's order
/// after a password in the string itself: the config's `password_file`,
/// the string's `passfile`, `$PGPASSFILE`, `~/.pgpass`. `$PGPASSWORD` is
/// read by the caller before files.
pub fn candidate_files(configured: Option<&Path>, in_string: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = [configured, in_string]
        .into_iter()
        .flatten()
        .map(Path::to_path_buf)
        .collect();
    if let Some(p) = std::env::var_os("PGPASSFILE") {
        out.push(PathBuf::from(p));
    } else if let Some(home) = std::env::var_os("HOME") {
        out.push(Path::new(&home).join(".pgpass"));
    }
    out
}

/// The first password found for `t` in `files`; files that cannot be read
/// are passed over (libpq does the same with a missing `~/.pgpass`).
pub fn from_files(files: &[PathBuf], t: &Target<'_>) -> Option<String> {
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|text| lookup(&text, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Target<'static> = Target {
        host: "127.0.0.1",
        port: 5433,
        database: "postgres",
        user: "switchyard",
    };

    #[test]
    fn the_first_matching_line_wins_and_stars_match_anything() {
        let text = "# comment\n127.0.0.1:5432:*:switchyard:wrong-port\n\
                    *:5433:postgres:other:wrong-user\n\
                    127.0.0.1:*:*:switchyard:s3cret\n*:*:*:*:fallback\n";
        assert_eq!(lookup(text, &T).as_deref(), Some("s3cret"));
        let other = Target {
            user: "nobody",
            ..T
        };
        assert_eq!(lookup(text, &other).as_deref(), Some("fallback"));
        assert_eq!(lookup("127.0.0.1:5432:*:*:x\n", &T), None);
    }

    #[test]
    fn backslashes_escape_colons_and_themselves() {
        let text = r"127.0.0.1:5433:postgres:switchyard:a\:b\\c:d";
        assert_eq!(lookup(text, &T).as_deref(), Some(r"a:b\c:d"));
        let host = Target { host: "db:1", ..T };
        assert_eq!(lookup(r"db\:1:*:*:*:x", &host).as_deref(), Some("x"));
        assert_eq!(lookup("too:few:fields", &T), None);
    }

    #[test]
    fn files_are_read_in_order_and_missing_ones_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "*:*:*:switchyard:from-a\n").unwrap();
        let files = [dir.path().join("missing"), a];
        assert_eq!(from_files(&files, &T).as_deref(), Some("from-a"));
        let c = candidate_files(Some(Path::new("/x")), Some(Path::new("/y")));
        assert_eq!(&c[..2], &[PathBuf::from("/x"), PathBuf::from("/y")]);
    }
}
