//! The Compose stacks (stacks/{single,primary,replica}): docker-compose renders each, alone
//! and with its development override, and what it renders publishes ports on 127.0.0.1
//! only, limits memory (PostgreSQL sized to match), checks health and pulls nothing from a
//! registry; `.env.example` holds placeholders, never a secret; pg_hba.conf trusts no
//! network connection.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::context::repo_root;

const STACKS: [&str; 3] = ["single", "primary", "replica"];

/// YAML to JSON through PyYAML (docker-compose's own YAML library).
pub fn yaml_to_json(text: &str) -> Value {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (with PyYAML, Debian's python3-yaml)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "YAML parse failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stack_dir(stack: &str) -> PathBuf {
    repo_root().join("stacks").join(stack)
}

/// `docker-compose [--env-file .env.example] -f FILE... config` in the stack's directory,
/// with only `env` in the environment.
fn compose_config(stack: &str, env_file: bool, files: &[&str], env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("docker-compose");
    cmd.current_dir(stack_dir(stack))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path());
    if env_file {
        cmd.args(["--env-file", ".env.example"]);
    }
    for file in files {
        cmd.args(["-f", file]);
    }
    cmd.arg("config");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .expect("docker-compose (Debian's docker-compose)")
}

fn rendered(stack: &str, files: &[&str], env: &[(&str, &str)]) -> Value {
    let out = compose_config(stack, true, files, env);
    assert!(
        out.status.success(),
        "{stack}: docker-compose {files:?} config failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_to_json(&String::from_utf8(out.stdout).unwrap())
}

/// A size as docker-compose renders it ("1024m", "1024M", 1073741824) in MB.
fn megabytes(value: &Value) -> u64 {
    if let Some(bytes) = value.as_u64() {
        return bytes >> 20;
    }
    let text = value.as_str().unwrap_or_else(|| panic!("a size: {value}"));
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap());
    let number: u64 = number.parse().unwrap();
    match unit.to_ascii_lowercase().as_str() {
        "m" | "mb" => number,
        "g" | "gb" => number << 10,
        "k" | "kb" => number >> 10,
        other => panic!("unexpected size unit {other} in {text}"),
    }
}

/// What every service of every rendered stack must have.
fn check_services(stack: &str, config: &Value) {
    let services = config["services"].as_object().expect("services");
    assert!(!services.is_empty());
    for (name, service) in services {
        let what = format!("{stack}/{name}");
        // Ports: published on 127.0.0.1 only.
        for port in service["ports"].as_array().into_iter().flatten() {
            let host_ip = match port {
                Value::String(text) => {
                    let parts: Vec<&str> = text.split(':').collect();
                    assert_eq!(parts.len(), 3, "{what}: port {text} names no host address");
                    parts[0].to_owned()
                }
                _ => port["host_ip"].as_str().unwrap_or("").to_owned(),
            };
            assert_eq!(host_ip, "127.0.0.1", "{what}: port {port}");
        }
        // Memory: limited.
        let limit = service
            .get("mem_limit")
            .or_else(|| service.pointer("/deploy/resources/limits/memory"))
            .unwrap_or_else(|| panic!("{what}: no memory limit"));
        assert!(megabytes(limit) > 0, "{what}");
        if let Some(deploy) = service.pointer("/deploy/resources/limits/memory") {
            assert_eq!(megabytes(deploy), megabytes(limit), "{what}");
        }
        // One-shot checks run once per `up` and stop: no restart, no health check.
        if service["restart"] == "no" {
            assert!(
                name.ends_with("-check"),
                "{what}: a one-shot service that checks nothing"
            );
            assert!(service.get("healthcheck").is_none(), "{what}");
            continue;
        }
        assert_eq!(service["restart"], "unless-stopped", "{what}");
        // A long-running service starts only once every check of the stack passed.
        for (check, _) in services.iter().filter(|(n, _)| n.ends_with("-check")) {
            let waits = service["depends_on"][check.as_str()]["condition"]
                == "service_completed_successfully"
                || service["depends_on"].as_object().is_some_and(|d| {
                    d.keys().any(|other| {
                        !other.ends_with("-check")
                            && services[other.as_str()]["depends_on"][check.as_str()].is_object()
                    })
                });
            assert!(waits, "{what}: starts without waiting for {check}");
        }
        // Health: checked by a real command.
        let test = &service["healthcheck"]["test"];
        let words: Vec<&str> = test
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no healthcheck"))
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        assert!(
            matches!(words.first(), Some(&"CMD" | &"CMD-SHELL")) && words.len() > 1,
            "{what}: healthcheck {words:?}"
        );
        assert_ne!(service["healthcheck"]["disable"], true, "{what}");
        // Images: local names, no registry host.
        let image = service["image"].as_str().expect("image");
        let first = image.split('/').next().unwrap();
        assert!(
            !image.contains('/')
                || !(first.contains('.') || first.contains(':') || first == "localhost"),
            "{what}: image {image} names a registry"
        );
    }
}

/// The PostgreSQL service of a stack: sized for its own memory limit, listening inside the
/// container, data on a volume at /var/lib/postgresql.
fn check_postgres(stack: &str, service: &Value, memory: u64) {
    let env = &service["environment"];
    assert_eq!(env["POSTGRES_MEMORY"], memory.to_string(), "{stack}");
    assert_eq!(megabytes(&service["mem_limit"]), memory, "{stack}");
    assert_eq!(env["POSTGRES_BIND_IP"], "0.0.0.0", "{stack}");
    let image = service["image"].as_str().unwrap();
    assert_eq!(image, "azb/postgres:18", "{stack}");
    let volumes: Vec<&str> = service["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        volumes
            .iter()
            .any(|v| v.starts_with("pgdata:/var/lib/postgresql")),
        "{stack}: {volumes:?}"
    );
    assert!(
        volumes.iter().any(|v| v.ends_with(&format!(
            "stacks/{stack}/pg_hba.conf:/etc/postgresql/pg_hba.conf:ro"
        ))),
        "{stack}: {volumes:?}"
    );
    let command: Vec<&str> = service["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        command[..3],
        ["postgres", "-c", "hba_file=/etc/postgresql/pg_hba.conf"]
    );
}

fn postgres_service(stack: &str) -> &'static str {
    match stack {
        "replica" => "replica",
        _ => "postgres",
    }
}

#[test]
fn every_stack_renders_alone_and_with_its_dev_override() {
    for stack in STACKS {
        for files in [&["compose.yml"][..], &["compose.yml", "compose.dev.yml"]] {
            let config = rendered(stack, files, &[]);
            check_services(stack, &config);
            check_postgres(stack, &config["services"][postgres_service(stack)], 1024);
        }
    }
}

#[test]
fn postgres_is_sized_for_its_memory_limit() {
    for stack in STACKS {
        let config = rendered(stack, &["compose.yml"], &[("POSTGRES_MEMORY", "4096")]);
        check_postgres(stack, &config["services"][postgres_service(stack)], 4096);
    }
}

#[test]
fn the_primary_stack_wires_pgbouncer_the_exporter_and_replication() {
    let config = rendered("primary", &["compose.yml"], &[]);
    let services = &config["services"];
    let names: Vec<&String> = services.as_object().unwrap().keys().collect();
    assert_eq!(
        names,
        [
            "config-check",
            "exporter",
            "exporter-check",
            "pgbouncer",
            "postgres"
        ]
    );
    assert_eq!(
        services["exporter-check"]["environment"]["DATA_SOURCE_PASS"],
        services["exporter"]["environment"]["DATA_SOURCE_PASS"]
    );

    let postgres = &services["postgres"];
    assert_eq!(postgres["environment"]["REPLICATION_USER"], "replicator");
    assert_eq!(postgres["environment"]["REPLICATION_SLOT"], "replica_1");
    assert_eq!(
        postgres["environment"]["REPLICATION_PASSWORD"],
        "change-me-replication"
    );
    let has_volume = |service: &Value, suffix: &str| {
        service["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str().unwrap().ends_with(suffix))
    };
    assert!(has_volume(
        postgres,
        "stacks/primary/initdb.d/03-pgbouncer-auth.sh:/docker-entrypoint-initdb.d/03-pgbouncer-auth.sh:ro"
    ));

    let pgbouncer = &services["pgbouncer"];
    assert_eq!(pgbouncer["image"], "azb/pgbouncer:latest");
    assert_eq!(pgbouncer["ports"][0], "127.0.0.1:6432:6432/tcp");
    // The image (stacks/pgbouncer.ron) carries its scripts and entrypoint.
    assert!(pgbouncer.get("volumes").is_none(), "{pgbouncer}");
    assert!(pgbouncer.get("entrypoint").is_none(), "{pgbouncer}");
    assert_eq!(
        pgbouncer["healthcheck"]["test"],
        serde_json::json!(["CMD", "sh", "/etc/azb/pgbouncer/healthcheck.sh"])
    );
    assert_eq!(
        pgbouncer["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );

    let exporter = &services["exporter"];
    assert_eq!(exporter["image"], "azb/postgres-exporter:latest");
    assert_eq!(exporter["ports"][0], "127.0.0.1:9187:9187/tcp");
    // The image (stacks/exporter.ron) carries the queries and says where they are.
    assert!(exporter.get("volumes").is_none(), "{exporter}");
    let env = &exporter["environment"];
    assert_eq!(
        env["DATA_SOURCE_URI"],
        "postgres:5432/postgres?sslmode=disable"
    );
    assert_eq!(env["DATA_SOURCE_PASS"], "change-me");

    // The images come from the environment.
    let config = rendered(
        "primary",
        &["compose.yml"],
        &[
            ("AZB_IMAGE", "azb/postgres:18-test"),
            ("PGBOUNCER_IMAGE", "local/pgbouncer:1"),
            ("EXPORTER_IMAGE", "local/exporter:1"),
        ],
    );
    let services = &config["services"];
    assert_eq!(services["postgres"]["image"], "azb/postgres:18-test");
    assert_eq!(services["pgbouncer"]["image"], "local/pgbouncer:1");
    assert_eq!(services["exporter"]["image"], "local/exporter:1");
}

#[test]
fn the_replica_stack_clones_through_the_replica_entrypoint() {
    let config = rendered("replica", &["compose.yml"], &[]);
    let replica = &config["services"]["replica"];
    assert_eq!(
        replica["entrypoint"],
        serde_json::json!(["sh", "/usr/local/lib/azb/replica-entrypoint.sh"])
    );
    let env = &replica["environment"];
    assert_eq!(env["PRIMARY_HOST"], "primary.example.invalid");
    assert_eq!(env["PRIMARY_PORT"], "5432");
    assert_eq!(env["REPLICATION_SLOT"], "replica_1");
    assert_eq!(
        env["REPLICA_PGPASSFILE"],
        "/var/lib/postgresql/replication.pgpass"
    );
    assert!(
        replica["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str().unwrap().ends_with(
                "stacks/replica/replica-entrypoint.sh:/usr/local/lib/azb/replica-entrypoint.sh:ro"
            ))
    );
    // The development override streams from the primary stack's `postgres` service.
    let config = rendered("replica", &["compose.yml", "compose.dev.yml"], &[]);
    assert_eq!(
        config["services"]["replica"]["environment"]["PRIMARY_HOST"],
        "postgres"
    );
    assert_eq!(config["networks"]["primary"]["name"], "primary_default");
    assert_eq!(config["networks"]["primary"]["external"], true);
}

#[test]
fn passwords_and_the_primary_have_no_defaults() {
    for (stack, required) in [
        ("single", &["POSTGRES_PASSWORD"][..]),
        (
            "primary",
            &[
                "POSTGRES_PASSWORD",
                "REPLICATION_PASSWORD",
                "PGBOUNCER_AUTH_PASSWORD",
            ],
        ),
        ("replica", &["PRIMARY_HOST", "REPLICATION_PASSWORD"]),
    ] {
        // No .env at all: refused.
        let out = compose_config(stack, false, &["compose.yml"], &[]);
        assert!(!out.status.success(), "{stack} rendered without a .env");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            required
                .iter()
                .any(|v| stderr.contains(&format!("set {v} in .env"))),
            "{stack}: {stderr}"
        );
        // Each one missing: refused, naming it.
        for variable in required {
            let env = env_example(stack);
            let env: Vec<(&str, &str)> = env
                .iter()
                .filter(|(k, _)| k != variable)
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let out = compose_config(stack, false, &["compose.yml"], &env);
            assert!(!out.status.success(), "{stack} rendered without {variable}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(&format!("set {variable} in .env")),
                "{stack}: {stderr}"
            );
        }
    }
}

/// KEY=VALUE lines of a stack's .env.example.
fn env_example(stack: &str) -> BTreeMap<String, String> {
    let text = fs_err::read_to_string(stack_dir(stack).join(".env.example")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{stack}/.env.example: not KEY=VALUE: {line}"));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// The names a compose file interpolates (`${NAME...}`; `$$` is a literal `$`).
fn interpolated(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
        } else if let Some(after) = rest.strip_prefix('{') {
            names.push(
                after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect(),
            );
            rest = after;
        }
    }
    names
}

fn is_placeholder(value: &str) -> bool {
    value.starts_with("change-me")
}

#[test]
fn env_examples_hold_placeholders_and_cover_every_variable() {
    for stack in STACKS {
        let env = env_example(stack);
        for (key, value) in &env {
            let upper = key.to_ascii_uppercase();
            if ["PASSWORD", "PASS", "SECRET", "TOKEN", "KEY"]
                .iter()
                .any(|word| upper.contains(word))
            {
                assert!(
                    is_placeholder(value),
                    "{stack}/.env.example: {key} must be a change-me placeholder, not {value:?}"
                );
            }
            // Nothing else that looks like a generated secret either: long runs of mixed
            // letters and digits.
            let mixed = value.chars().any(|c| c.is_ascii_digit())
                && value.chars().any(|c| c.is_ascii_alphabetic())
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+/=_-".contains(c));
            assert!(
                is_placeholder(value) || !(mixed && value.len() >= 16),
                "{stack}/.env.example: {key}={value} looks like a secret"
            );
        }
        for file in ["compose.yml", "compose.dev.yml"] {
            let text = fs_err::read_to_string(stack_dir(stack).join(file)).unwrap();
            for name in interpolated(&text) {
                assert!(
                    env.contains_key(&name),
                    "{stack}/{file} uses ${{{name}}}, which .env.example does not list"
                );
            }
            // Passwords reach the containers from the environment, never written in.
            let raw = yaml_to_json(&text);
            for (service, spec) in raw["services"].as_object().unwrap() {
                for (key, value) in spec["environment"].as_object().into_iter().flatten() {
                    if key.contains("PASSWORD") || key.ends_with("_PASS") {
                        let value = value.as_str().unwrap_or("");
                        assert!(
                            value.starts_with("${"),
                            "{stack}/{file}: {service}.{key} is written in: {value:?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn pg_hba_trusts_only_the_socket() {
    for stack in STACKS {
        let text = fs_err::read_to_string(stack_dir(stack).join("pg_hba.conf")).unwrap();
        let rules: Vec<Vec<&str>> = text
            .lines()
            .map(|line| line.split('#').next().unwrap().trim())
            .filter(|line| !line.is_empty())
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert!(!rules.is_empty(), "{stack}");
        for rule in &rules {
            let method = *rule.last().unwrap();
            if rule[0] == "local" {
                continue;
            }
            assert!(rule[0].starts_with("host"), "{stack}: {rule:?}");
            assert_eq!(method, "scram-sha-256", "{stack}: {rule:?}");
            assert!(!rule.contains(&"trust"), "{stack}: {rule:?}");
        }
        let replication = rules
            .iter()
            .any(|r| r[0] == "host" && r[1] == "replication" && r.last() == Some(&"scram-sha-256"));
        if stack == "primary" {
            assert!(replication, "{stack}: no replication line");
        }
    }
}

#[test]
fn no_registry_host_names_in_the_stacks() {
    let mut files = Vec::new();
    collect_files(&repo_root().join("stacks"), &mut files);
    assert!(!files.is_empty());
    for file in files {
        let Ok(text) = fs_err::read_to_string(&file) else {
            continue;
        };
        for host in [
            "docker.io",
            "quay.io",
            "ghcr.io",
            "gcr.io",
            "registry-1.",
            "mcr.microsoft.com",
            "public.ecr.aws",
        ] {
            assert!(
                !text.contains(host),
                "{} names the registry {host}",
                file.display()
            );
        }
    }
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs_err::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// Runs `script` (a stack's entrypoint) with `args` and only `env`.
fn script(script: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg(repo_root().join(script))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        // No image here: no module directory, no preload list.
        .env("AZB_PG_LIBDIR", "")
        .env("AZB_PRELOAD_FILE", "");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn the_config_checks_refuse_a_bad_env_with_exit_78_and_pass_a_good_one() {
    let entrypoint = "stacks/runtime/azb-entrypoint.sh";
    for (memory, message) in [
        (
            "lots",
            "POSTGRES_MEMORY must be a whole number of megabytes, got 'lots'",
        ),
        ("100", "POSTGRES_MEMORY must be at least 512"),
    ] {
        let out = script(entrypoint, &["--check"], &[("POSTGRES_MEMORY", memory)]);
        assert_eq!(out.status.code(), Some(78), "{memory}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(message),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let good = script(entrypoint, &["--check"], &[("POSTGRES_MEMORY", "2048")]);
    assert_eq!(good.status.code(), Some(0), "{good:?}");
    let text = String::from_utf8_lossy(&good.stdout);
    assert!(
        text.contains("shared_buffers=512MB") && text.contains("configuration is valid"),
        "{text}"
    );

    let exporter = "stacks/primary/exporter/entrypoint.sh";
    let refused = script(exporter, &["--check"], &[("DATA_SOURCE_PASS", "it's")]);
    assert_eq!(refused.status.code(), Some(78));
    let fine = script(
        exporter,
        &["--check"],
        &[("DATA_SOURCE_PASS", "pw$and:colon")],
    );
    assert_eq!(fine.status.code(), Some(0), "{fine:?}");
}
