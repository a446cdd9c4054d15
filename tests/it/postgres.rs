//! A real PostgreSQL 18 server for tests: a hard-linked copy of a toolchain with artifacts
//! unpacked into it, initdb'd and started on a unix socket as an unprivileged user (arm64
//! servers run under qemu-user through binfmt).

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::context::shared;

/// A running server; stopped when dropped.
pub struct PgServer {
    dir: tempfile::TempDir,
    install: PathBuf,
    client: PathBuf,
}

/// The unprivileged user the server runs as (initdb refuses root).
pub const USER: &str = "65534";

pub fn as_user(program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", USER, "--regid", USER, "--clear-groups"])
        .arg(program);
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LANG", "C");
    cmd
}

pub fn check(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl PgServer {
    /// Starts a server from `toolchain` with each artifact tar (prefix-relative paths)
    /// installed; `client` is the toolchain whose psql talks to it.
    pub fn start(toolchain: &Path, client: &Path, artifacts: &[Vec<u8>]) -> Self {
        Self::start_with(toolchain, client, artifacts, &[])
    }

    /// Like [`PgServer::start`], with `settings` passed as `-c name=value`.
    pub fn start_with(
        toolchain: &Path,
        client: &Path,
        artifacts: &[Vec<u8>],
        settings: &[(String, String)],
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("azb-pg-")
            .tempdir()
            .unwrap();
        fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let install = dir.path().join("pg");
        check(
            Command::new("cp").arg("-al").arg(toolchain).arg(&install),
            "link the toolchain",
        );
        for tar in artifacts {
            tar::Archive::new(&tar[..]).unpack(&install).unwrap();
        }
        let run = dir.path().join("run");
        fs_err::create_dir_all(&run).unwrap();
        check(
            Command::new("chown")
                .arg(format!("{USER}:{USER}"))
                .arg(&run),
            "chown",
        );
        let data = run.join("data");
        check(
            as_user(&install.join("bin/initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "--no-sync"]),
            "initdb",
        );
        check(
            as_user(&install.join("bin/pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(run.join("log"))
                .arg("-o")
                .arg(settings.iter().fold(
                    format!("-c listen_addresses='' -k {} -c fsync=off", run.display()),
                    |flags, (k, v)| format!("{flags} -c {k}={v}"),
                ))
                .args(["-w", "-t", "300", "start"]),
            "pg_ctl start",
        );
        Self {
            dir,
            install,
            client: client.to_owned(),
        }
    }

    /// Runs `sql` through psql; returns the unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let run = self.dir.path().join("run");
        check(
            Command::new(self.client.join("bin/psql"))
                .args([
                    "-X",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-h",
                ])
                .arg(&run)
                .arg("-c")
                .arg(sql),
            &format!("psql -c {sql}"),
        )
        .trim()
        .to_owned()
    }
}

impl PgServer {
    /// The data directory (owned by the server's user, uid 65534).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("run/data")
    }

    /// The unix socket directory (`psql -h` this).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// The installation the server runs from (toolchain plus artifacts).
    pub fn install_dir(&self) -> &Path {
        &self.install
    }

    /// Runs `pg_ctl ARGS -D <data>` as the server's user (e.g. `reload`).
    pub fn pg_ctl(&self, args: &[&str]) -> String {
        check(
            as_user(&self.install.join("bin/pg_ctl"))
                .args(args)
                .arg("-D")
                .arg(self.data_dir()),
            &format!("pg_ctl {args:?}"),
        )
    }

    /// `postgres -C name` on this data directory with `settings` as `-c` flags: fails the
    /// test when the server would refuse any of them; returns the value of `name`.
    pub fn check_settings(&self, settings: &[(String, String)], name: &str) -> String {
        let mut cmd = as_user(&self.install.join("bin/postgres"));
        cmd.arg("-D")
            .arg(self.dir.path().join("run/data"))
            .args(["-C", name]);
        for (k, v) in settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        check(&mut cmd, &format!("postgres -C {name}"))
            .trim()
            .to_owned()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = as_user(&self.install.join("bin/pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("run/data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// Creates the three fixtures and checks each function's value.
pub fn check_fixtures(server: &PgServer) {
    server.psql("CREATE EXTENSION azb_hello; CREATE EXTENSION azb_dep; CREATE EXTENSION azb_sql;");
    assert_eq!(server.psql("SELECT azb_hello_add(2, 3)"), "5");
    assert_eq!(server.psql("SELECT azb_hello_greet('azb')"), "hello, azb");
    // The fixture asks for -march=native; azb's compiler wrapper must drop it.
    assert_eq!(server.psql("SELECT azb_hello_cpu()"), "baseline");
    assert_eq!(server.psql("SELECT azb_dep_scaled(2)"), "85");
    assert_eq!(server.psql("SELECT azb_sql_answer()"), "42");
    assert_eq!(
        server
            .psql("SHOW server_version_num")
            .chars()
            .take(2)
            .collect::<String>(),
        "18"
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `psql -A -t` (plus `extra`) as the superuser through a server's socket; the error text
/// when psql fails.
pub fn try_psql(
    bin: &Path,
    socket: &Path,
    port: u16,
    extra: &[&str],
    sql: &str,
) -> Result<String, String> {
    let out = Command::new(bin.join("psql"))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-U", "postgres", "-d", "postgres", "-h"])
        .arg(socket)
        .arg("-p")
        .arg(port.to_string())
        .args(extra)
        .arg("-c")
        .arg(sql)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap().trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Polls `probe` (real queries) until it returns `want`, for at most two minutes; the
/// failure shows `logs`.
pub fn wait_for(
    what: &str,
    want: &str,
    logs: &dyn Fn() -> String,
    mut probe: impl FnMut() -> Result<String, String>,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = probe();
        if got.as_deref() == Ok(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: wanted {want:?}, last got {got:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A PostgreSQL 18 server on 127.0.0.1 (a free port) and its socket, with
/// initdb's `host ... trust` lines removed, so TCP logins need a password as in the image.
pub struct TcpServer {
    pub server: PgServer,
    pub port: u16,
}

impl TcpServer {
    pub fn start() -> Self {
        let toolchain = shared().toolchains.join("pg18-amd64");
        let port = free_port();
        let server = PgServer::start_with(
            &toolchain,
            &toolchain,
            &[],
            &[
                ("listen_addresses".to_owned(), "127.0.0.1".to_owned()),
                ("port".to_owned(), port.to_string()),
            ],
        );
        let hba = server.data_dir().join("pg_hba.conf");
        let kept: String = fs_err::read_to_string(&hba)
            .unwrap()
            .lines()
            .filter(|line| !line.trim_start().starts_with("host"))
            .map(|line| format!("{line}\n"))
            .collect();
        fs_err::write(&hba, kept).unwrap();
        server.pg_ctl(&["reload"]);
        Self { server, port }
    }

    pub fn bin(&self) -> PathBuf {
        self.server.install_dir().join("bin")
    }

    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        try_psql(&self.bin(), &self.server.socket_dir(), self.port, &[], sql)
    }

    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql)
            .unwrap_or_else(|e| panic!("primary: {sql}: {e}"))
    }
}

pub fn assert_ok(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// A `.pgpass` field: `\` and `:` escaped with `\`, nothing else.
pub fn pgpass_field(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}
