//! The primary stack's PgBouncer against a real PostgreSQL 18 server and Debian's real
//! pgbouncer, on loopback: stacks/primary/initdb.d/03-pgbouncer-auth.sh prepares the server
//! (role pgbouncer_auth, the SECURITY DEFINER lookup function), the stack's
//! pgbouncer/entrypoint.sh renders the config and password files and starts pgbouncer, and
//! its healthcheck.sh checks it. Application roles log in with SCRAM-SHA-256 through
//! auth_query alone; transaction pooling shares server connections.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use crate::context::{repo_root, stderr};
use crate::postgres::{
    TcpServer, USER, as_user, assert_ok, check, free_port, pgpass_field, try_psql, wait_for,
};

/// The application role's password: every character .pgpass, the auth_file, a connection
/// string or a shell could trip over, and a trailing backslash.
const APP_PASSWORD: &str = r#"ap:p\pa@ss &w 'sq' "dq" $(id) \:x\"#;
/// pgbouncer_auth's password, as awkward and different from the application's.
const AUTH_PASSWORD: &str = r#"au\th:"q" 'q' @&: \\ x"#;

const AUTH_SCRIPT: &str = "stacks/primary/initdb.d/03-pgbouncer-auth.sh";
const ENTRYPOINT: &str = "stacks/primary/pgbouncer/entrypoint.sh";
const HEALTHCHECK: &str = "stacks/primary/pgbouncer/healthcheck.sh";

/// `value` as an SQL string literal (standard_conforming_strings: only `'` is special).
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A primary as the stack makes it: the stack's pg_hba.conf (SCRAM over TCP), database
/// `app` (POSTGRES_DB) with role `app`, and 03-pgbouncer-auth.sh run by the server's user.
fn auth_server() -> TcpServer {
    let primary = TcpServer::start();
    fs_err::copy(
        repo_root().join("stacks/primary/pg_hba.conf"),
        primary.server.data_dir().join("pg_hba.conf"),
    )
    .unwrap();
    primary.server.pg_ctl(&["reload"]);
    primary.psql("CREATE DATABASE app");
    primary.psql(&format!(
        "CREATE ROLE app LOGIN PASSWORD {}",
        literal(APP_PASSWORD)
    ));
    // Counts calls of SQL functions, so the test can see auth_query use the lookup.
    primary.psql("ALTER DATABASE app SET track_functions = 'all'");
    let log = assert_ok(
        &run_auth_script(
            &primary,
            false,
            &[("PGBOUNCER_AUTH_PASSWORD", AUTH_PASSWORD)],
        ),
        "03-pgbouncer-auth.sh",
    );
    assert!(
        log.contains("pgbouncer.pgbouncer_lookup(text) in app postgres template1"),
        "{log}"
    );
    primary
}

/// Runs `sql` as the superuser in `dbname`, through the server's socket.
fn in_database(primary: &TcpServer, dbname: &str, sql: &str) -> Result<String, String> {
    try_psql(
        &primary.bin(),
        &primary.server.socket_dir(),
        primary.port,
        &["-d", dbname],
        sql,
    )
}

/// Runs 03-pgbouncer-auth.sh as the base entrypoint would (the server's user, POSTGRES_USER
/// and POSTGRES_DB), pointed at the server's socket: executed by sh, or, when `sourced`,
/// sourced by bash with docker-entrypoint.sh's options (what it does with a script that is
/// not executable, as the one the stack mounts).
fn run_auth_script(primary: &TcpServer, sourced: bool, env: &[(&str, &str)]) -> Output {
    let script = repo_root().join(AUTH_SCRIPT);
    let mut cmd = if sourced {
        let mut cmd = as_user(Path::new("/bin/bash"));
        cmd.args([
            "-c",
            "set -Eeo pipefail; . \"$1\"; echo \"still here, u=$-\"",
            "bash",
        ]);
        cmd
    } else {
        as_user(Path::new("/bin/sh"))
    };
    cmd.arg(&script);
    cmd.env("PATH", format!("{}:/usr/bin:/bin", primary.bin().display()))
        .env("PGHOST", primary.server.socket_dir())
        .env("PGPORT", primary.port.to_string())
        .env("POSTGRES_USER", "postgres")
        .env("POSTGRES_DB", "app")
        .envs(env.iter().copied());
    cmd.output().unwrap()
}

/// Who runs the entrypoint: the unprivileged user itself, or root (pgbouncer then
/// switches to PGBOUNCER_RUN_AS, the same unprivileged user).
#[derive(Clone, Copy)]
enum Identity {
    Unprivileged,
    Root,
}

impl Identity {
    fn command(self, program: &Path) -> Command {
        match self {
            Identity::Unprivileged => as_user(program),
            Identity::Root => {
                let mut cmd = Command::new(program);
                cmd.env_clear().env("LANG", "C");
                cmd
            }
        }
    }
}

/// A directory for one PgBouncer: home/ (.pgpass), conf/ (rendered files), sock/ (unix
/// socket), log; owned by the unprivileged user.
fn bouncer_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("azb-pgbouncer-")
        .tempdir()
        .unwrap();
    fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for sub in ["home", "conf", "sock"] {
        fs_err::create_dir(dir.path().join(sub)).unwrap();
    }
    check(
        Command::new("chown")
            .args(["-R", &format!("{USER}:{USER}")])
            .arg(dir.path()),
        "chown",
    );
    dir
}

/// The stack's entrypoint.sh with the environment a test gives it: files in `dir`, server
/// on 127.0.0.1:`server_port`, listening on 127.0.0.1:`port`; `env` adds or overrides.
fn entrypoint(
    identity: Identity,
    dir: &Path,
    server_port: u16,
    port: u16,
    env: &[(&str, &str)],
) -> Command {
    let mut cmd = identity.command(Path::new("/bin/sh"));
    cmd.arg(repo_root().join(ENTRYPOINT))
        .env("PATH", "/usr/sbin:/usr/bin:/bin")
        .env("HOME", dir.join("home"))
        .env("POSTGRES_HOST", "127.0.0.1")
        .env("POSTGRES_PORT", server_port.to_string())
        .env("POSTGRES_DB", "app")
        .env("PGBOUNCER_AUTH_PASSWORD", AUTH_PASSWORD)
        .env("PGBOUNCER_LISTEN_ADDR", "127.0.0.1")
        .env("PGBOUNCER_PORT", port.to_string())
        .env("PGBOUNCER_UNIX_SOCKET_DIR", dir.join("sock"))
        .env("PGBOUNCER_CONFIG_DIR", dir.join("conf"))
        .env("PGBOUNCER_RUN_AS", "nobody")
        .envs(env.iter().copied());
    cmd
}

/// Debian's pgbouncer, started by the stack's entrypoint in front of a primary; killed when
/// dropped.
struct Bouncer {
    dir: tempfile::TempDir,
    port: u16,
    identity: Identity,
    /// The psql (and its libpq 18) that clients use.
    bin: PathBuf,
    child: Child,
}

impl Bouncer {
    /// Starts it and waits until it accepts TCP connections.
    fn start(primary: &TcpServer, identity: Identity, env: &[(&str, &str)]) -> Self {
        let dir = bouncer_dir();
        let port = free_port();
        let log = dir.path().join("log");
        let mut child = entrypoint(identity, dir.path(), primary.port, port, env)
            .stdout(Stdio::null())
            .stderr(fs_err::File::create(&log).unwrap().into_parts().0)
            .spawn()
            .unwrap();
        let read_log = || fs_err::read_to_string(&log).unwrap_or_default();
        wait_for("pgbouncer listening", "up", &read_log, || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("pgbouncer exited ({status}):\n{}", read_log());
            }
            TcpStream::connect(("127.0.0.1", port))
                .map(|_| "up".to_owned())
                .map_err(|e| e.to_string())
        });
        Self {
            dir,
            port,
            identity,
            bin: primary.bin(),
            child,
        }
    }

    fn log(&self) -> String {
        fs_err::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn file(&self, path: &str) -> PathBuf {
        self.dir.path().join(path)
    }

    /// Logs in as `user` with `password` through PgBouncer's port to database `dbname`,
    /// insisting on SCRAM-SHA-256, and runs `sql`.
    fn psql_as(
        &self,
        user: &str,
        password: &str,
        dbname: &str,
        sql: &str,
    ) -> Result<String, String> {
        connect(&self.bin, self.port, user, password, dbname, sql)
    }

    /// The stack's healthcheck.sh, run by the entrypoint's user with its $HOME (.pgpass).
    fn healthcheck(&self, env: &[(&str, &str)]) -> Output {
        self.identity
            .command(Path::new("/bin/sh"))
            .arg(repo_root().join(HEALTHCHECK))
            .env("PATH", format!("{}:/usr/bin:/bin", self.bin.display()))
            .env("HOME", self.file("home"))
            .env("PGBOUNCER_PORT", self.port.to_string())
            .env("POSTGRES_DB", "app")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// A query on PgBouncer's admin console (user `pgbouncer` over its unix socket, which
    /// the user pgbouncer runs as may use), as CSV.
    fn admin(&self, sql: &str) -> String {
        check(
            as_user(&self.bin.join("psql"))
                .args(["-X", "--csv", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(self.file("sock"))
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "pgbouncer",
                    "-d",
                    "pgbouncer",
                    "-c",
                    sql,
                ]),
            &format!("admin console: {sql}"),
        )
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// psql over TCP to 127.0.0.1:`port` with only `password` (no password file), requiring
/// SCRAM-SHA-256 from whatever answers.
fn connect(
    bin: &Path,
    port: u16,
    user: &str,
    password: &str,
    dbname: &str,
    sql: &str,
) -> Result<String, String> {
    let out = Command::new(bin.join("psql"))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .arg(format!(
            "host=127.0.0.1 port={port} user={user} dbname={dbname} require_auth=scram-sha-256"
        ))
        .arg("-c")
        .arg(sql)
        .env("PGPASSWORD", password)
        .env("PGPASSFILE", "/dev/null")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap().trim().to_owned())
    } else {
        Err(stderr(&out))
    }
}

#[test]
fn an_application_role_logs_in_through_pgbouncer_by_auth_query_alone() {
    let primary = auth_server();
    let bouncer = Bouncer::start(&primary, Identity::Unprivileged, &[]);

    // SCRAM through PgBouncer, which logs in to the server (SCRAM over TCP) as `app`.
    assert_eq!(
        bouncer
            .psql_as(
                "app",
                APP_PASSWORD,
                "app",
                "SELECT current_user, current_database(), inet_server_port()"
            )
            .unwrap_or_else(|e| panic!("{e}\n{}", bouncer.log())),
        format!("app|app|{}", primary.port)
    );
    // PgBouncer found `app` by calling the lookup function.
    wait_for(
        "the lookup function called in app",
        "app|t",
        &|| bouncer.log(),
        || {
            in_database(
                &primary,
                "app",
                "SELECT current_database(), calls > 0 FROM pg_stat_user_functions \
                 WHERE schemaname = 'pgbouncer' AND funcname = 'pgbouncer_lookup'",
            )
        },
    );
    // `app` is in no file PgBouncer reads: the auth_file holds the auth user alone.
    let userlist = fs_err::read_to_string(bouncer.file("conf/userlist.txt")).unwrap();
    assert_eq!(
        userlist,
        format!(
            "\"pgbouncer_auth\" \"{}\"\n",
            AUTH_PASSWORD.replace('"', "\"\"")
        )
    );
    let ini = fs_err::read_to_string(bouncer.file("conf/pgbouncer.ini")).unwrap();
    let settings: Vec<&str> = ini
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .collect();
    for line in [
        "auth_type = scram-sha-256",
        "auth_user = pgbouncer_auth",
        "auth_query = SELECT * FROM pgbouncer.pgbouncer_lookup($1)",
        &format!(
            "auth_file = {}",
            bouncer.file("conf/userlist.txt").display()
        ),
        "pool_mode = transaction",
    ] {
        assert!(settings.contains(&line), "{line} not in\n{ini}");
    }
    assert!(!settings.iter().any(|l| l.contains("app")), "{ini}");
    assert!(!settings.contains(&"[users]"), "{ini}");

    // A wrong password, an unknown role and a superuser are all refused.
    let wrong = bouncer
        .psql_as("app", "ap:p\\pa@ss", "app", "SELECT 1")
        .unwrap_err();
    assert!(wrong.contains("SASL authentication failed"), "{wrong}");
    let unknown = bouncer
        .psql_as("nobody_here", APP_PASSWORD, "app", "SELECT 1")
        .unwrap_err();
    assert!(unknown.contains("no such user"), "{unknown}");
    primary.psql(&format!(
        "ALTER ROLE postgres PASSWORD {}",
        literal(APP_PASSWORD)
    ));
    let superuser = bouncer
        .psql_as("postgres", APP_PASSWORD, "app", "SELECT 1")
        .unwrap_err();
    assert!(superuser.contains("no such user"), "{superuser}");

    // The .pgpass: 0600, `:` and `\` escaped and nothing else, one line for the server and
    // one for PgBouncer; libpq reads it (straight to the server, and through PgBouncer in
    // the health check).
    let pgpass = bouncer.file("home/.pgpass");
    assert_eq!(
        fs_err::metadata(&pgpass).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let field = pgpass_field(AUTH_PASSWORD);
    assert_eq!(field, r#"au\\th\:"q" 'q' @&\: \\\\ x"#);
    assert_eq!(
        fs_err::read_to_string(&pgpass).unwrap(),
        format!(
            "127.0.0.1:{}:*:pgbouncer_auth:{field}\n*:{}:*:pgbouncer_auth:{field}\n",
            primary.port, bouncer.port
        )
    );
    let direct = as_user(&primary.bin().join("psql"))
        .args(["-X", "-A", "-t", "-w"])
        .arg(format!(
            "host=127.0.0.1 port={} user=pgbouncer_auth dbname=app require_auth=scram-sha-256",
            primary.port
        ))
        .args(["-c", "SELECT current_user"])
        .env("PGPASSFILE", &pgpass)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&direct.stdout).trim(),
        "pgbouncer_auth",
        "{}",
        stderr(&direct)
    );
    assert_ok(&bouncer.healthcheck(&[]), "healthcheck.sh");
}

#[test]
fn pgbouncer_auth_alone_runs_the_lookup_and_cannot_read_pg_shadow() {
    let primary = auth_server();
    // Databases made later get the function from template1.
    primary.psql("CREATE DATABASE later");
    let as_auth = |password: &str, dbname: &str, sql: &str| {
        connect(
            &primary.bin(),
            primary.port,
            "pgbouncer_auth",
            password,
            dbname,
            sql,
        )
    };

    assert_eq!(
        primary.psql(
            "SELECT rolcanlogin, rolconnlimit, rolsuper, rolcreatedb, rolcreaterole, \
             rolinherit, rolreplication, rolbypassrls, left(rolpassword, 14) \
             FROM pg_authid WHERE rolname = 'pgbouncer_auth'"
        ),
        "t|10|f|f|f|f|f|f|SCRAM-SHA-256$"
    );
    let denied = as_auth(AUTH_PASSWORD, "app", "SELECT count(*) FROM pg_shadow").unwrap_err();
    assert!(
        denied.contains("permission denied for view pg_shadow"),
        "{denied}"
    );
    for dbname in ["app", "postgres", "template1", "later"] {
        let function = "'pgbouncer.pgbouncer_lookup(text)'";
        assert_eq!(
            in_database(
                &primary,
                dbname,
                &format!(
                    "SELECT current_database(), p.prosecdef, p.proconfig::text, \
                     has_function_privilege('public', {function}, 'EXECUTE'), \
                     has_function_privilege('app', {function}, 'EXECUTE'), \
                     has_function_privilege('pgbouncer_auth', {function}, 'EXECUTE'), \
                     has_schema_privilege('public', 'pgbouncer', 'USAGE') \
                     FROM pg_proc p WHERE p.oid = {function}::regprocedure"
                ),
            )
            .unwrap(),
            format!("{dbname}|t|{{\"search_path=pg_catalog, pg_temp\"}}|f|f|t|f"),
            "{dbname}"
        );
        if dbname == "template1" {
            continue;
        }
        // The SCRAM verifier of a role that can log in; nothing for a superuser or a role
        // that does not exist.
        assert_eq!(
            as_auth(
                AUTH_PASSWORD,
                dbname,
                "SELECT usename, left(passwd, 14) FROM pgbouncer.pgbouncer_lookup('app') \
                 UNION ALL SELECT usename, passwd FROM pgbouncer.pgbouncer_lookup('postgres') \
                 UNION ALL SELECT usename, passwd FROM pgbouncer.pgbouncer_lookup('none')"
            )
            .unwrap(),
            "app|SCRAM-SHA-256$",
            "{dbname}"
        );
    }
    // Anyone else (here `app`) is stopped at the schema.
    let app = connect(
        &primary.bin(),
        primary.port,
        "app",
        APP_PASSWORD,
        "app",
        "SELECT * FROM pgbouncer.pgbouncer_lookup('app')",
    )
    .unwrap_err();
    assert!(
        app.contains("permission denied for schema pgbouncer"),
        "{app}"
    );

    // Run again, sourced as docker-entrypoint.sh does with a script that is not executable:
    // the new password replaces the old one, and the sourcing shell goes on.
    let new_password = r#"n3w:"pass"\word"#;
    let out = run_auth_script(&primary, true, &[("PGBOUNCER_AUTH_PASSWORD", new_password)]);
    assert_ok(&out, "03-pgbouncer-auth.sh sourced");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("still here, u="), "{said}");
    assert!(
        !said
            .trim_end()
            .split('=')
            .next_back()
            .unwrap()
            .contains('u'),
        "set -u leaked: {said}"
    );
    assert_eq!(
        as_auth(new_password, "app", "SELECT current_user").unwrap(),
        "pgbouncer_auth"
    );
    let old = as_auth(AUTH_PASSWORD, "app", "SELECT 1").unwrap_err();
    assert!(old.contains("password authentication failed"), "{old}");
    assert_eq!(
        primary.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'pgbouncer_auth'"),
        "1"
    );
}

#[test]
fn the_healthcheck_reaches_the_database_through_pgbouncer_and_fails_without_it() {
    let primary = auth_server();
    // Started by root, as in a container whose user is root; pgbouncer drops to `nobody`.
    let bouncer = Bouncer::start(&primary, Identity::Root, &[]);
    let owner = check(
        Command::new("ps").args(["-o", "user=", "-p", &bouncer.child.id().to_string()]),
        "ps",
    );
    assert_eq!(owner.trim(), "nobody");

    let ok = bouncer.healthcheck(&[]);
    assert_ok(&ok, "healthcheck.sh");
    assert!(
        ok.stdout.is_empty() && ok.stderr.is_empty(),
        "{}",
        stderr(&ok)
    );
    // A database the server does not have: unhealthy, so it is the server that answers.
    let missing = bouncer.healthcheck(&[("POSTGRES_DB", "nosuchdb")]);
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("database \"nosuchdb\" does not exist"),
        "{}",
        stderr(&missing)
    );

    // The server goes away: unhealthy within the check's own time limit, each time.
    primary.server.pg_ctl(&["stop", "-m", "fast"]);
    for attempt in 1..=2 {
        let started = Instant::now();
        let down = bouncer.healthcheck(&[("PGBOUNCER_HEALTHCHECK_TIMEOUT", "2")]);
        let took = started.elapsed();
        assert_eq!(
            down.status.code(),
            Some(1),
            "attempt {attempt}: {}",
            stderr(&down)
        );
        assert!(
            stderr(&down).contains("through PgBouncer"),
            "attempt {attempt}: {}",
            stderr(&down)
        );
        assert!(
            took < Duration::from_secs(20),
            "attempt {attempt} took {took:?}"
        );
    }
    assert!(
        TcpStream::connect(("127.0.0.1", bouncer.port)).is_ok(),
        "pgbouncer itself stays up:\n{}",
        bouncer.log()
    );
}

/// An open psql session through PgBouncer: queries go in on stdin, answers come back one
/// line each.
struct Session {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Session {
    fn open(bouncer: &Bouncer) -> Self {
        let mut child = Command::new(bouncer.bin.join("psql"))
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg(format!(
                "host=127.0.0.1 port={} user=app dbname=app require_auth=scram-sha-256",
                bouncer.port
            ))
            .env("PGPASSWORD", APP_PASSWORD)
            .env("PGPASSFILE", "/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if send.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// Runs a one-value query and returns its answer; fails when none comes within a
    /// minute (a session pool would keep the second client waiting for the first).
    fn query(&mut self, sql: &str) -> String {
        writeln!(self.stdin, "{sql};").unwrap();
        self.stdin.flush().unwrap();
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no answer to {sql}: {e}"))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn transaction_pooling_shares_one_server_connection_between_two_clients() {
    let primary = auth_server();
    let bouncer = Bouncer::start(
        &primary,
        Identity::Unprivileged,
        &[
            ("PGBOUNCER_DEFAULT_POOL_SIZE", "1"),
            ("PGBOUNCER_RESERVE_POOL_SIZE", "0"),
        ],
    );
    // Two clients stay connected; one server connection serves both, in turn.
    let mut first = Session::open(&bouncer);
    let mut second = Session::open(&bouncer);
    let pid = first.query("SELECT pg_backend_pid()");
    assert_eq!(second.query("SELECT pg_backend_pid()"), pid);
    assert_eq!(first.query("SELECT pg_backend_pid()"), pid);
    assert_eq!(
        primary.psql("SELECT count(*), max(pid) FROM pg_stat_activity WHERE usename = 'app'"),
        format!("1|{pid}")
    );
    // PgBouncer says so too: two clients, one server, transaction pooling.
    let pools = bouncer.admin("SHOW POOLS");
    let header: Vec<&str> = pools.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = pools
        .lines()
        .find(|l| l.starts_with("app,app,"))
        .unwrap_or_else(|| panic!("no pool app/app:\n{pools}"))
        .split(',')
        .collect();
    let column = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(column("pool_mode"), "transaction", "{pools}");
    assert_eq!(column("cl_active"), "2", "{pools}");
    let servers: u32 = ["sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"]
        .iter()
        .map(|name| column(name).parse::<u32>().unwrap())
        .sum();
    assert_eq!(servers, 1, "{pools}");
}

#[test]
fn bad_input_to_the_entrypoint_exits_1_with_its_message() {
    for (env, message) in [
        (
            vec![("PGBOUNCER_AUTH_PASSWORD", "")],
            "PGBOUNCER_AUTH_PASSWORD is not set",
        ),
        (
            vec![("PGBOUNCER_AUTH_PASSWORD", "two\nlines")],
            "PGBOUNCER_AUTH_PASSWORD contains a newline",
        ),
        (
            vec![("PGBOUNCER_PORT", "64x2")],
            "PGBOUNCER_PORT must be a whole number, got '64x2'",
        ),
        (
            vec![("POSTGRES_PORT", "5432 ")],
            "POSTGRES_PORT must be a whole number, got '5432 '",
        ),
        (
            vec![("POSTGRES_HOST", "db;rm")],
            "POSTGRES_HOST must be letters, digits",
        ),
        (
            vec![("PGBOUNCER_AUTH_PASSWORD_FILE", "/nonexistent/password")],
            "both PGBOUNCER_AUTH_PASSWORD and PGBOUNCER_AUTH_PASSWORD_FILE are set",
        ),
    ] {
        let dir = bouncer_dir();
        // Were a case let through, `true` stands in for pgbouncer and the test fails at
        // once instead of waiting on a server.
        let out = entrypoint(Identity::Unprivileged, dir.path(), 1, 1, &env)
            .env("PGBOUNCER_BIN", "true")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{env:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("pgbouncer-entrypoint: error: "), "{err}");
        assert!(err.contains(message), "{env:?}: {err}");
        // Nothing written.
        for sub in ["home", "conf"] {
            assert_eq!(
                fs_err::read_dir(dir.path().join(sub)).unwrap().count(),
                0,
                "{sub}"
            );
        }
    }
    // The init script refuses to run without the password, before touching any server.
    let out = Command::new("/bin/sh")
        .arg(repo_root().join(AUTH_SCRIPT))
        .env_clear()
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("03-pgbouncer-auth: error: PGBOUNCER_AUTH_PASSWORD is not set"),
        "{}",
        stderr(&out)
    );
}
