//! The init scripts the image carries, run against a real PostgreSQL 18 server.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::context::{repo_root, shared, stderr};
use crate::postgres::{PgServer, as_user};

const SCRIPT: &str = "stacks/runtime/initdb.d/03-pgsodium-init.sh";

/// Runs 03-pgsodium-init.sh as the server's user, the way the base entrypoint does.
fn pgsodium_init(server: &PgServer, toolchain: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = as_user(Path::new("/bin/sh"));
    cmd.arg(repo_root().join(SCRIPT))
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", toolchain.join("bin").display()),
        )
        .env("PGDATA", server.data_dir())
        .env("PGHOST", server.socket_dir())
        .env("POSTGRES_USER", "postgres");
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

#[test]
fn pgsodium_init_sets_up_the_root_key_only_when_asked() {
    let toolchain = shared().toolchains.join("pg18-amd64");
    let server = PgServer::start(&toolchain, &toolchain, &[]);
    let key_file = server.data_dir().join("pgsodium_root.key");

    let skipped = pgsodium_init(&server, &toolchain, &[]);
    assert!(skipped.status.success(), "{}", stderr(&skipped));
    assert!(stderr(&skipped).contains("skipping"));
    assert!(!key_file.exists());

    let bad = pgsodium_init(
        &server,
        &toolchain,
        &[
            ("ENABLE_PGSODIUM_INIT", "true"),
            ("PGSODIUM_ROOT_KEY", "not-hex"),
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("PGSODIUM_ROOT_KEY must be 64 lowercase hex digits"),
        "{}",
        stderr(&bad)
    );

    let done = pgsodium_init(&server, &toolchain, &[("ENABLE_PGSODIUM_INIT", "true")]);
    assert!(done.status.success(), "{}", stderr(&done));
    let key = fs_err::read_to_string(&key_file).unwrap();
    assert_eq!(key.trim().len(), 64, "{key:?}");
    assert!(key.trim().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        fs_err::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let getkey = server.data_dir().join("pgsodium_getkey.sh");
    let served = Command::new(&getkey).output().unwrap();
    assert_eq!(String::from_utf8(served.stdout).unwrap(), key);
    let auto = fs_err::read_to_string(server.data_dir().join("postgresql.auto.conf")).unwrap();
    for setting in ["pgsodium.getkey_script", "vault.getkey_script"] {
        assert!(
            auto.contains(&format!("{setting} = '{}'", getkey.display())),
            "{auto}"
        );
    }

    // A second run keeps the key.
    let again = pgsodium_init(&server, &toolchain, &[("ENABLE_PGSODIUM_INIT", "true")]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(fs_err::read_to_string(&key_file).unwrap(), key);
}
