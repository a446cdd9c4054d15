//! The self-tuning entrypoint (stacks/runtime/azb-entrypoint.sh) and `azb autoconfig`:
//! DESIGN.md's golden table, the workload/storage/CPU rules checked against an independent
//! implementation, memory and CPU detection from prepared cgroup and /proc roots, bad
//! input, and a real PostgreSQL 18 accepting what it computes and receiving it from the
//! entrypoint's hand-over.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::context::{repo_root, shared, stderr};
use crate::postgres::{PgServer, as_user};

fn autoconfig(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_azb"))
        .arg("autoconfig")
        .args(args)
        .output()
        .unwrap()
}

fn settings(args: &[&str]) -> BTreeMap<String, String> {
    let out = autoconfig(&[args, &["--json"]].concat());
    assert!(
        out.status.success(),
        "azb autoconfig {args:?}: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs the script itself with `env` (and nothing of this process's environment).
fn script(env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg(repo_root().join("stacks/runtime/azb-entrypoint.sh"))
        .arg("--print")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AZB_PG_LIBDIR", "")
        .env("AZB_PRELOAD_FILE", "");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn parse(out: &Output) -> BTreeMap<String, String> {
    assert!(out.status.success(), "{}", stderr(out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn the_golden_table_for_web_on_ssd() {
    // RAM, shared_buffers, effective_cache, maintenance_work_mem, work_mem, max_connections
    let table = [
        (512, "128MB", "384MB", "32MB", "1MB", "80"),
        (2048, "512MB", "1536MB", "64MB", "4MB", "120"),
        (4096, "1024MB", "3072MB", "128MB", "5MB", "200"),
        (8192, "2048MB", "6144MB", "256MB", "10MB", "200"),
        (32768, "6553MB", "24576MB", "1024MB", "32MB", "200"),
        (65536, "9830MB", "49152MB", "2048MB", "32MB", "200"),
    ];
    for (ram, sb, ec, mwm, wm, conn) in table {
        let s = settings(&["--memory", &ram.to_string(), "--cpus", "4"]);
        let got = [
            &s["shared_buffers"],
            &s["effective_cache_size"],
            &s["maintenance_work_mem"],
            &s["work_mem"],
            &s["max_connections"],
        ];
        assert_eq!(got, [sb, ec, mwm, wm, conn], "{ram}MB");
        assert_eq!(
            (
                s["random_page_cost"].as_str(),
                s["effective_io_concurrency"].as_str()
            ),
            ("1.1", "200")
        );
        for (k, v) in [
            ("io_method", "worker"),
            ("wal_compression", "lz4"),
            ("checkpoint_completion_target", "0.9"),
            ("idle_replication_slot_timeout", "48h"),
            ("pgaudit.log_statement_once", "on"),
            ("listen_addresses", "127.0.0.1"),
        ] {
            assert_eq!(s[k], v, "{k}");
        }
        assert_eq!(
            s["shared_preload_libraries"],
            "auto_explain,pg_cron,pg_stat_statements,pgaudit"
        );
        // pg_cron is preloaded, so it gets the init scripts' database.
        assert_eq!(s["cron.database_name"], "postgres");
    }
}

/// DESIGN.md's rules, written again here independently of the script.
fn expected(ram: u64, cpus: u64, workload: &str, storage: &str) -> BTreeMap<&'static str, String> {
    let sb = (if ram <= 8192 {
        ram * 25 / 100
    } else if ram <= 32768 {
        ram * 20 / 100
    } else {
        ram * 15 / 100
    })
    .min(32768);
    let tier = if ram < 2048 {
        80
    } else if ram < 4096 {
        120
    } else {
        200
    };
    let base = match workload {
        "oltp" => 300,
        "mixed" => 120,
        "dw" => 100,
        _ => 200,
    };
    let conn = (tier * base / 200).max(20);
    let mut maint = (ram / 32).clamp(32, 2048);
    if workload == "dw" {
        maint = (maint * 2).min(2048);
    }
    let (rpc, eio) = match storage {
        "hdd" => ("4.0", 2),
        "san" => ("1.1", 1),
        _ => ("1.1", 200),
    };
    let workers = (if cpus <= 4 { cpus + 1 } else { cpus * 3 / 2 }).clamp(8, 64);
    [
        ("shared_buffers", format!("{sb}MB")),
        ("effective_cache_size", format!("{}MB", ram * 75 / 100)),
        ("maintenance_work_mem", format!("{maint}MB")),
        (
            "work_mem",
            format!("{}MB", ((ram - sb) / (3 * conn)).clamp(1, 32)),
        ),
        ("max_connections", conn.to_string()),
        (
            "default_statistics_target",
            if workload == "dw" { "500" } else { "100" }.to_owned(),
        ),
        ("random_page_cost", rpc.to_owned()),
        ("effective_io_concurrency", eio.to_string()),
        ("max_worker_processes", workers.to_string()),
        ("max_parallel_workers", cpus.to_string()),
        (
            "max_parallel_workers_per_gather",
            (if cpus >= 4 { (cpus / 2).max(1) } else { 1 }).to_string(),
        ),
        (
            "max_parallel_maintenance_workers",
            (cpus / 2).clamp(1, 4).to_string(),
        ),
        // PostgreSQL 18 accepts io_workers 1..=32 (DESIGN.md said 64).
        ("io_workers", (cpus / 4).clamp(1, 32).to_string()),
    ]
    .into_iter()
    .collect()
}

#[test]
fn workload_storage_and_cpu_rules() {
    for workload in ["web", "oltp", "mixed", "dw"] {
        for storage in ["ssd", "hdd", "san"] {
            for cpus in [1u64, 2, 4, 16, 64, 200] {
                for ram in [512u64, 3000, 8192, 100_000] {
                    let got = parse(&script(&[
                        ("POSTGRES_MEMORY", &ram.to_string()),
                        ("POSTGRES_CPUS", &cpus.to_string()),
                        ("POSTGRES_WORKLOAD_TYPE", workload),
                        ("POSTGRES_STORAGE_TYPE", storage),
                    ]));
                    for (k, v) in expected(ram, cpus, workload, storage) {
                        assert_eq!(
                            got[k], v,
                            "{k} for {ram}MB, {cpus} CPUs, {workload}, {storage}"
                        );
                    }
                }
            }
        }
    }
}

/// A fake root with the given files (relative paths) for AZB_SYSROOT.
fn fake_root(files: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let path = root.path().join(path);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, content).unwrap();
    }
    root
}

fn detected(root: &Path, extra: &[(&str, &str)]) -> (BTreeMap<String, String>, String) {
    let root_text = root.display().to_string();
    let mut env = vec![("AZB_SYSROOT", root_text.as_str())];
    env.extend_from_slice(extra);
    let out = script(&env);
    (parse(&out), stderr(&out))
}

const MEMINFO: &str = "MemTotal:       16777216 kB\nMemFree:         1000000 kB\n";

#[test]
fn memory_comes_from_cgroup_v2_then_v1_then_meminfo() {
    let v2 = fake_root(&[
        ("sys/fs/cgroup/memory.max", "4294967296\n"),
        ("proc/meminfo", MEMINFO),
    ]);
    let (s, err) = detected(v2.path(), &[("POSTGRES_CPUS", "2")]);
    assert_eq!(s["shared_buffers"], "1024MB");
    assert!(!err.contains("warning"), "{err}");

    let v1 = fake_root(&[
        ("sys/fs/cgroup/memory/memory.limit_in_bytes", "2147483648\n"),
        ("proc/meminfo", MEMINFO),
    ]);
    assert_eq!(
        detected(v1.path(), &[("POSTGRES_CPUS", "2")]).0["shared_buffers"],
        "512MB"
    );

    // A limit under the minimum: sized for 512MB, with a warning.
    let small = fake_root(&[("sys/fs/cgroup/memory.max", "268435456\n")]);
    let (s, err) = detected(small.path(), &[("POSTGRES_CPUS", "2")]);
    assert_eq!(s["shared_buffers"], "128MB");
    assert!(
        err.contains("the container's memory limit is 256MB; sizing for the 512MB minimum"),
        "{err}"
    );

    // "max" (v2) and the page-rounded 2^63 of v1 mean no limit: meminfo, with a warning.
    for files in [
        vec![
            ("sys/fs/cgroup/memory.max", "max\n"),
            ("proc/meminfo", MEMINFO),
        ],
        vec![
            (
                "sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            ("proc/meminfo", MEMINFO),
        ],
        vec![("proc/meminfo", MEMINFO)],
    ] {
        let root = fake_root(&files);
        let (s, err) = detected(root.path(), &[("POSTGRES_CPUS", "2")]);
        assert_eq!(
            s["shared_buffers"], "3276MB",
            "16GB from meminfo ({files:?})"
        );
        assert!(err.contains("warning: no memory limit found"), "{err}");
    }

    // POSTGRES_MEMORY wins over everything.
    let (s, _) = detected(
        v2.path(),
        &[("POSTGRES_MEMORY", "8192"), ("POSTGRES_CPUS", "2")],
    );
    assert_eq!(s["shared_buffers"], "2048MB");
}

#[test]
fn cpus_come_from_the_cgroup_quota_else_nproc() {
    let nproc = String::from_utf8(Command::new("nproc").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_owned();
    let cases = [
        ("sys/fs/cgroup/cpu.max", "200000 100000\n", "2".to_owned()),
        ("sys/fs/cgroup/cpu.max", "150000 100000\n", "2".to_owned()), // rounded up
        ("sys/fs/cgroup/cpu.max", "50000 100000\n", "1".to_owned()),
        ("sys/fs/cgroup/cpu.max", "1600000 100000\n", "16".to_owned()),
        ("sys/fs/cgroup/cpu.max", "max 100000\n", nproc.clone()),
        (
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us",
            "400000\n",
            "4".to_owned(),
        ),
        ("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n", nproc.clone()),
    ];
    for (path, content, cpus) in cases {
        let mut files = vec![(path, content)];
        if path.contains("cfs_quota") {
            files.push(("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"));
        }
        let root = fake_root(&files);
        let (s, _) = detected(root.path(), &[("POSTGRES_MEMORY", "4096")]);
        assert_eq!(s["max_parallel_workers"], cpus, "{path} = {content:?}");
    }
    // Odd quotas are ignored with a warning.
    for odd in ["garbage\n", "0 100000\n", "100000 0\n", "-5 100000\n"] {
        let root = fake_root(&[("sys/fs/cgroup/cpu.max", odd)]);
        let (s, err) = detected(root.path(), &[("POSTGRES_MEMORY", "4096")]);
        assert_eq!(s["max_parallel_workers"], nproc, "cpu.max = {odd:?}");
        assert!(
            err.contains("ignoring the unreadable CPU quota"),
            "{odd:?}: {err}"
        );
    }
}

#[test]
fn bad_memory_is_one_clear_line_and_exit_1() {
    for (memory, message) in [
        ("abc", "must be a whole number of megabytes, got 'abc'"),
        ("2GB", "must be a whole number of megabytes, got '2GB'"),
        ("0", "must be at least 512 (MB), got 0"),
        ("511", "must be at least 512 (MB), got 511"),
        (
            "1048577",
            "must be at most 1048576 (1 TB, in MB), got 1048577",
        ),
    ] {
        let out = script(&[("POSTGRES_MEMORY", memory), ("POSTGRES_CPUS", "2")]);
        assert_eq!(out.status.code(), Some(1), "{memory}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(message), "{memory}: {err}");
        assert!(out.stdout.is_empty());
        // Through azb: an input error.
        let out = autoconfig(&["--memory", memory, "--cpus", "2"]);
        assert_eq!(out.status.code(), Some(2), "{memory}");
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
    }
}

#[test]
fn bad_cpu_count_is_one_clear_line_and_exit_1() {
    for cpus in ["0", "abc", "-2", "1.5"] {
        let message =
            format!("POSTGRES_CPUS must be a whole number of CPUs (1 or more), got '{cpus}'");
        let out = script(&[("POSTGRES_MEMORY", "1024"), ("POSTGRES_CPUS", cpus)]);
        assert_eq!(out.status.code(), Some(1), "{cpus}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&message), "{cpus}: {err}");
        assert!(out.stdout.is_empty());
    }
    let out = autoconfig(&["--memory", "1024", "--cpus", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("got '0'"), "{}", stderr(&out));
}

#[test]
fn unknown_workload_or_storage_warns_and_uses_the_default() {
    let out = autoconfig(&[
        "--memory",
        "4096",
        "--cpus",
        "2",
        "--workload",
        "batch",
        "--storage",
        "nvme",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("unknown POSTGRES_WORKLOAD_TYPE 'batch' (web, oltp, dw, mixed); using web"),
        "{err}"
    );
    assert!(
        err.contains("unknown POSTGRES_STORAGE_TYPE 'nvme' (ssd, hdd, san); using ssd"),
        "{err}"
    );
    let s: BTreeMap<String, String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            s["max_connections"].as_str(),
            s["random_page_cost"].as_str()
        ),
        ("200", "1.1")
    );
}

#[test]
fn preload_list_keeps_installed_libraries_and_honours_the_override() {
    let lib = tempfile::tempdir().unwrap();
    for so in ["auto_explain.so", "pg_stat_statements.so"] {
        fs_err::write(lib.path().join(so), "").unwrap();
    }
    let libdir = lib.path().display().to_string();
    let mut cmd = Command::new("sh");
    cmd.arg(repo_root().join("stacks/runtime/azb-entrypoint.sh"))
        .arg("--print")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AZB_PRELOAD_FILE", "");
    let out = cmd
        .envs([
            ("POSTGRES_MEMORY", "1024"),
            ("POSTGRES_CPUS", "1"),
            ("AZB_PG_LIBDIR", libdir.as_str()),
        ])
        .output()
        .unwrap();
    assert_eq!(
        parse(&out)["shared_preload_libraries"],
        "auto_explain,pg_stat_statements"
    );
    assert!(
        stderr(&out).contains("preload library pg_cron is not installed"),
        "{}",
        stderr(&out)
    );
    let out = cmd
        .env("POSTGRES_SHARED_PRELOAD_LIBRARIES", "pg_stat_statements")
        .output()
        .unwrap();
    assert_eq!(
        parse(&out)["shared_preload_libraries"],
        "pg_stat_statements"
    );
}

/// The computed settings without the preload list (the test server has only contrib).
fn for_server(ram: u64, cpus: u64) -> Vec<(String, String)> {
    settings(&["--memory", &ram.to_string(), "--cpus", &cpus.to_string()])
        .into_iter()
        .filter(|(k, _)| k != "shared_preload_libraries" && k != "listen_addresses")
        .chain([(
            "shared_preload_libraries".to_owned(),
            "auto_explain,pg_stat_statements".to_owned(),
        )])
        .collect()
}

#[test]
fn postgres_18_accepts_every_tier_and_shows_the_2gb_set() {
    let shared = shared();
    let toolchain = shared.toolchains.join("pg18-amd64");
    let server = PgServer::start_with(&toolchain, &toolchain, &[], &for_server(2048, 4));
    for (k, v) in [
        ("shared_buffers", "512MB"),
        ("effective_cache_size", "1536MB"),
        ("work_mem", "4MB"),
        ("max_connections", "120"),
        ("io_method", "worker"),
        ("io_workers", "1"),
        ("wal_compression", "lz4"),
        ("idle_replication_slot_timeout", "2d"),
    ] {
        assert_eq!(server.psql(&format!("SHOW {k}")), v, "{k}");
    }
    // Every tier's settings are valid for this server (postgres -C checks them all), for
    // small and very large machines.
    for ram in [512, 2048, 4096, 8192, 32768, 65536] {
        for cpus in [1, 4, 64, 256] {
            let settings = for_server(ram, cpus);
            let value = server.check_settings(&settings, "max_connections");
            assert_eq!(
                Some(&value),
                settings
                    .iter()
                    .find(|(k, _)| k == "max_connections")
                    .map(|(_, v)| v),
                "{ram}MB, {cpus} CPUs"
            );
        }
    }
    // And every workload and storage type's.
    for workload in ["web", "oltp", "mixed", "dw"] {
        for storage in ["ssd", "hdd", "san"] {
            let settings: Vec<(String, String)> = for_server(4096, 4)
                .into_iter()
                .filter(|(k, _)| k != "shared_preload_libraries")
                .chain(
                    settings(&[
                        "--memory",
                        "4096",
                        "--cpus",
                        "4",
                        "--workload",
                        workload,
                        "--storage",
                        storage,
                    ])
                    .into_iter()
                    .filter(|(k, _)| k != "shared_preload_libraries" && k != "listen_addresses"),
                )
                .collect();
            let statistics = server.check_settings(&settings, "default_statistics_target");
            assert_eq!(
                statistics,
                if workload == "dw" { "500" } else { "100" },
                "{workload}"
            );
            let io = server.check_settings(&settings, "effective_io_concurrency");
            assert_eq!(
                io,
                match storage {
                    "hdd" => "2",
                    "san" => "1",
                    _ => "200",
                },
                "{storage}"
            );
        }
    }
}

/// Runs the entrypoint as the server's user with `args`, handing over (AZB_NEXT) to `env`,
/// which runs the real `postgres` of `server` from PATH with the arguments it is given.
fn hand_over(server: &PgServer, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = as_user(Path::new("/bin/sh"));
    cmd.arg(repo_root().join("stacks/runtime/azb-entrypoint.sh"))
        .args(args)
        .env(
            "PATH",
            format!(
                "{}:/usr/bin:/bin",
                server.install_dir().join("bin").display()
            ),
        )
        .env("AZB_NEXT", "env")
        .env("AZB_PG_LIBDIR", server.install_dir().join("lib"))
        .env("AZB_PRELOAD_FILE", "")
        .envs(env.iter().copied());
    cmd.output().unwrap()
}

#[test]
fn the_entrypoint_hands_postgres_every_setting_with_the_callers_flags_last() {
    let toolchain = shared().toolchains.join("pg18-amd64");
    let server = PgServer::start(&toolchain, &toolchain, &[]);
    let data = server.data_dir().display().to_string();
    let sized = [("POSTGRES_MEMORY", "2048"), ("POSTGRES_CPUS", "4")];
    // `postgres -C NAME` started by the entrypoint (as `postgres ARGS`, or ARGS alone when
    // they start with a dash) prints what PostgreSQL 18 got.
    let show = |name: &str, postgres_first: bool, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = if postgres_first {
            vec!["postgres"]
        } else {
            vec![]
        };
        args.extend(["-D", &data, "-C", name]);
        args.extend(extra);
        let out = hand_over(&server, &args, env);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };

    // Every computed setting arrives, as PostgreSQL reads the same -c flags given directly.
    // (Not the preload list and what follows from it: this server has no pg_cron.)
    let computed: Vec<(String, String)> = settings(&["--memory", "2048", "--cpus", "4"])
        .into_iter()
        .filter(|(k, _)| k != "shared_preload_libraries" && k != "cron.database_name")
        .collect();
    for (name, _) in &computed {
        assert_eq!(
            show(name, true, &[], &sized),
            server.check_settings(&computed, name),
            "{name}"
        );
    }
    // (`postgres -C` prints shared_buffers in 8kB pages: 65536 is 512MB, 38400 300MB.)
    assert_eq!(show("shared_buffers", true, &[], &sized), "65536");
    assert_eq!(show("max_connections", false, &[], &sized), "120");
    assert_eq!(
        show("shared_preload_libraries", true, &[], &sized),
        "auto_explain,pg_stat_statements"
    );
    // The caller's flags come after the computed ones, so they win.
    assert_eq!(
        show(
            "shared_buffers",
            true,
            &["-c", "shared_buffers=300MB"],
            &sized
        ),
        "38400"
    );
    assert_eq!(
        show(
            "listen_addresses",
            false,
            &[],
            &[sized[0], sized[1], ("POSTGRES_BIND_IP", "0.0.0.0")]
        ),
        "0.0.0.0"
    );
    // Bad input stops the start with its line, before postgres runs.
    let out = hand_over(
        &server,
        &["postgres", "-D", &data, "-C", "shared_buffers"],
        &[("POSTGRES_MEMORY", "lots")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("POSTGRES_MEMORY must be a whole number of megabytes, got 'lots'"),
        "{}",
        stderr(&out)
    );
    // Any other command runs untouched, with nothing sized (so bad sizing input is no
    // obstacle to `docker run IMAGE bash`).
    let out = hand_over(
        &server,
        &["printf", "%s|", "x", "y z", "-c"],
        &[("POSTGRES_MEMORY", "lots")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x|y z|-c|");
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

#[test]
fn data_checksums_are_on_unless_disabled_for_initdb() {
    let toolchain = shared().toolchains.join("pg18-amd64");
    let server = PgServer::start(&toolchain, &toolchain, &[]);
    let work = tempfile::tempdir().unwrap();
    fs_err::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // In place of docker-entrypoint.sh: the real initdb with the POSTGRES_INITDB_ARGS the
    // entrypoint hands over, then what the new cluster's control file says.
    let next = work.path().join("next.sh");
    fs_err::write(
        &next,
        "#!/bin/sh\nset -e\ndata=$(mktemp -d \"$WORK/data.XXXXXX\")\n\
         initdb -D \"$data\" --no-sync $POSTGRES_INITDB_ARGS >/dev/null\n\
         pg_controldata \"$data\" | grep 'Data page checksum version'\n",
    )
    .unwrap();
    fs_err::set_permissions(&next, std::fs::Permissions::from_mode(0o755)).unwrap();
    let checksum_version = |disable: Option<&str>| {
        let mut env = vec![
            ("POSTGRES_MEMORY", "1024"),
            ("POSTGRES_CPUS", "2"),
            ("AZB_NEXT", next.to_str().unwrap()),
            ("WORK", work.path().to_str().unwrap()),
        ];
        if let Some(value) = disable {
            env.push(("DISABLE_DATA_CHECKSUMS", value));
        }
        let out = hand_over(&server, &["postgres"], &env);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        text.split(':').nth(1).unwrap().trim().to_owned()
    };
    assert_eq!(checksum_version(None), "1");
    assert_eq!(checksum_version(Some("false")), "1");
    assert_eq!(checksum_version(Some("true")), "0");
}
