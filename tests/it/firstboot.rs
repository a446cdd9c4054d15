//! The image's first boot with extensions that need shared_preload_libraries and settings
//! at CREATE EXTENSION time (issue 8): the entrypoint's preload list comes from the image's
//! recipes, pg_cron and pg_net get their database and pgsodium waits for its key; and in
//! Docker, the temporary init server gets the same preload and settings as the real one,
//! shown with the azb_preload fixture (shaped like pg_cron).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::context::{TestContext, UPSTREAM, repo_root, run, shared, stderr};

/// Runs azb-entrypoint.sh --print with `env` (and nothing of this process's environment),
/// against module directory `libdir`.
fn print_settings(libdir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new("sh")
        .arg(repo_root().join("stacks/runtime/azb-entrypoint.sh"))
        .arg("--print")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("POSTGRES_MEMORY", "1024")
        .env("POSTGRES_CPUS", "1")
        .env("AZB_PG_LIBDIR", libdir)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The value of setting `name` in `--print` output (None when it is not set).
fn setting(out: &Output, name: &str) -> Option<String> {
    assert!(out.status.success(), "{}", stderr(out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A module directory with an empty `<name>.so` for each of `libraries`, beside a share/.
fn install_root(libraries: &[&str]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    fs_err::create_dir_all(root.path().join("lib")).unwrap();
    fs_err::create_dir_all(root.path().join("share/extension")).unwrap();
    for library in libraries {
        fs_err::write(root.path().join(format!("lib/{library}.so")), "").unwrap();
    }
    root
}

#[test]
fn the_preload_list_comes_from_the_images_file_keeping_what_is_installed() {
    let root = install_root(&["auto_explain", "pg_stat_statements", "timescaledb"]);
    let libdir = root.path().join("lib");
    let list = root.path().join("preload-libraries");
    fs_err::write(
        &list,
        "# generated\nauto_explain\npg_cron\npg_stat_statements\npgaudit\n  timescaledb  # loader\n\n",
    )
    .unwrap();
    let list_text = list.to_str().unwrap();
    let out = print_settings(&libdir, &[("AZB_PRELOAD_FILE", list_text)]);
    assert_eq!(
        setting(&out, "shared_preload_libraries").as_deref(),
        Some("auto_explain,pg_stat_statements,timescaledb")
    );
    for missing in ["pg_cron", "pgaudit"] {
        assert!(
            stderr(&out).contains(&format!("preload library {missing} is not installed")),
            "{}",
            stderr(&out)
        );
    }
    // The override replaces the list, installed or not.
    let out = print_settings(
        &libdir,
        &[
            ("AZB_PRELOAD_FILE", list_text),
            (
                "POSTGRES_SHARED_PRELOAD_LIBRARIES",
                "pg_stat_statements,pgaudit",
            ),
        ],
    );
    assert_eq!(
        setting(&out, "shared_preload_libraries").as_deref(),
        Some("pg_stat_statements,pgaudit")
    );
    // Without the file (an image from before it), DESIGN.md's four.
    let out = print_settings(
        &libdir,
        &[(
            "AZB_PRELOAD_FILE",
            root.path().join("absent").to_str().unwrap(),
        )],
    );
    assert_eq!(
        setting(&out, "shared_preload_libraries").as_deref(),
        Some("auto_explain,pg_stat_statements")
    );
}

#[test]
fn preloaded_pg_cron_and_pg_net_serve_the_init_scripts_database() {
    let root = install_root(&["pg_cron", "pg_net", "pg_stat_statements"]);
    let libdir = root.path().join("lib");
    let none = ("AZB_PRELOAD_FILE", "");
    let database = |env: &[(&str, &str)]| {
        setting(
            &print_settings(&libdir, &[&[none], env].concat()),
            "cron.database_name",
        )
    };
    assert_eq!(database(&[]).as_deref(), Some("postgres"));
    assert_eq!(
        database(&[("POSTGRES_USER", "app")]).as_deref(),
        Some("app"),
        "POSTGRES_DB defaults to the user's name"
    );
    assert_eq!(
        database(&[("POSTGRES_USER", "app"), ("POSTGRES_DB", "shop")]).as_deref(),
        Some("shop")
    );
    let secret = root.path().join("db-secret");
    fs_err::write(&secret, "vault").unwrap();
    assert_eq!(
        database(&[("POSTGRES_DB_FILE", secret.to_str().unwrap())]).as_deref(),
        Some("vault")
    );
    // pg_net's worker, preloaded, serves the same database.
    let out = print_settings(
        &libdir,
        &[
            none,
            ("POSTGRES_DB", "shop"),
            ("POSTGRES_SHARED_PRELOAD_LIBRARIES", "pg_net,pg_cron"),
        ],
    );
    assert_eq!(
        setting(&out, "pg_net.database_name").as_deref(),
        Some("shop")
    );
    assert_eq!(setting(&out, "cron.database_name").as_deref(), Some("shop"));
    // Not preloaded: not set.
    let out = print_settings(
        &libdir,
        &[
            none,
            ("POSTGRES_SHARED_PRELOAD_LIBRARIES", "pg_stat_statements"),
        ],
    );
    assert_eq!(setting(&out, "cron.database_name"), None);
    assert_eq!(setting(&out, "pg_net.database_name"), None);
}

#[test]
fn pgsodium_and_vault_are_preloaded_only_once_they_have_a_getkey_script() {
    let root = install_root(&["pgsodium", "supabase_vault"]);
    let libdir = root.path().join("lib");
    let data = root.path().join("data");
    fs_err::create_dir_all(&data).unwrap();
    let list = root.path().join("preload-libraries");
    fs_err::write(&list, "pgsodium\nsupabase_vault\n").unwrap();
    let env = [
        ("AZB_PRELOAD_FILE", list.to_str().unwrap()),
        ("PGDATA", data.to_str().unwrap()),
    ];
    let out = print_settings(&libdir, &env);
    assert_eq!(
        setting(&out, "shared_preload_libraries").as_deref(),
        Some("")
    );
    for lib in ["pgsodium", "supabase_vault"] {
        assert!(
            stderr(&out).contains(&format!("leaving {lib} out of shared_preload_libraries")),
            "{}",
            stderr(&out)
        );
    }
    // Asked for by name, it is still left out: preloaded without a key, it stops the server.
    let out = print_settings(
        &libdir,
        &[
            &env[..],
            &[(
                "POSTGRES_SHARED_PRELOAD_LIBRARIES",
                "pgsodium,supabase_vault",
            )],
        ]
        .concat(),
    );
    assert_eq!(
        setting(&out, "shared_preload_libraries").as_deref(),
        Some("")
    );
    // 03-pgsodium-init.sh's getkey script (or pgsodium's default one) lets it in.
    for getkey in [
        data.join("pgsodium_getkey.sh"),
        root.path().join("share/extension/pgsodium_getkey"),
    ] {
        fs_err::write(&getkey, "#!/bin/sh\n").unwrap();
        fs_err::set_permissions(&getkey, std::fs::Permissions::from_mode(0o700)).unwrap();
        let out = print_settings(&libdir, &env);
        assert_eq!(
            setting(&out, "shared_preload_libraries").as_deref(),
            Some("pgsodium,supabase_vault"),
            "{}",
            getkey.display()
        );
        fs_err::remove_file(&getkey).unwrap();
    }
}

/// A container, removed (with its volumes) when the test ends.
struct Container {
    name: String,
}

impl Container {
    /// Starts `image` detached with `env` and `args` after the image name.
    fn start(image: &str, suffix: &str, env: &[(&str, &str)], args: &[&str]) -> Self {
        let name = format!("azb-firstboot-{}-{suffix}", std::process::id());
        let mut cmd = Command::new("docker");
        cmd.args(["run", "-d", "--name", &name]);
        for (key, value) in [
            ("POSTGRES_PASSWORD", "azb-test"),
            ("POSTGRES_MEMORY", "512"),
            ("POSTGRES_CPUS", "1"),
        ]
        .iter()
        .chain(env)
        {
            cmd.arg("-e").arg(format!("{key}={value}"));
        }
        cmd.arg(image).args(args);
        let container = Self { name };
        run(&mut cmd);
        container
    }

    fn exec(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(["exec", &self.name])
            .args(args)
            .output()
            .unwrap()
    }

    fn logs(&self) -> String {
        let out = Command::new("docker")
            .args(["logs", &self.name])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Whether the container still runs, and its exit code when it does not.
    fn state(&self) -> (bool, i64) {
        let text = run(Command::new("docker").args([
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.ExitCode}}",
            &self.name,
        ]));
        let (running, code) = text.trim().split_once(' ').unwrap();
        (running == "true", code.parse().unwrap())
    }

    /// Waits until the real server (it alone listens on TCP) accepts connections; fails with
    /// the logs if the container stops first or two minutes pass.
    fn wait_ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            if self
                .exec(&["pg_isready", "-q", "-h", "127.0.0.1"])
                .status
                .success()
            {
                return;
            }
            let (running, code) = self.state();
            assert!(running, "exited with {code} before ready:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("server never became ready:\n{}", self.logs());
    }

    /// Waits for the container to stop (two minutes at most) and returns its exit code.
    fn wait_exit(&self) -> i64 {
        let out = Command::new("timeout")
            .args(["120", "docker", "wait", &self.name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "still running after two minutes:\n{}",
            self.logs()
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Runs `sql` in `database` over the local socket; returns its output.
    fn psql(&self, database: &str, sql: &str) -> String {
        let out = self.exec(&[
            "psql",
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            sql,
        ]);
        assert!(out.status.success(), "{sql}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .output();
    }
}

/// A loaded image (`reference`); removed with all its tags when the test ends.
struct Image {
    reference: String,
    id: String,
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.id])
            .output();
    }
}

/// Builds an amd64 image holding azb_preload (marked `preload` and `create`), named after
/// this process so parallel tests do not share it, and loads it into Docker.
fn preload_image(ctx: &TestContext) -> Image {
    let name = format!("azb/firstboot-{}", std::process::id());
    ctx.write_image(&["linux/amd64"]);
    let image_ron = ctx.root().join("stacks/image.ron");
    let text = fs_err::read_to_string(&image_ron).unwrap();
    assert!(text.contains("name: \"azb/test\""), "{text}");
    let text = text.replace("name: \"azb/test\"", &format!("name: \"{name}\""));
    fs_err::write(&image_ron, text).unwrap();
    let commit = ctx.commit_fixture("azb_preload", &[]);
    fs_err::write(
        ctx.recipe_path("azb_preload"),
        format!(
            r#"// Needs shared_preload_libraries and a setting at CREATE time, like pg_cron.
Recipe(
    name: "azb_preload",
    version: "1.0",
    kind: Extension,
    description: "fixture",
    source: Git(url: "{UPSTREAM}azb_preload", commit: "{commit}"),
    build: Pgxs(flags: []),
    runtime: (preload: true, create: true, preload_only: false),
    smoke: Some("SELECT azb_preload_database()"),
)
"#
        ),
    )
    .unwrap();
    let archive = ctx.root().join("image.tar");
    ctx.ok(&[
        "build",
        "--platform",
        "amd64",
        "--output",
        &format!("docker-archive:{}", archive.display()),
    ]);
    let reference = format!("{name}:18");
    let loaded = run(Command::new("docker").arg("load").arg("-i").arg(&archive));
    let id = run(Command::new("docker").args(["image", "inspect", "-f", "{{.Id}}", &reference]));
    let image = Image {
        reference,
        id: id.trim().to_owned(),
    };
    assert!(loaded.contains(&image.reference), "{loaded}");
    image
}

#[test]
fn first_boot_creates_an_extension_that_needs_preload_and_its_setting() {
    shared();
    let ctx = TestContext::new();
    let image = preload_image(&ctx);

    // Four first boots at once: the image as it is; another database with the setting
    // given as a flag after `postgres`; and two that must fail like pg_cron did.
    let plain = Container::start(&image.reference, "plain", &[], &[]);
    let flagged = Container::start(
        &image.reference,
        "flagged",
        &[("POSTGRES_DB", "shop")],
        &["postgres", "-c", "azb_preload.database_name=shop"],
    );
    let overridden = Container::start(
        &image.reference,
        "overridden",
        &[("POSTGRES_SHARED_PRELOAD_LIBRARIES", "pg_stat_statements")],
        &[],
    );
    let unset = Container::start(&image.reference, "unset", &[("POSTGRES_DB", "shop")], &[]);

    // The image's default list, generated from its recipes: the four (those the image has)
    // and azb_preload; the init server had it too, so 01-extensions.sql created it.
    plain.wait_ready();
    let logs = plain.logs();
    assert!(
        logs.contains("running /docker-entrypoint-initdb.d/01-extensions.sql")
            && logs.contains("initialisation complete"),
        "{logs}"
    );
    let list = String::from_utf8(
        plain
            .exec(&["cat", "/etc/postgresql/preload-libraries"])
            .stdout,
    )
    .unwrap();
    assert_eq!(
        list.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        [
            "auto_explain",
            "pg_cron",
            "pg_stat_statements",
            "pgaudit",
            "azb_preload"
        ]
    );
    assert_eq!(
        plain.psql("postgres", "SHOW shared_preload_libraries"),
        "auto_explain,pg_stat_statements,azb_preload"
    );
    assert_eq!(
        plain.psql(
            "postgres",
            "SELECT extversion FROM pg_extension WHERE extname = 'azb_preload'"
        ),
        "1.0"
    );
    assert_eq!(
        plain.psql("postgres", "SELECT azb_preload_database()"),
        "postgres"
    );
    // The image's smoke queries pass.
    let smoke = plain.exec(&[
        "psql",
        "-X",
        "-A",
        "-t",
        "-U",
        "postgres",
        "-f",
        "/etc/postgresql/smoke.sql",
    ]);
    assert!(smoke.status.success(), "{}", stderr(&smoke));
    assert_eq!(
        String::from_utf8(smoke.stdout)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        ["smoke: azb_preload", "postgres"]
    );

    // The caller's flags reach the init server as well as the real one.
    flagged.wait_ready();
    assert_eq!(
        flagged.psql("shop", "SELECT azb_preload_database()"),
        "shop"
    );
    assert_eq!(
        flagged.psql(
            "shop",
            "SELECT count(*) FROM pg_extension WHERE extname = 'azb_preload'"
        ),
        "1"
    );

    // Overridden away, the library is not loaded and CREATE EXTENSION fails at first boot
    // exactly as pg_cron's did before the fix.
    assert_ne!(overridden.wait_exit(), 0, "{}", overridden.logs());
    let logs = overridden.logs();
    assert!(
        logs.contains("unrecognized configuration parameter \"azb_preload.database_name\""),
        "{logs}"
    );
    // Preloaded but the setting left at its default: the extension's own refusal, so the
    // init server did load it.
    assert_ne!(unset.wait_exit(), 0, "{}", unset.logs());
    let logs = unset.logs();
    assert!(
        logs.contains("azb_preload can only be created in database postgres"),
        "{logs}"
    );
}
