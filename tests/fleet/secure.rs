//! TLS and user authentication to etcd, set up from a `fleet` section's
//! files as an operator writes them.

use crate::support::etcd::{Etcd, ServerTls};
use crate::support::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchyard::config::fleet::{EtcdAuth, EtcdConfig, EtcdTls, FleetConfig, MinReporting};
use switchyard::control::fleet::{Etcd as Fleet, EtcdSettings};

fn section(endpoints: Vec<String>, prefix: &str) -> FleetConfig {
    FleetConfig {
        etcd: EtcdConfig {
            endpoints,
            prefix: prefix.to_string(),
            tls: None,
            auth: None,
        },
        member_id: None,
        member_ttl: Duration::from_secs(2),
        write_fence: Duration::from_secs(1),
        min_reporting: MinReporting::Majority,
    }
}

/// `settings` of the tests, with the section's endpoints, TLS and user.
/// With a user, connecting authenticates, which costs etcd a bcrypt hash
/// of the password: up to seconds on a loaded 2-core machine, so the
/// calls get 5 s instead of the tests' usual 1 s.
fn from_section(f: &FleetConfig) -> EtcdSettings {
    let read = EtcdSettings::from_config(f).expect("read the section's files");
    let mut s = settings(read.endpoints.clone(), &read.prefix);
    s.tls = read.tls;
    if read.user.is_some() {
        s.request_timeout = Duration::from_secs(5);
    }
    s.user = read.user;
    s
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A CA, a certificate for etcd on 127.0.0.1 and one for a member.
fn certificates(dir: &Path) -> (ServerTls, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let issue = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = issue(vec!["127.0.0.1".into(), "localhost".into()]);
    let (client_cert, client_key) = issue(vec!["switchyard".into()]);
    let server = ServerTls {
        ca: write(dir, "ca.pem", &ca_pem),
        cert: write(dir, "server.pem", &server_cert),
        key: write(dir, "server.key", &server_key),
    };
    let cert = write(dir, "client.pem", &client_cert);
    let key = write(dir, "client.key", &client_key);
    (server, cert, key)
}

#[tokio::test]
async fn mutual_tls_to_etcd_from_the_sections_files() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cert, key) = certificates(dir.path());
    let etcd = Etcd::one_tls(server.clone()).await;
    let p = prefix("tls");
    let mut f = section(etcd.endpoints(), &p);
    assert!(f.etcd.endpoints[0].starts_with("https://"));
    f.etcd.tls = Some(EtcdTls {
        ca: server.ca.clone(),
        cert: Some(cert),
        key: Some(key),
    });
    assert_eq!(switchyard::config::fleet::problems(&f), vec![]);
    let fleet = Fleet::connect(from_section(&f)).await.unwrap();
    let at = committed(&super::support::write(&fleet, "tls-1", 1).await);
    let read = fleet.read_state().await.unwrap().doc.unwrap();
    assert_eq!((read.value, read.mod_revision), (doc("tls-1", 1), at));

    // Without a client certificate, etcd refuses the member.
    f.etcd.tls = Some(EtcdTls {
        ca: server.ca,
        cert: None,
        key: None,
    });
    let anonymous = Fleet::connect(from_section(&f)).await.unwrap();
    assert!(anonymous.read_state().await.is_err());
}

#[tokio::test]
async fn user_authentication_with_a_password_file() {
    let etcd = Etcd::one().await;
    let mut root = etcd.raw().await;
    root.user_add("root", "s3cret", None).await.unwrap();
    root.user_grant_role("root", "root").await.unwrap();
    root.auth_enable().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let p = prefix("auth");
    let mut f = section(etcd.endpoints(), &p);
    f.etcd.auth = Some(EtcdAuth {
        user: "root".into(),
        password_file: write(dir.path(), "password", "s3cret\n"),
    });
    let fleet = Fleet::connect(from_section(&f)).await.unwrap();
    committed(&super::support::write(&fleet, "auth-1", 1).await);

    f.etcd.auth = Some(EtcdAuth {
        user: "root".into(),
        password_file: write(dir.path(), "wrong", "guess\n"),
    });
    assert!(
        Fleet::connect(from_section(&f)).await.is_err(),
        "a wrong password is refused"
    );
    let unauthenticated = connect(etcd.endpoints(), &p).await;
    assert!(unauthenticated.read_state().await.is_err());
}
