use super::*;

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
    // An application's 200 (the proxy port, an SPA catch-all) is not success.
    for (ct, body) in [
        ("text/plain", "blue-1"),
        ("", "{\"generation\": 3}"),
        (JSON, "\"xxxx\""),
        (JSON, "[1, 2]"),
        (JSON, "{\"status\": \"ok\"}"),
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
