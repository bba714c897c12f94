//! `clm token issue` and the client commands against a service with auth on.

use std::collections::HashMap;
use std::process::{Command, Output};

use clm_testkit::backend_tests;

use crate::CLM;
use crate::telemetry::spawn;

const SECRET: &str = "a-cli-test-secret-of-more-than-32-bytes";

fn clm(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(CLM)
        .args(args)
        .envs(env.iter().copied())
        .env("CLM_JWT_SECRET", SECRET)
        .output()
        .unwrap()
}

backend_tests!(issued_tokens_open_the_client_commands, |db| async move {
    let contacts = spawn(
        &db,
        0,
        &HashMap::new(),
        &[("CLM_JWT_SECRET", SECRET.into())],
    )
    .await;
    let addr = contacts.addr.as_str();

    let issued = clm(
        &[
            "token", "issue", "--tenant", "acme", "--scope", "all", "--ttl", "10m",
        ],
        &[],
    );
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let token = String::from_utf8(issued.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let create = ["contacts", "create", "--email", "cli@acme.example"];
    let refused = clm(&create, &[("CLM_CONTACTS_ADDR", addr)]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Unauthenticated"));

    let created = clm(
        &create,
        &[("CLM_CONTACTS_ADDR", addr), ("CLM_TOKEN", &token)],
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    // The token's tenant rules: CLM_TENANT names another, and is ignored.
    let listed = clm(
        &["contacts", "list"],
        &[
            ("CLM_CONTACTS_ADDR", addr),
            ("CLM_TOKEN", &token),
            ("CLM_TENANT", "globex"),
        ],
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("cli@acme.example"));

    let read_only = clm(
        &[
            "token",
            "issue",
            "--tenant",
            "acme",
            "--scope",
            "contacts:read",
        ],
        &[],
    );
    let read_only = String::from_utf8(read_only.stdout)
        .unwrap()
        .trim()
        .to_owned();
    let denied = clm(
        &create,
        &[("CLM_CONTACTS_ADDR", addr), ("CLM_TOKEN", &read_only)],
    );
    assert!(String::from_utf8_lossy(&denied.stderr).contains("PermissionDenied"));

    // Neither the key nor a token reaches the service's log.
    let log = contacts.log();
    assert!(!log.is_empty());
    assert!(!log.contains(SECRET) && !log.contains(&token) && !log.contains(&read_only));

    let unknown = clm(
        &[
            "token",
            "issue",
            "--tenant",
            "acme",
            "--scope",
            "everything",
        ],
        &[],
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown scope"));
});
