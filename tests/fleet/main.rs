//! Fleet mode against a real etcd (built with `--features fleet`).
