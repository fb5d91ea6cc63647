use super::api::*;
use super::path_segment;
use http::StatusCode;
use serde_json::json;

const JSON: &str = "application/json";

#[test]
fn the_admin_url_is_checked_and_blank_means_the_default() {
    assert_eq!(admin_base("").unwrap(), DEFAULT_ADMIN);
    assert_eq!(admin_base("  ").unwrap(), DEFAULT_ADMIN);
    assert_eq!(
        admin_base("http://[::1]:9901/").unwrap(),
        "http://[::1]:9901"
    );
    for (url, says) in [
        ("127.0.0.1:9901", "missing http://"),
        ("https://127.0.0.1:9901", "plain HTTP"),
        ("ftp://127.0.0.1:9901", "use http://"),
        ("http://", "bad admin URL"),
    ] {
        let e = admin_base(url).unwrap_err().to_string();
        assert!(e.contains(says), "{url}: {e}");
    }
}

#[test]
fn the_token_is_trimmed_and_a_bad_one_is_named() {
    let h = auth_header(Some(" s3cret\n")).unwrap().unwrap();
    assert_eq!(h, "Bearer s3cret");
    assert!(h.is_sensitive());
    assert!(auth_header(Some(" \n")).unwrap().is_none());
    assert!(matches!(
        auth_header(Some("s3c\nret")),
        Err(CtlError::BadToken)
    ));
}

#[test]
fn only_a_refused_connection_asks_whether_switchyard_runs() {
    let url = "http://127.0.0.1:9".to_string();
    let hint = "is switchyard running?";
    let refused = CtlError::Refused {
        url: url.clone(),
        reason: "Connection refused".into(),
    };
    assert!(refused.to_string().contains(hint));
    let timed_out = CtlError::TimedOut {
        url: url.clone(),
        after: ANSWER_TIMEOUT,
    };
    assert_eq!(
        timed_out.to_string(),
        format!("no answer from the admin API at {url} within 30s")
    );
    let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    assert!(connection_refused(&io));
    #[derive(Debug, thiserror::Error)]
    #[error("tcp connect error")]
    struct Connect(#[source] std::io::Error);
    let wrapped = Connect(io);
    assert!(connection_refused(&wrapped));
    assert_eq!(root_cause(&wrapped), "connection refused");
    assert!(!connection_refused(&std::io::Error::from(
        std::io::ErrorKind::TimedOut
    )));
}

#[test]
fn only_the_admin_api_shape_is_success() {
    let ok = |status, ct, body: &str| judge_answer(status, ct, body.as_bytes());
    assert!(ok(StatusCode::OK, JSON, r#"{"generation": 3}"#).is_ok());
    assert!(ok(
        StatusCode::OK,
        "Application/JSON; charset=utf-8",
        r#"{"events": []}"#
    )
    .is_ok());
    // `ctl mirror diffs`: GET /api/v1/mirror/diffs carries no generation.
    assert!(ok(StatusCode::OK, JSON, r#"{"to": "green", "diffs": []}"#).is_ok());
    // An application's 200 (the proxy port, an SPA catch-all) is not success.
    for (ct, body) in [
        ("text/plain", "blue-1"),
        ("", "{\"generation\": 3}"),
        (JSON, "\"xxxx\""),
        (JSON, "[1, 2]"),
        (JSON, "{\"status\": \"ok\"}"),
        (JSON, "{\"diffs\": []}"),
        (JSON, "not json"),
    ] {
        match ok(StatusCode::OK, ct, body) {
            Err(Answer::Foreign(why)) => assert!(why.contains("200"), "{why}"),
            other => panic!("{ct} {body}: {other:?}"),
        }
    }
    assert_eq!(
        ok(
            StatusCode::UNPROCESSABLE_ENTITY,
            JSON,
            r#"{"error": {"code": "invalid", "message": "sum is 99"}}"#
        ),
        Err(Answer::Refused {
            message: "sum is 99".into(),
            body: json!({"error": {"code": "invalid", "message": "sum is 99"}})
        })
    );
    assert!(matches!(
        ok(StatusCode::NOT_FOUND, "text/html", "<h1>nope</h1>"),
        Err(Answer::Foreign(_))
    ));
}

#[test]
fn an_address_is_one_path_segment() {
    assert_eq!(path_segment("127.0.0.1:8001"), "127.0.0.1:8001");
    assert_eq!(
        path_segment("[::1]:80"),
        "%5B%3A%3A1%5D:80".replace("%3A", ":")
    );
    assert_eq!(path_segment("a/../b"), "a%2F..%2Fb");
}

#[test]
fn every_failure_has_its_documented_exit_code() {
    let api = |status: StatusCode| CtlError::Api {
        status,
        message: String::new(),
        body: json!({}),
    };
    let cases = [
        (api(StatusCode::UNPROCESSABLE_ENTITY), exit::INVALID),
        (api(StatusCode::BAD_REQUEST), exit::INVALID),
        (api(StatusCode::NOT_FOUND), exit::INVALID),
        (api(StatusCode::CONFLICT), exit::REFUSED),
        (api(StatusCode::UNAUTHORIZED), exit::UNAUTHORIZED),
        (api(StatusCode::SERVICE_UNAVAILABLE), exit::UNREACHABLE),
        (api(StatusCode::INTERNAL_SERVER_ERROR), exit::OTHER),
        (
            CtlError::Refused {
                url: String::new(),
                reason: String::new(),
            },
            exit::UNREACHABLE,
        ),
        (CtlError::BadToken, exit::INVALID),
        (CtlError::RolledBack(String::new()), exit::ROLLED_BACK),
        (
            CtlError::NotAdminApi {
                url: String::new(),
                why: String::new(),
            },
            exit::OTHER,
        ),
    ];
    for (e, code) in cases {
        assert_eq!(e.exit_code(), code, "{e:?}");
    }
    // The help text lists each code.
    for code in 0..=6 {
        assert!(
            super::args::AFTER_HELP.contains(&format!("\n  {code}  ")),
            "exit code {code} is not in ctl --help"
        );
    }
}

#[test]
fn every_subcommand_and_flag_has_help() {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &str) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            assert!(arg.get_help().is_some(), "{path} {id} has no help");
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let name = format!("{path} {}", sub.get_name());
            assert!(sub.get_about().is_some(), "{name} has no help");
            walk(sub, &name);
        }
    }
    let cli = crate::cli::Cli::command();
    walk(&cli, "switchyard");
}

#[test]
fn pools_are_listed_and_the_interval_flag_has_the_api_name() {
    use clap::Parser;
    let parse = |args: &[&str]| crate::cli::Cli::try_parse_from(args);
    let e = parse(&["switchyard", "ctl", "switch", "purple"]).unwrap_err();
    assert!(
        e.to_string().contains("[possible values: blue, green]"),
        "{e}"
    );
    assert_eq!(e.exit_code(), 2);
    for flag in ["--step-interval", "--interval"] {
        let cli = parse(&[
            "switchyard",
            "ctl",
            "rollout",
            "start",
            "green",
            flag,
            "30s",
        ])
        .unwrap();
        let crate::cli::Cmd::Ctl(args) = cli.command else {
            panic!("not ctl")
        };
        let super::CtlCmd::Rollout(super::RolloutCmd::Start { step_interval, .. }) = args.cmd
        else {
            panic!("not rollout start")
        };
        assert_eq!(step_interval.as_deref(), Some("30s"));
    }
    let help = crate::cli::Cli::try_parse_from(["switchyard", "ctl", "rollout", "start", "--help"])
        .unwrap_err()
        .to_string();
    assert!(help.contains("--step-interval"), "{help}");
    assert!(
        !help.contains("--interval "),
        "the old name is a hidden alias: {help}"
    );
}
