//! Streaming replication between two real PostgreSQL 18 servers on loopback: the image's
//! init script (stacks/runtime/initdb.d/02-replication.sh) prepares the primary, the replica
//! stack's entrypoint (stacks/replica/replica-entrypoint.sh) clones it with pg_basebackup and
//! starts the replica, and rows written on the primary appear on the replica. The
//! exporter's custom queries (stacks/primary/exporter/queries.yaml) run on both servers.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::context::{repo_root, shared};
use crate::postgres::{
    TcpServer, USER, as_user, assert_ok, check, free_port, pgpass_field, try_psql, wait_for,
};
use crate::stacks::yaml_to_json;

/// Every character a password file or a connection string could trip over.
const PASSWORD: &str = r#"r3pl:ic\at@or "dq" 'sq' \\: $(id) `id` ; *"#;

impl TcpServer {
    fn hba(&self) -> String {
        fs_err::read_to_string(self.server.data_dir().join("pg_hba.conf")).unwrap()
    }

    /// Runs the real 02-replication.sh as the docker entrypoint would (the server's user,
    /// PGDATA, POSTGRES_USER/DB), pointed at this server's socket through PGHOST/PGPORT.
    fn run_init_script(&self, env: &[(&str, &str)]) -> Output {
        let mut cmd = as_user(Path::new("/bin/sh"));
        cmd.arg(repo_root().join("stacks/runtime/initdb.d/02-replication.sh"))
            .env("PATH", format!("{}:/usr/bin:/bin", self.bin().display()))
            .env("PGHOST", self.server.socket_dir())
            .env("PGPORT", self.port.to_string())
            .env("PGDATA", self.server.data_dir())
            .env("POSTGRES_USER", "postgres")
            .env("POSTGRES_DB", "postgres");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// A replication connection over TCP (`IDENTIFY_SYSTEM`) as `user` with `password`.
    fn replication_login(&self, user: &str, password: &str, dbname: &str) -> Output {
        Command::new(self.bin().join("psql"))
            .arg("-X")
            .arg(format!(
                "host=127.0.0.1 port={} user={user} dbname={dbname} replication={}",
                self.port,
                if dbname == "replication" {
                    "true"
                } else {
                    "false"
                }
            ))
            .args(["-c", "IDENTIFY_SYSTEM"])
            .env("PGPASSWORD", password)
            .env("PGPASSFILE", "/dev/null")
            .output()
            .unwrap()
    }
}

/// A replica made by the real replica-entrypoint.sh: its own copy of the toolchain, a data
/// directory cloned from the primary, started on 127.0.0.1 (a free port); stopped when
/// dropped.
struct Replica {
    dir: tempfile::TempDir,
    port: u16,
}

impl Replica {
    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    fn data_dir(&self) -> PathBuf {
        self.run_dir().join("data")
    }

    fn passfile(&self) -> PathBuf {
        self.run_dir().join("replication.pgpass")
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("pg/bin")
    }

    /// Runs replica-entrypoint.sh as the server's user with the primary's coordinates; the
    /// program it hands over to is pg_ctl, whose arguments start the cloned server.
    fn create(primary: &TcpServer, env: &[(&str, &str)]) -> (Self, Output) {
        let dir = tempfile::Builder::new()
            .prefix("azb-replica-")
            .tempdir()
            .unwrap();
        fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        check(
            Command::new("cp")
                .arg("-al")
                .arg(shared().toolchains.join("pg18-amd64"))
                .arg(dir.path().join("pg")),
            "link the toolchain",
        );
        let replica = Self {
            dir,
            port: free_port(),
        };
        let run = replica.run_dir();
        fs_err::create_dir_all(&run).unwrap();
        check(
            Command::new("chown")
                .arg(format!("{USER}:{USER}"))
                .arg(&run),
            "chown",
        );
        let mut cmd = as_user(Path::new("/bin/sh"));
        cmd.arg(repo_root().join("stacks/replica/replica-entrypoint.sh"))
            .arg("-D")
            .arg(replica.data_dir())
            .arg("-l")
            .arg(run.join("log"))
            .arg("-o")
            .arg(format!(
                "-c listen_addresses=127.0.0.1 -c port={} -k {} -c fsync=off",
                replica.port,
                run.display()
            ))
            .args(["-w", "-t", "300", "start"])
            .env("PGDATA", replica.data_dir())
            .env("PRIMARY_HOST", "127.0.0.1")
            .env("PRIMARY_PORT", primary.port.to_string())
            .env("REPLICA_PGPASSFILE", replica.passfile())
            .env("REPLICA_NEXT", replica.bin().join("pg_ctl"))
            .env("PG_BASEBACKUP", replica.bin().join("pg_basebackup"))
            .env("REPLICA_ATTEMPTS", "1")
            // The walreceiver's libpq: the toolchain's (the image's ld.so.conf does this),
            // not the host's older one, which rejects what pg_basebackup 18 writes.
            .env("LD_LIBRARY_PATH", replica.dir.path().join("pg/lib"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (replica, out)
    }

    fn try_psql(&self, sql: &str) -> Result<String, String> {
        try_psql(&self.bin(), &self.run_dir(), self.port, &[], sql)
    }

    /// The replica server's log.
    fn log(&self) -> String {
        let log = fs_err::read_to_string(self.run_dir().join("log")).unwrap_or_default();
        format!("replica log:\n{log}")
    }

    fn psql(&self, sql: &str) -> String {
        self.try_psql(sql)
            .unwrap_or_else(|e| panic!("replica: {sql}: {e}"))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = as_user(&self.bin().join("pg_ctl"))
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

#[test]
fn a_replica_cloned_by_the_entrypoint_streams_from_the_slot() {
    let primary = TcpServer::start();
    let env = [
        ("REPLICATION_PASSWORD", PASSWORD),
        ("REPLICATION_USER", "replicator"),
        ("REPLICATION_SLOT", "replica_1"),
    ];
    let log = assert_ok(&primary.run_init_script(&env), "02-replication.sh");
    assert!(log.contains("physical slot replica_1"), "{log}");
    // Run twice, as a restarted init would: still one role, one slot, one pg_hba.conf line.
    assert_ok(&primary.run_init_script(&env), "02-replication.sh again");
    primary.server.pg_ctl(&["reload"]);

    assert_eq!(
        primary.psql(
            "SELECT rolreplication, rolcanlogin, rolsuper, left(rolpassword, 14) \
             FROM pg_authid WHERE rolname = 'replicator'"
        ),
        "t|t|f|SCRAM-SHA-256$"
    );
    assert_eq!(
        primary.psql("SELECT slot_name, slot_type, active FROM pg_replication_slots"),
        "replica_1|physical|f"
    );
    let hba = primary.hba();
    let line = "host replication \"replicator\" all scram-sha-256";
    assert_eq!(hba.lines().filter(|l| *l == line).count(), 1, "{hba}");
    assert!(
        !hba.lines()
            .any(|l| l.starts_with("host") && l.contains("trust")),
        "{hba}"
    );

    // SCRAM over TCP: the right password opens a replication connection, a wrong one does
    // not, and the role cannot log in to a database.
    let ok = primary.replication_login("replicator", PASSWORD, "replication");
    assert_ok(&ok, "replication login");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("systemid"));
    let wrong = primary.replication_login("replicator", "change-me", "replication");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    let db = primary.replication_login("replicator", PASSWORD, "postgres");
    assert!(!db.status.success());
    assert!(
        String::from_utf8_lossy(&db.stderr).contains("no pg_hba.conf entry"),
        "{}",
        String::from_utf8_lossy(&db.stderr)
    );

    let (replica, out) = Replica::create(&primary, &env);
    let log = assert_ok(&out, "replica-entrypoint.sh");
    assert!(log.contains("clone complete"), "{log}");

    // The password file the script wrote: 0600, fields escaped, named by primary_conninfo.
    let passfile = replica.passfile();
    let mode = fs_err::metadata(&passfile).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", passfile.display());
    assert_eq!(
        fs_err::read_to_string(&passfile).unwrap(),
        format!(
            "127.0.0.1:{}:*:replicator:{}\n",
            primary.port,
            pgpass_field(PASSWORD)
        )
    );
    let auto = fs_err::read_to_string(replica.data_dir().join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("primary_slot_name = 'replica_1'"), "{auto}");
    assert!(auto.contains(&passfile.display().to_string()), "{auto}");
    assert!(!auto.contains("r3pl"), "the password leaked into {auto}");
    assert!(replica.data_dir().join("standby.signal").exists());

    assert_eq!(replica.psql("SELECT pg_is_in_recovery()"), "t");
    let logs = || replica.log();
    wait_for("the slot in use", "t", &logs, || {
        primary.try_psql("SELECT active FROM pg_replication_slots WHERE slot_name = 'replica_1'")
    });
    wait_for(
        "the replica streaming",
        "streaming|replica_1",
        &logs,
        || replica.try_psql("SELECT status, slot_name FROM pg_stat_wal_receiver"),
    );

    // Rows written on the primary arrive on the replica, twice over.
    primary.psql(
        "CREATE TABLE azb_replicated (id int PRIMARY KEY, note text);
         INSERT INTO azb_replicated SELECT g, 'row ' || g FROM generate_series(1, 1000) g",
    );
    wait_for("the first rows on the replica", "1000|1000", &logs, || {
        replica.try_psql("SELECT count(*), max(id) FROM azb_replicated")
    });
    primary.psql("UPDATE azb_replicated SET note = 'changed' WHERE id <= 10");
    wait_for("the update on the replica", "10", &logs, || {
        replica.try_psql("SELECT count(*) FROM azb_replicated WHERE note = 'changed'")
    });
    wait_for("the replica caught up", "streaming|0", &logs, || {
        primary.try_psql(
            "SELECT state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) \
             FROM pg_stat_replication WHERE application_name <> 'pg_basebackup'",
        )
    });
    assert!(
        replica
            .try_psql("INSERT INTO azb_replicated VALUES (0, 'no')")
            .unwrap_err()
            .contains("read-only transaction")
    );

    // The exporter's custom queries return numbers on both servers.
    let queries = exporter_queries();
    let on_primary = run_queries(&queries, |extra, sql| {
        try_psql(
            &primary.bin(),
            &primary.server.socket_dir(),
            primary.port,
            extra,
            sql,
        )
    });
    let on_replica = run_queries(&queries, |extra, sql| {
        try_psql(&replica.bin(), &replica.run_dir(), replica.port, extra, sql)
    });

    let lag = |rows: &[Value]| -> (f64, f64) {
        assert_eq!(rows.len(), 1, "{rows:?}");
        (
            rows[0]["is_replica"].as_f64().unwrap(),
            rows[0]["lag_seconds"].as_f64().unwrap(),
        )
    };
    assert_eq!(lag(&on_primary["azb_replication"]), (0.0, 0.0));
    let (is_replica, seconds) = lag(&on_replica["azb_replication"]);
    assert_eq!(is_replica, 1.0);
    assert!((0.0..120.0).contains(&seconds), "{seconds}");

    let slots = &on_primary["azb_replication_slot"];
    assert_eq!(slots.len(), 1, "{slots:?}");
    assert_eq!(slots[0]["slot_name"], "replica_1");
    assert_eq!(slots[0]["active"].as_f64(), Some(1.0));
    assert!(slots[0]["lag_bytes"].as_f64().unwrap() >= 0.0);
    let clients = &on_primary["azb_replication_client"];
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert_eq!(clients[0]["state"], "streaming");
    assert_eq!(clients[0]["client_addr"], "127.0.0.1");
    // Replicas have no clients or slots of their own here.
    assert!(on_replica["azb_replication_slot"].is_empty());
    assert!(on_replica["azb_replication_client"].is_empty());

    for (name, on) in [("primary", &on_primary), ("replica", &on_replica)] {
        let memory: BTreeSet<(String, u64)> = on["azb_memory_settings"]
            .iter()
            .map(|row| {
                (
                    row["name"].as_str().unwrap().to_owned(),
                    row["bytes"].as_f64().unwrap() as u64,
                )
            })
            .collect();
        let expected: BTreeSet<(String, u64)> = [
            "shared_buffers",
            "work_mem",
            "maintenance_work_mem",
            "effective_cache_size",
        ]
        .into_iter()
        .map(|setting| {
            let sql = format!("SELECT pg_size_bytes(current_setting('{setting}'))");
            let bytes = if name == "primary" {
                primary.psql(&sql)
            } else {
                replica.psql(&sql)
            };
            (setting.to_owned(), bytes.parse().unwrap())
        })
        .collect();
        assert_eq!(memory, expected, "{name}");
        assert!(
            expected.contains(&("shared_buffers".to_owned(), 128 << 20)),
            "{expected:?}"
        );
        let uptime = &on["azb_uptime"];
        assert_eq!(uptime.len(), 1);
        assert!(uptime[0]["seconds"].as_f64().unwrap() > 0.0, "{name}");
    }
}

#[test]
fn without_a_replication_password_the_init_script_creates_nothing() {
    let primary = TcpServer::start();
    let hba = primary.hba();
    let out = primary.run_init_script(&[("REPLICATION_USER", "replicator")]);
    let log = assert_ok(&out, "02-replication.sh");
    assert!(log.contains("REPLICATION_PASSWORD is not set"), "{log}");
    assert_eq!(primary.hba(), hba);
    assert_eq!(
        primary.psql(
            "SELECT count(*) FROM pg_roles WHERE rolname = 'replicator' OR rolreplication AND rolname <> 'postgres'"
        ),
        "0"
    );
    assert_eq!(
        primary.psql("SELECT count(*) FROM pg_replication_slots"),
        "0"
    );
}

#[test]
fn the_replica_entrypoint_needs_the_primary_and_passes_other_commands_through() {
    let primary = TcpServer::start();
    // No PRIMARY_HOST: one clear line, nothing cloned.
    let script = repo_root().join("stacks/replica/replica-entrypoint.sh");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .arg(&script)
        .arg("postgres")
        .env("PGDATA", dir.path().join("data"))
        .env("REPLICA_PGPASSFILE", dir.path().join("pgpass"))
        .env("REPLICATION_PASSWORD", PASSWORD)
        .env_remove("PRIMARY_HOST")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PRIMARY_HOST is not set"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("data").exists());
    // Another command runs untouched, without cloning.
    let out = Command::new("sh")
        .arg(&script)
        .args(["echo", "hello"])
        .env("REPLICA_NEXT", "env")
        .env("PGDATA", dir.path().join("data"))
        .output()
        .unwrap();
    assert_ok(&out, "replica-entrypoint.sh echo");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert!(!dir.path().join("data").exists());
    // A wrong password: pg_basebackup fails, the script gives up and leaves no data.
    assert_ok(
        &primary.run_init_script(&[("REPLICATION_PASSWORD", PASSWORD)]),
        "02-replication.sh",
    );
    let (replica, out) = Replica::create(&primary, &[("REPLICATION_PASSWORD", "wrong")]);
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("password authentication failed"), "{log}");
    assert!(log.contains("giving up after 1 attempt"), "{log}");
    assert!(!replica.data_dir().join("PG_VERSION").exists());
}

/// One custom query of queries.yaml: its SQL and its columns with their usage.
struct Query {
    name: String,
    sql: String,
    columns: Vec<(String, String)>,
}

fn exporter_queries() -> Vec<Query> {
    let text =
        fs_err::read_to_string(repo_root().join("stacks/primary/exporter/queries.yaml")).unwrap();
    let doc = yaml_to_json(&text);
    let queries: Vec<Query> = doc
        .as_object()
        .expect("queries.yaml is a map")
        .iter()
        .map(|(name, q)| Query {
            name: name.clone(),
            sql: q["query"].as_str().expect("query").trim().to_owned(),
            columns: q["metrics"]
                .as_array()
                .expect("metrics")
                .iter()
                .map(|metric| {
                    let (column, spec) = metric.as_object().unwrap().iter().next().unwrap();
                    (column.clone(), spec["usage"].as_str().unwrap().to_owned())
                })
                .collect(),
        })
        .collect();
    let names: Vec<&str> = queries.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "azb_memory_settings",
            "azb_replication",
            "azb_replication_client",
            "azb_replication_slot",
            "azb_uptime"
        ]
    );
    queries
}

/// Runs every query with `psql(extra args, sql)`: checks that its columns are exactly the
/// metrics it declares, that GAUGE/COUNTER columns are numbers and LABEL columns text;
/// returns the rows (as JSON objects) by query name.
fn run_queries(
    queries: &[Query],
    psql: impl Fn(&[&str], &str) -> Result<String, String>,
) -> std::collections::BTreeMap<String, Vec<Value>> {
    let mut results = std::collections::BTreeMap::new();
    for query in queries {
        let sql = query.sql.trim_end_matches(';');
        // The header names the columns even when there are no rows.
        let header = psql(
            &["--csv", "-P", "tuples_only=off"],
            &format!("SELECT * FROM ({sql}) q LIMIT 0"),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", query.name));
        let columns: Vec<&str> = query.columns.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(
            header.split(',').collect::<Vec<_>>(),
            columns,
            "{}",
            query.name
        );
        let json = psql(
            &[],
            &format!("SELECT coalesce(json_agg(q), '[]') FROM ({sql}) q"),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", query.name));
        let rows: Vec<Value> = serde_json::from_str(&json).unwrap();
        for row in &rows {
            for (column, usage) in &query.columns {
                let value = &row[column];
                match usage.as_str() {
                    "GAUGE" | "COUNTER" => assert!(
                        value.as_f64().is_some_and(f64::is_finite),
                        "{}.{column} is not a number: {value}",
                        query.name
                    ),
                    "LABEL" => assert!(value.is_string(), "{}.{column}: {value}", query.name),
                    other => panic!("{}.{column}: unexpected usage {other}", query.name),
                }
            }
        }
        results.insert(query.name.clone(), rows);
    }
    results
}
