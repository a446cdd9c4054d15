//! The Compose stacks brought up for real (issue 10): azb builds the PostgreSQL image (with
//! the azb_hello fixture) and both companion images (stacks/pgbouncer.ron,
//! stacks/exporter.ron), `docker load`s them, and docker-compose starts each stack from a
//! copy of stacks/ under its own project name, ports and volumes, removed afterwards. A
//! client on the host then talks to what runs: SCRAM logins, autoconfig's settings,
//! PgBouncer's auth_query and pooling, the exporter's custom metrics, streaming
//! replication across a primary restart, and data that outlives `down`/`up`.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::context::{TestContext, copy_dir, repo_root, run, shared, shared_lock, stderr};
use crate::postgres::free_port;

/// The three images, loaded into Docker under names of this test process.
struct Images {
    postgres: String,
    pgbouncer: String,
    exporter: String,
}

/// Builds the images once per test process (amd64) and loads them, with `azb stack load`.
fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        shared();
        let lock = shared_lock();
        let ctx = TestContext::new();
        let tag = format!("live{}", std::process::id());
        ctx.write_image(&["linux/amd64"]);
        let image_ron = ctx.root().join("stacks/image.ron");
        let text = fs_err::read_to_string(&image_ron).unwrap().replace(
            "name: \"azb/test\"",
            &format!("name: \"azb-{tag}/postgres\""),
        );
        fs_err::write(&image_ron, text).unwrap();
        ctx.add_companions(&tag);
        fs_err::write(ctx.root().join("builders.lock"), lock).unwrap();
        let commit = ctx.commit_fixture("azb_hello", &[]);
        ctx.write_recipe(crate::context::RecipeSpec::new("azb_hello", commit));
        // The project's primary stack names this process's images, so `azb stack load`
        // finds the three definitions that make them.
        let compose = ctx.root().join("stacks/primary/compose.yml");
        let text = fs_err::read_to_string(&compose).unwrap();
        assert!(text.contains(":-azb/pgbouncer:latest}"), "{text}");
        fs_err::write(&compose, text.replace(":-azb/", &format!(":-azb-{tag}/"))).unwrap();
        let loaded = ctx.ok(&["stack", "load", "primary", "--platform", "amd64"]);
        let images = Images {
            postgres: format!("azb-{tag}/postgres:18"),
            pgbouncer: format!("azb-{tag}/pgbouncer:latest"),
            exporter: format!("azb-{tag}/postgres-exporter:latest"),
        };
        for reference in [&images.postgres, &images.pgbouncer, &images.exporter] {
            assert!(
                loaded.lines().any(|l| l == reference),
                "{reference}: {loaded}"
            );
        }
        images
    })
}

/// PostgreSQL 18's psql from the shared toolchain.
fn psql_bin() -> PathBuf {
    shared().toolchains.join("pg18-amd64/bin/psql")
}

/// `psql` on the host to 127.0.0.1:`port` as `user` with `password`; the output, or the
/// error text.
fn try_psql(port: u16, user: &str, password: &str, db: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(psql_bin())
        .args([
            "-X",
            "-w",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .arg("-p")
        .arg(port.to_string())
        .args(["-U", user, "-d", db, "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .env("PGREQUIREAUTH", "scram-sha-256")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(stderr(&out))
    }
}

/// Polls `check` until it returns Some, for at most `limit`.
fn wait_until<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One stack, copied from stacks/<name>, brought up under its own project name; taken down
/// with its volumes when dropped.
struct Stack {
    dir: tempfile::TempDir,
    name: &'static str,
    project: String,
    files: Vec<&'static str>,
}

impl Stack {
    /// A copy of stacks/`name` (and the runtime files it mounts) with `.env` holding
    /// `env`, composed of `files`.
    fn new(name: &'static str, files: &[&'static str], env: &[(&str, String)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("azb-stack-")
            .tempdir()
            .unwrap();
        copy_dir(&repo_root().join("stacks"), dir.path());
        let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        fs_err::write(dir.path().join(name).join(".env"), text).unwrap();
        let project = format!(
            "azb{}{name}{}",
            std::process::id(),
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "")
        );
        Self {
            dir,
            name,
            project,
            files: files.to_vec(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join(self.name)
    }

    fn compose(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker-compose");
        cmd.current_dir(self.path()).args(["-p", &self.project]);
        for file in &self.files {
            cmd.args(["-f", file]);
        }
        cmd.args(args).output().unwrap()
    }

    fn compose_ok(&self, args: &[&str]) -> String {
        let out = self.compose(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?} ({}) failed:\n{}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `up -d`, then waits until every long-running container's health check passes (the
    /// one-shot checks have exited 0 by then); fails with the logs when one does not
    /// within `limit`. Returns how long that took.
    fn up(&self, limit: Duration) -> Duration {
        let start = Instant::now();
        self.compose_ok(&["up", "-d"]);
        let ids: Vec<String> = self
            .compose_ok(&["ps", "-q"])
            .lines()
            .map(str::to_owned)
            .collect();
        assert!(!ids.is_empty(), "{}: no containers", self.name);
        loop {
            let states = run(Command::new("docker")
                .args([
                    "inspect",
                    "-f",
                    "{{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
                ])
                .args(&ids));
            if states
                .lines()
                .all(|l| l == "running 0 healthy" || l == "exited 0 none")
            {
                return start.elapsed();
            }
            if start.elapsed() > limit {
                let logs = self.compose(&["logs", "--no-color"]);
                panic!(
                    "{}: not healthy within {limit:?}: {states}\n{}",
                    self.name,
                    String::from_utf8_lossy(&logs.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The container id of `service`.
    fn container(&self, service: &str) -> String {
        self.compose_ok(&["ps", "-q", service]).trim().to_owned()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--remove-orphans", "-t", "5"]);
    }
}

/// The superuser's password: quotes, `$`, `:` and a space.
const PASSWORD: &str = "pw-'quoted' $and:colon";

/// The primary stack's: postgres_exporter 0.11 cannot use a password with a quote, a
/// backslash or white space (its entrypoint refuses one, which the primary test checks).
const PRIMARY_PASSWORD: &str = "pw$and:colon@at=eq";

/// The `.env` of a primary stack on fresh ports.
fn primary_env(images: &Images) -> Vec<(&'static str, String)> {
    vec![
        ("AZB_IMAGE", images.postgres.clone()),
        ("PGBOUNCER_IMAGE", images.pgbouncer.clone()),
        ("EXPORTER_IMAGE", images.exporter.clone()),
        ("POSTGRES_PASSWORD", PRIMARY_PASSWORD.to_owned()),
        ("REPLICATION_PASSWORD", "replication-pw".to_owned()),
        ("PGBOUNCER_AUTH_PASSWORD", "bouncer-pw".to_owned()),
        ("POSTGRES_PORT", free_port().to_string()),
        ("PGBOUNCER_PORT", free_port().to_string()),
        ("EXPORTER_PORT", free_port().to_string()),
        ("POSTGRES_MEMORY", "1024".to_owned()),
    ]
}

fn port(env: &[(&str, String)], name: &str) -> u16 {
    env.iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.parse().unwrap())
        .unwrap()
}

#[test]
fn the_single_stack_serves_scram_logins_with_autoconfigs_settings_and_keeps_its_data() {
    let images = images();
    let port = free_port();
    let env = vec![
        ("AZB_IMAGE", images.postgres.clone()),
        ("POSTGRES_PASSWORD", PASSWORD.to_owned()),
        ("POSTGRES_PORT", port.to_string()),
        ("POSTGRES_MEMORY", "1024".to_owned()),
    ];
    let stack = Stack::new("single", &["compose.yml"], &env);
    let took = stack.up(Duration::from_secs(180));
    eprintln!("single: healthy {:.1} s after `up`", took.as_secs_f64());
    let sql = |q: &str| try_psql(port, "postgres", PASSWORD, "postgres", q);
    assert_eq!(sql("SELECT 1").unwrap(), "1");
    let wrong = try_psql(port, "postgres", "wrong", "postgres", "SELECT 1").unwrap_err();
    assert!(wrong.contains("password authentication failed"), "{wrong}");
    assert!(
        sql("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'postgres'")
            .unwrap()
            == "t"
    );
    // The running server is sized as `azb autoconfig` says for the stack's memory and the
    // container's CPUs.
    let cpus = run(Command::new("docker").args(["exec", &stack.container("postgres"), "nproc"]));
    let want = run(Command::new(env!("CARGO_BIN_EXE_azb"))
        .args([
            "autoconfig",
            "--memory",
            "1024",
            "--workload",
            "web",
            "--cpus",
        ])
        .arg(cpus.trim()));
    let mut compared = 0;
    for line in want.lines() {
        let (name, value) = line.split_once(" = ").unwrap();
        if [
            "shared_buffers",
            "effective_cache_size",
            "maintenance_work_mem",
            "work_mem",
            "max_connections",
            "max_worker_processes",
            "max_parallel_workers",
        ]
        .contains(&name)
        {
            assert_eq!(sql(&format!("SHOW {name}")).unwrap(), value, "{name}");
            compared += 1;
        }
    }
    assert_eq!(compared, 7, "{want}");
    // Data lives in the volume: `down` (keeping volumes) and `up` again.
    sql("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')").unwrap();
    stack.compose_ok(&["down", "-t", "10"]);
    stack.up(Duration::from_secs(180));
    assert_eq!(sql("SELECT v FROM kept").unwrap(), "still here");
}

#[test]
fn the_primary_stack_pools_through_pgbouncer_and_exports_its_custom_metrics() {
    let images = images();
    let env = primary_env(images);
    let stack = Stack::new("primary", &["compose.yml"], &env);
    let took = stack.up(Duration::from_secs(240));
    eprintln!("primary: healthy {:.1} s after `up`", took.as_secs_f64());
    let (pg, bouncer, exporter) = (
        port(&env, "POSTGRES_PORT"),
        port(&env, "PGBOUNCER_PORT"),
        port(&env, "EXPORTER_PORT"),
    );
    // An application role PgBouncer knows nothing of: auth_query finds its verifier.
    try_psql(
        pg,
        "postgres",
        PRIMARY_PASSWORD,
        "postgres",
        "CREATE ROLE app LOGIN PASSWORD 'app-pw'",
    )
    .unwrap();
    let through = |sql: &str| try_psql(bouncer, "app", "app-pw", "postgres", sql);
    assert_eq!(through("SELECT current_user").unwrap(), "app");
    let refused = try_psql(bouncer, "app", "not-it", "postgres", "SELECT 1").unwrap_err();
    // PgBouncer's own SCRAM exchange says so in its words.
    assert!(refused.contains("SASL authentication failed"), "{refused}");
    // Transaction pooling: separate client connections run on one server connection.
    let pids: Vec<String> = (0..3)
        .map(|_| through("SELECT pg_backend_pid()").unwrap())
        .collect();
    assert!(pids.windows(2).all(|w| w[0] == w[1]), "{pids:?}");
    // The exporter serves the stack's custom queries.
    let metrics = run(Command::new("curl")
        .args(["-sf", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{exporter}/metrics")));
    // A sample: `NAME{labels} VALUE` or `NAME VALUE`.
    let value = |name: &str| {
        metrics.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?;
            let rest = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            Some(rest.trim().to_owned())
        })
    };
    let shown: Vec<&str> = metrics.lines().filter(|l| l.starts_with("azb_")).collect();
    assert_eq!(value("pg_up").as_deref(), Some("1"), "{shown:?}");
    assert_eq!(
        value("azb_replication_is_replica").as_deref(),
        Some("0"),
        "{shown:?}"
    );
    let shared_buffers = value("azb_memory_settings_bytes").expect("azb_memory_settings_bytes");
    assert!(shared_buffers.parse::<f64>().unwrap() > 0.0, "{shown:?}");
    // A password the exporter cannot use is refused with a message, not a bare crash.
    let refused = Command::new("docker")
        .args([
            "run",
            "--rm",
            "-e",
            "DATA_SOURCE_PASS=it's",
            &images.exporter,
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(78), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("postgres_exporter 0.11 cannot use"),
        "{}",
        stderr(&refused)
    );
    // The companions run as the users their images name, not root.
    for (service, user) in [("pgbouncer", "postgres"), ("exporter", "nobody")] {
        let who =
            run(Command::new("docker").args(["exec", &stack.container(service), "id", "-un"]));
        assert_eq!(who.trim(), user, "{service}");
    }
}

#[test]
fn a_replica_stack_streams_from_the_primary_stack_refuses_writes_and_catches_up() {
    let images = images();
    let env = primary_env(images);
    let primary = Stack::new("primary", &["compose.yml"], &env);
    primary.up(Duration::from_secs(240));
    let pg = port(&env, "POSTGRES_PORT");
    let replica_port = free_port();
    let replica = Stack::new(
        "replica",
        &["compose.yml", "compose.dev.yml"],
        &[
            ("AZB_IMAGE", images.postgres.clone()),
            ("PRIMARY_HOST", "postgres".to_owned()),
            ("PRIMARY_NETWORK", format!("{}_default", primary.project)),
            ("REPLICATION_PASSWORD", "replication-pw".to_owned()),
            ("REPLICA_PORT", replica_port.to_string()),
            ("POSTGRES_MEMORY", "1024".to_owned()),
        ],
    );
    let took = replica.up(Duration::from_secs(240));
    eprintln!("replica: healthy {:.1} s after `up`", took.as_secs_f64());
    let on_primary = |sql: &str| try_psql(pg, "postgres", PRIMARY_PASSWORD, "postgres", sql);
    let on_replica =
        |sql: &str| try_psql(replica_port, "postgres", PRIMARY_PASSWORD, "postgres", sql);
    assert_eq!(
        on_primary("SELECT state FROM pg_stat_replication").unwrap(),
        "streaming"
    );
    assert_eq!(on_replica("SELECT pg_is_in_recovery()").unwrap(), "t");
    on_primary("CREATE TABLE t (v int); INSERT INTO t VALUES (1)").unwrap();
    let seen = |want: &'static str| {
        move || {
            on_replica("SELECT string_agg(v::text, ',' ORDER BY v) FROM t")
                .ok()
                .filter(|got| got == want)
        }
    };
    wait_until(Duration::from_secs(30), "row 1 on the replica", seen("1"));
    let refused = on_replica("INSERT INTO t VALUES (9)").unwrap_err();
    assert!(refused.contains("read-only transaction"), "{refused}");
    // The primary restarts; the replica reconnects and replays what came after.
    primary.compose_ok(&["restart", "-t", "10", "postgres"]);
    wait_until(Duration::from_secs(60), "the primary back", || {
        on_primary("INSERT INTO t VALUES (2)").ok()
    });
    wait_until(Duration::from_secs(60), "row 2 on the replica", seen("1,2"));
    wait_until(Duration::from_secs(60), "streaming again", || {
        on_primary("SELECT state FROM pg_stat_replication")
            .ok()
            .filter(|s| s == "streaming")
    });
}

#[test]
fn a_bad_env_stops_up_with_the_stacks_own_message_and_starts_no_server() {
    let images = images();
    // A memory size that is not one.
    let env = vec![
        ("AZB_IMAGE", images.postgres.clone()),
        ("POSTGRES_PASSWORD", PASSWORD.to_owned()),
        ("POSTGRES_PORT", free_port().to_string()),
        ("POSTGRES_MEMORY", "lots".to_owned()),
    ];
    let stack = Stack::new("single", &["compose.yml"], &env);
    let up = stack.compose(&["up", "-d"]);
    assert!(!up.status.success(), "up accepted POSTGRES_MEMORY=lots");
    assert!(
        stderr(&up).contains("exited with code 78"),
        "{}",
        stderr(&up)
    );
    let logs = stack.compose_ok(&["logs", "--no-color", "config-check"]);
    assert!(
        logs.contains("POSTGRES_MEMORY must be a whole number of megabytes, got 'lots'"),
        "{logs}"
    );
    // Not a crash loop: the server's container was never made.
    assert_eq!(stack.compose_ok(&["ps", "-q", "postgres"]).trim(), "");

    // A password the exporter cannot use stops the primary stack before PostgreSQL starts.
    let mut env = primary_env(images);
    for (key, value) in &mut env {
        if *key == "POSTGRES_PASSWORD" {
            *value = "it's".to_owned();
        }
    }
    let stack = Stack::new("primary", &["compose.yml"], &env);
    let up = stack.compose(&["up", "-d"]);
    assert!(!up.status.success(), "up accepted the password");
    let logs = stack.compose_ok(&["logs", "--no-color", "exporter-check"]);
    assert!(logs.contains("postgres_exporter 0.11 cannot use"), "{logs}");
    for service in ["postgres", "pgbouncer", "exporter"] {
        assert_eq!(
            stack.compose_ok(&["ps", "-q", service]).trim(),
            "",
            "{service}"
        );
    }
}
