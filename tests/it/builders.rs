//! Builder containers (issue 8): builds in builder images that azb makes from
//! builders.lock, for amd64 and (cross-compiled) arm64, loaded into real PostgreSQL 18
//! servers; builder identities that follow the lock and nothing of the machine; a sandbox
//! that keeps builds off the network and off the host.

use std::io::Read;

use crate::context::{RecipeSpec, TestContext, UPSTREAM, shared, stderr};
use crate::pipeline::{artifacts, built_count, plan_rows};
use crate::postgres::{PgServer, check_fixtures};

/// The ELF machine of every shared object in `tars`.
fn machines(tars: &[Vec<u8>]) -> Vec<(String, Option<u16>)> {
    let mut out = Vec::new();
    for tar in tars {
        for entry in tar::Archive::new(&tar[..]).entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            if path.ends_with(".so") {
                let mut header = [0u8; 20];
                entry.read_exact(&mut header).unwrap();
                out.push((path, azb::layer::elf::machine(&header)));
            }
        }
    }
    out
}

#[test]
fn builder_containers_build_both_platforms_and_the_artifacts_load_into_postgres() {
    let shared = shared();
    let ctx = TestContext::new().with_fixtures();
    ctx.use_builders(&["linux/amd64", "linux/arm64"]);
    let plan = ctx.plan("all");
    for derivation in plan["derivations"].as_array().unwrap() {
        assert!(
            derivation["builder"]
                .as_str()
                .is_some_and(|b| b.starts_with("docker:")),
            "{derivation}"
        );
    }
    let out = ctx.run(&["build", "--platform", "all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(built_count(&stderr(&out)), 6);
    // Every container it started, for a build or ahead of one, is gone.
    let left = std::process::Command::new("docker")
        .args(["ps", "--all", "--quiet", "--filter"])
        .arg(format!("label=org.azb.store={}", ctx.store().display()))
        .output()
        .unwrap();
    assert!(left.status.success());
    assert_eq!(String::from_utf8_lossy(&left.stdout), "");

    let amd64 = artifacts(&ctx, "amd64");
    let arm64 = artifacts(&ctx, "arm64");
    assert_eq!(
        machines(&amd64).iter().map(|m| m.1).collect::<Vec<_>>(),
        [Some(62), Some(62)]
    );
    assert_eq!(
        machines(&arm64).iter().map(|m| m.1).collect::<Vec<_>>(),
        [Some(183), Some(183)]
    );
    let toolchain = shared.toolchains.join("pg18-amd64");
    let server = PgServer::start(&toolchain, &toolchain, &amd64);
    check_fixtures(&server);
    drop(server);
    let server = PgServer::start(&shared.toolchains.join("pg18-arm64"), &toolchain, &arm64);
    check_fixtures(&server);
    drop(server);
    let cross = plan["derivations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["platform"] == "linux/arm64")
        .and_then(|d| d["builder"].as_str())
        .unwrap();
    the_pg_config_stand_in_answers_as_the_real_one(&azb::build::image_tag(cross));

    // Another store builds the same derivations again, in the same builder images, into
    // the same bytes.
    let store2 = ctx.root().join("store2");
    let again = ctx
        .azb_with_store(&store2)
        .args(["build", "--platform", "amd64"])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(built_count(&stderr(&again)), 3);
    let other = azb::store::Store::open(&store2).unwrap();
    for (name, (_, _, hash)) in plan_rows(&ctx, "amd64") {
        let first = azb::store::Store::open(&ctx.store()).unwrap();
        let (a, b) = (
            first.realisation(&hash.parse().unwrap()).unwrap().unwrap(),
            other.realisation(&hash.parse().unwrap()).unwrap().unwrap(),
        );
        assert_eq!(a.object, b.object, "{name} is not reproducible");
    }
}

/// In the cross builder `image`, the native stand-in of the arm64 pg_config (which runs
/// under qemu) gives the real one's answer to each of its questions, to several at once
/// and to none.
fn the_pg_config_stand_in_answers_as_the_real_one(image: &str) {
    let real = "/usr/lib/postgresql/18/bin/pg_config";
    let stand_in = azb::build::pg_config_stand_in(real, "/tmp/answers");
    // Every question the real one lists, then two at once, then none; each answer ends
    // with a line of its own.
    let ask = |program: &str| {
        format!(
            "for q in $({real} | sed 's/ = .*//' | tr '[:upper:]' '[:lower:]'); do \
               {program} --$q; echo \"-- $q $?\"; done; \
             {program} --libdir --version; echo \"-- two $?\"; {program}; echo \"-- none $?\""
        )
    };
    let script = format!(
        "cat > /tmp/pg_config; chmod +x /tmp/pg_config; {{ {}; }} > /tmp/real; {{ {}; }} > /tmp/stand-in; \
         cat /tmp/real; echo '== stand-in'; cat /tmp/stand-in",
        ask(real),
        ask("/tmp/pg_config")
    );
    let mut child = std::process::Command::new("docker")
        .args([
            "run",
            "--rm",
            "-i",
            "--entrypoint",
            "/bin/sh",
            image,
            "-c",
            &script,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stand_in.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let (real_answers, stand_in_answers) = text.split_once("== stand-in\n").unwrap();
    assert!(
        real_answers.contains("-- pgxs 0") && real_answers.contains("-- none 0"),
        "{text}"
    );
    assert_eq!(stand_in_answers, real_answers);
}

/// Adds `build_packages` to the recipe file of `name`.
pub fn add_build_packages(ctx: &TestContext, name: &str, packages: &str) {
    let path = ctx.recipe_path(name);
    let text = fs_err::read_to_string(&path).unwrap().replace(
        "    depends:",
        &format!("    build_packages: [{packages}],\n    depends:"),
    );
    fs_err::write(&path, text).unwrap();
}

#[test]
fn a_build_package_changes_only_its_recipes_derivation_and_no_machine_path_does() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    ctx.use_builders(&["linux/amd64", "linux/arm64"]);
    let before = plan_rows(&ctx, "arm64");
    // Another store, another project directory: the same hashes (the identity is the
    // lock's, not this machine's).
    let copy = TestContext::new().with_fixtures();
    copy.use_builders(&["linux/amd64", "linux/arm64"]);
    let elsewhere = copy
        .azb_with_store(&copy.root().join("another-store"))
        .args(["plan", "--json", "--platform", "arm64"])
        .output()
        .unwrap();
    assert!(elsewhere.status.success(), "{}", stderr(&elsewhere));
    let elsewhere: serde_json::Value = serde_json::from_slice(&elsewhere.stdout).unwrap();
    for row in elsewhere["derivations"].as_array().unwrap() {
        let name = row["name"].as_str().unwrap();
        assert_eq!(row["hash"].as_str().unwrap(), before[name].2, "{name}");
    }

    add_build_packages(&ctx, "azb_sql", "\"libsodium-dev\"");
    let after = plan_rows(&ctx, "arm64");
    assert_ne!(after["azb_sql"].2, before["azb_sql"].2);
    assert_eq!(after["azb_hello"].2, before["azb_hello"].2);
    assert_eq!(after["azb_dep"].2, before["azb_dep"].2);

    // A set the lock does not know is the user's to fix, and names the fix.
    add_build_packages(&ctx, "azb_hello", "\"libnotinthelock-dev\"");
    let out = ctx.run(&["plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("no builder for linux/amd64 with build_packages [libnotinthelock-dev]")
            && text.contains("azb lock update"),
        "{text}"
    );
}

#[test]
fn the_sandbox_keeps_a_build_off_the_network_and_off_the_host() {
    shared();
    let ctx = TestContext::new();
    ctx.use_builders(&["linux/amd64"]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let host_file = ctx.root().join("escaped");
    let etc_name = format!("azb-sandbox-{}", std::process::id());
    // The script reports what it could do, then fails the build as a rogue one would.
    let script = format!(
        "python3 -c 'import socket; socket.create_connection((\\\"127.0.0.1\\\", {port}), 3)' 2>/dev/null && echo probe-network-reached || echo probe-network-unreachable; \
         touch /etc/{etc_name} 2>/dev/null && echo probe-etc-written || echo probe-etc-denied; \
         touch /usr/lib/postgresql/18/lib/rogue.so 2>/dev/null && echo probe-toolchain-written || echo probe-toolchain-denied; \
         touch {host} 2>/dev/null && echo probe-host-written || echo probe-host-denied; \
         [ -e {root} ] && echo probe-host-visible || echo probe-host-invisible; \
         echo probe-uid-$(id -u); \
         exit 1",
        host = host_file.display(),
        root = ctx.root().display(),
    );
    let commit = ctx.commit_fixture("azb_sql", &[]);
    fs_err::write(
        ctx.recipe_path("azb_rogue"),
        format!(
            "Recipe(name: \"azb_rogue\", kind: Extension, source: Git(url: \"{UPSTREAM}azb_sql\", commit: \"{commit}\"), build: Script(script: \"{script}\"))\n"
        ),
    )
    .unwrap();
    let out = ctx.run(&["build", "--platform", "amd64"]);
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    for expected in [
        "probe-network-unreachable",
        "probe-etc-denied",
        "probe-toolchain-denied",
        "probe-host-denied",
        "probe-host-invisible",
        "probe-uid-1000",
    ] {
        assert!(text.contains(expected), "no `{expected}` in:\n{text}");
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the build connected to the host"
    );
    assert!(!host_file.exists());
    assert!(!std::path::Path::new("/etc").join(&etc_name).exists());
    let store = azb::store::Store::open(&ctx.store()).unwrap();
    let rows = plan_rows(&ctx, "amd64");
    assert!(matches!(
        store.lookup(&rows["azb_rogue"].2.parse().unwrap()).unwrap(),
        azb::store::Lookup::Miss
    ));
}

#[test]
fn a_recipe_subdir_that_is_a_symlink_out_of_the_source_is_refused() {
    shared();
    let ctx = TestContext::new();
    ctx.use_builders(&["linux/amd64"]);
    let commit = ctx.commit_fixture("azb_sql", &[]);
    let repo = git2::Repository::open(ctx.root().join("upstreams/azb_sql")).unwrap();
    std::os::unix::fs::symlink("/etc", ctx.root().join("upstreams/azb_sql/etc-link")).unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(std::path::Path::new("etc-link")).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let parent = repo.find_commit(commit.parse().unwrap()).unwrap();
    let sig =
        git2::Signature::new("t", "t@example.invalid", &git2::Time::new(1_750_100_000, 0)).unwrap();
    let linked = repo
        .commit(Some("HEAD"), &sig, &sig, "link", &tree, &[&parent])
        .unwrap()
        .to_string();
    ctx.write_recipe(RecipeSpec::new("azb_sql", linked));
    let path = ctx.recipe_path("azb_sql");
    let text = fs_err::read_to_string(&path)
        .unwrap()
        .replace("    build:", "    subdir: Some(\"etc-link\"),\n    build:");
    fs_err::write(&path, text).unwrap();
    let out = ctx.run(&["build", "--platform", "amd64"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "`azb_sql` builds in `etc-link`, which is not a directory of its pinned source"
        ),
        "{}",
        stderr(&out)
    );
}

/// A container of a loaded image, removed (with the image) when dropped.
struct Booted {
    container: String,
    image: String,
}

impl Drop for Booted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "--force", "--volumes", &self.container])
            .output();
        let _ = std::process::Command::new("docker")
            .args(["image", "rm", "--force", &self.image])
            .output();
    }
}

impl Booted {
    /// Loads `archive` (tagged `image`) and starts it on `platform`; waits until the
    /// server accepts connections after its first boot (emulated arm64 takes minutes).
    fn start(archive: &std::path::Path, image: &str, platform: &str) -> Self {
        let loaded = std::process::Command::new("docker")
            .arg("load")
            .arg("-i")
            .arg(archive)
            .output()
            .unwrap();
        assert!(loaded.status.success(), "{}", stderr(&loaded));
        let booted = Booted {
            container: format!(
                "azb-it-{}-{}",
                image.replace(['/', ':'], "-"),
                std::process::id()
            ),
            image: image.to_owned(),
        };
        let run = std::process::Command::new("docker")
            .args([
                "run",
                "-d",
                "--platform",
                platform,
                "--name",
                &booted.container,
            ])
            .args([
                "-e",
                "POSTGRES_PASSWORD=azb-test",
                "-e",
                "POSTGRES_MEMORY=1024",
            ])
            .args(["-e", "POSTGRES_CPUS=2", image])
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", stderr(&run));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        loop {
            let ready = booted.exec(&["pg_isready", "-q", "-h", "127.0.0.1"]);
            if ready.status.success() {
                break;
            }
            let state = std::process::Command::new("docker")
                .args(["inspect", "-f", "{{.State.Running}}", &booted.container])
                .output()
                .unwrap();
            let logs = || {
                let out = std::process::Command::new("docker")
                    .args(["logs", &booted.container])
                    .output()
                    .unwrap();
                format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out))
            };
            assert!(
                String::from_utf8_lossy(&state.stdout).trim() == "true",
                "the container stopped:\n{}",
                logs()
            );
            assert!(
                std::time::Instant::now() < deadline,
                "never ready:\n{}",
                logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        booted
    }

    fn exec(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("docker")
            .args(["exec", "-u", "postgres", &self.container])
            .args(args)
            .output()
            .unwrap()
    }

    /// One query over the container's socket; its single value.
    fn psql(&self, sql: &str) -> String {
        let out = self.exec(&["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        assert!(out.status.success(), "{sql}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// BLAKE2b-256 of "abc" (RFC 7693's test input), as Python's hashlib computes it.
pub const BLAKE2B_ABC: &str = "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319";

#[test]
fn an_extension_linking_a_debian_library_carries_its_runtime_package_on_both_platforms() {
    shared();
    let ctx = TestContext::new();
    ctx.use_builders(&["linux/amd64", "linux/arm64"]);
    let name = format!("azb/sodium-{}", std::process::id());
    let image = ctx.root().join("stacks/image.ron");
    let text = fs_err::read_to_string(&image)
        .unwrap()
        .replace("name: \"azb/test\"", &format!("name: \"{name}\""));
    fs_err::write(&image, text).unwrap();
    let commit = ctx.commit_fixture("azb_sodium", &[]);
    ctx.write_recipe(RecipeSpec::new("azb_sodium", commit));
    add_build_packages(&ctx, "azb_sodium", "\"libsodium-dev\"");
    let path = ctx.recipe_path("azb_sodium");
    let with_runtime = fs_err::read_to_string(&path).unwrap().replace(
        "    depends:",
        "    runtime_packages: [\"libsodium23\"],\n    depends:",
    );
    fs_err::write(&path, &with_runtime).unwrap();

    for (arch, platform) in [("amd64", "linux/amd64"), ("arm64", "linux/arm64")] {
        let archive = ctx.root().join(format!("{arch}.tar"));
        ctx.ok(&[
            "build",
            "--platform",
            arch,
            "--output",
            &format!("docker-archive:{}", archive.display()),
        ]);
        let booted = Booted::start(&archive, &format!("{name}:18"), platform);
        assert_eq!(
            booted.psql("SELECT extversion FROM pg_extension WHERE extname = 'azb_sodium'"),
            "1.0",
            "created at first boot"
        );
        assert_eq!(booted.psql("SELECT azb_sodium_blake2b('abc')"), BLAKE2B_ABC);
        let listed = booted.exec(&["ls", "/var/lib/dpkg/status.d"]);
        assert!(
            String::from_utf8_lossy(&listed.stdout).contains("libsodium23"),
            "{}",
            stderr(&listed)
        );
    }

    // Without its runtime package, assembly refuses the image and says what to add.
    fs_err::write(
        &path,
        with_runtime.replace("    runtime_packages: [\"libsodium23\"],\n", ""),
    )
    .unwrap();
    let out = ctx.run(&[
        "build",
        "--platform",
        "arm64",
        "--output",
        &format!("oci:{}", ctx.root().join("oci").display()),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("`azb_sodium` (linux/arm64)")
            && text.contains("needs libsodium.so.23")
            && text.contains("likely `libsodium23`"),
        "{text}"
    );
    assert!(!ctx.root().join("oci/index.json").exists());
}

/// A build that only works on an arm64 system (it checks, as a build that runs what it
/// compiles would need), else the azb_script fixture's commands.
const NATIVE_ONLY: &str = "[ \\\"$(uname -m)\\\" = aarch64 ] || { echo \\\"not an arm64 system: this build cannot cross\\\" >&2; exit 1; }; $CC -O2 -fPIC -shared -I$($PG_CONFIG --includedir-server) -o azb_script.so azb_script.c && lib=$DESTDIR$($PG_CONFIG --pkglibdir) && share=$DESTDIR$($PG_CONFIG --sharedir)/extension && mkdir -p $lib $share && cp azb_script.so $lib/ && cp azb_script.control azb_script--1.0.sql $share/";

#[test]
#[ignore = "slow: makes the emulated arm64 builder under qemu (about 13 minutes on two cores)"]
fn a_recipe_that_cannot_cross_builds_in_an_emulated_arm64_builder() {
    let shared = shared();
    let ctx = TestContext::new();
    ctx.use_builders(&["linux/amd64", "linux/arm64"]);
    let commit = ctx.commit_fixture("azb_script", &[]);
    let recipe = |emulate: bool| {
        fs_err::write(
            ctx.recipe_path("azb_script"),
            format!(
                "Recipe(name: \"azb_script\", kind: Extension, source: Git(url: \"{UPSTREAM}azb_script\", commit: \"{commit}\"), build: Script(script: \"{NATIVE_ONLY}\"), emulate_arm64: {emulate})\n"
            ),
        )
        .unwrap();
    };
    // Cross-compiled (the default), it cannot build.
    recipe(false);
    let out = ctx.run(&["build", "--platform", "arm64"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("this build cannot cross"),
        "{}",
        stderr(&out)
    );
    // In the emulated builder it does, and loads into PostgreSQL 18 under qemu.
    recipe(true);
    let out = ctx.run(&["plan", "--json", "--platform", "arm64"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["derivations"][0]["builder"]
            .as_str()
            .is_some_and(|b| b.starts_with("docker-emulated:")),
        "{json}"
    );
    ctx.ok(&["build", "--platform", "arm64"]);
    let arm64 = artifacts(&ctx, "arm64");
    assert_eq!(
        machines(&arm64).iter().map(|m| m.1).collect::<Vec<_>>(),
        [Some(183)]
    );
    let server = PgServer::start(
        &shared.toolchains.join("pg18-arm64"),
        &shared.toolchains.join("pg18-amd64"),
        &arm64,
    );
    server.psql("CREATE EXTENSION azb_script");
    assert_eq!(server.psql("SELECT azb_script_answer()"), "106");
}

/// `(hits, misses)` of the compile cache's line in a build log.
fn compile_cache_hits(log: &str) -> Option<(u32, u32)> {
    let line = log
        .lines()
        .find_map(|l| l.strip_prefix("compile cache: "))?;
    let numbers: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    Some((*numbers.first()?, *numbers.get(1)?))
}

/// A project building fixture `name` (with `extra` files committed over it) for amd64 in
/// builder containers.
fn amd64_builder_project(name: &str, extra: &[(&str, &str)]) -> TestContext {
    shared();
    let ctx = TestContext::new();
    ctx.use_builders(&["linux/amd64"]);
    let commit = ctx.commit_fixture(name, extra);
    ctx.write_recipe(RecipeSpec::new(name, commit));
    ctx
}

#[test]
fn after_one_file_changes_the_compile_cache_recompiles_only_it_and_the_artifact_is_the_same() {
    let ctx = amd64_builder_project("azb_bulk1", &[]);
    let out = ctx.run(&["build", "--platform", "amd64"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let caches = ctx.store().join("compile-cache");
    let kept: Vec<_> = fs_err::read_dir(&caches).unwrap().collect();
    assert_eq!(
        kept.len(),
        1,
        "one cache: one recipe, one platform, one builder"
    );

    // One of the six C files changes.
    let fixture = crate::context::repo_root().join("tests/fixtures/extensions/azb_bulk1");
    let primes = fs_err::read_to_string(fixture.join("primes.c")).unwrap();
    let changed =
        format!("{primes}\n/* one change */\nint azb_bulk1_changed(void) {{ return 1; }}\n");
    let second = ctx.commit_fixture("azb_bulk1", &[("primes.c", &changed)]);
    ctx.write_recipe(RecipeSpec::new("azb_bulk1", second));
    let out = ctx.run(&["build", "--platform", "amd64"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let hash = plan_rows(&ctx, "amd64")["azb_bulk1"].2.clone();
    let log = fs_err::read_to_string(ctx.store().join(format!("logs/{hash}.log"))).unwrap();
    assert_eq!(compile_cache_hits(&log), Some((5, 1)), "{log}");

    // The same derivation from nothing, with no compile cache: the same bytes.
    let store2 = ctx.root().join("store2");
    let again = ctx
        .azb_with_store(&store2)
        .env("AZB_COMPILE_CACHE", "0")
        .args(["build", "--platform", "amd64"])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(!store2.join("compile-cache").exists());
    let log2 = fs_err::read_to_string(store2.join(format!("logs/{hash}.log"))).unwrap();
    assert_eq!(compile_cache_hits(&log2), None, "{log2}");
    let (warm, cold) = (
        azb::store::Store::open(&ctx.store()).unwrap(),
        azb::store::Store::open(&store2).unwrap(),
    );
    let hash = hash.parse().unwrap();
    assert_eq!(
        warm.realisation(&hash).unwrap().unwrap().object,
        cold.realisation(&hash).unwrap().unwrap().object,
        "a warm compile cache changed the artifact"
    );
}

/// Runs `docker ARGS`, asserting success; returns stdout, trimmed.
fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn containers_that_a_killed_azb_left_are_removed_by_the_next_build() {
    let ctx = amd64_builder_project("azb_sql", &[]);
    let out = ctx.run(&["build", "--platform", "amd64"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let image = docker(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "azb-builder",
    ]);
    let image = image.lines().next().expect("a builder image").to_owned();
    // A process of this host that has ended, and one that runs (this test).
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let host = fs_err::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let store2 = ctx.root().join("store2");
    let store_label = format!("org.azb.store={}", store2.display());
    let mut names = Vec::new();
    for (what, pid) in [("dead", gone.id()), ("alive", std::process::id())] {
        let name = format!("azb-test-{what}-{}", std::process::id());
        let owner = format!("org.azb.owner={}:{pid}", host.trim());
        docker(&[
            "create",
            "--name",
            &name,
            "--label",
            &store_label,
            "--label",
            &owner,
            &image,
            "true",
        ]);
        names.push(name);
    }
    let again = ctx
        .azb_with_store(&store2)
        .args(["build", "--platform", "amd64"])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    let left = docker(&[
        "ps",
        "--all",
        "--filter",
        &format!("label={store_label}"),
        "--format",
        "{{.Names}}",
    ]);
    docker(&["rm", "--force", &names[1]]);
    assert_eq!(left, names[1], "only the live owner's container stays");
}

#[test]
fn a_build_that_runs_out_of_memory_says_so_and_names_the_setting() {
    // A build that holds 400 MB in one shell variable, as a linker with fat LTO might.
    let makefile = "all:\n\tx=$$(head -c 400000000 /dev/zero | tr '\\0' a); echo $${#x}\n";
    let ctx = amd64_builder_project("azb_hello", &[("Makefile", makefile)]);
    let out = ctx
        .azb()
        .env("AZB_BUILD_MEMORY", "64m")
        .args(["build", "--platform", "amd64"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("building `azb_hello` for linux/amd64 ran out of memory at `make`"),
        "{err}"
    );
    assert!(err.contains("limit of 64m"), "{err}");
    assert!(err.contains("AZB_BUILD_MEMORY"), "{err}");
    // Under the default limit (three quarters of this machine) the same `make` goes
    // through, and the build stops at its next step (the Makefile installs nothing).
    let out = ctx.run(&["build", "--platform", "amd64"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("ran out of memory"), "{err}");
    assert!(err.contains("failed at `make install`"), "{err}");
}

#[test]
fn a_container_no_build_took_waits_for_the_next_run_and_then_ends_by_itself() {
    let ctx = amd64_builder_project("azb_sql", &[]);
    let store = ctx.store();
    let store_filter = format!("label=org.azb.store={}", store.display());
    // The containers of this store, running or not.
    let listed = || -> Vec<String> {
        let text = docker(&[
            "ps",
            "--all",
            "--filter",
            &store_filter,
            "--format",
            "{{.Names}}",
        ]);
        let mut names: Vec<String> = text.lines().map(str::to_owned).collect();
        names.sort();
        names
    };
    // The spares recorded in the store (`<digest>.<name>` files).
    let spares = || -> Vec<String> {
        let mut names: Vec<String> = fs_err::read_dir(store.join("containers"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                file.split_once('.').unwrap().1.to_owned()
            })
            .collect();
        names.sort();
        names
    };
    // Each run builds a new commit, so it needs a container; the memory limit is one of
    // the options that make containers of a kind.
    let mut runs = 0;
    let mut build = |memory: &str, keep_warm: &str| {
        runs += 1;
        let commit = ctx.commit_fixture("azb_sql", &[("run.txt", &format!("run {runs}\n"))]);
        ctx.write_recipe(RecipeSpec::new("azb_sql", commit));
        let out = ctx
            .azb()
            .env("AZB_KEEP_WARM", keep_warm)
            .env("AZB_BUILD_MEMORY", memory)
            .env("RUST_LOG", "azb=debug")
            .args(["build", "--platform", "amd64"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };

    // The first run leaves the container it started ahead of the next build, running.
    build("1g", "120");
    let first = spares();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(listed(), first);
    assert_eq!(
        docker(&["inspect", "--format", "{{.State.Running}}", &first[0]]),
        "true"
    );

    // A run whose containers differ (another memory limit) neither takes it nor, though
    // the run that started it has ended, removes it as left behind.
    let err = build("2g", "120");
    assert!(!err.contains("took a spare"), "{err}");
    let both = spares();
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(both.contains(&first[0]));
    assert_eq!(listed(), both);

    // A run of the same kind takes it (and leaves one of its own).
    let err = build("1g", "120");
    assert!(err.contains("took a spare an earlier run left"), "{err}");
    assert!(err.contains(&first[0]), "{err}");
    let now = spares();
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(!now.contains(&first[0]), "used once, then removed");
    assert_eq!(listed(), now);
    let claims = fs_err::read_dir(store.join("containers/taken"))
        .unwrap()
        .count();
    assert_eq!(claims, 0, "a claim goes with its container");

    // A spare that went away (an engine restart, `docker rm`) costs a new container, not
    // the build.
    let gone: Vec<&String> = now.iter().filter(|n| !both.contains(n)).collect();
    assert_eq!(gone.len(), 1, "{now:?}");
    docker(&["rm", "--force", "--volumes", gone[0]]);
    let err = build("1g", "120");
    assert!(err.contains("is gone; starting another"), "{err}");
    let now = spares();
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(listed(), now);

    // A spare that no run takes ends by itself after its time, volume and all.
    build("3g", "2");
    let short: Vec<String> = spares().into_iter().filter(|n| !now.contains(n)).collect();
    assert_eq!(short.len(), 1, "{short:?}");
    let volume = docker(&[
        "inspect",
        "--format",
        "{{range .Mounts}}{{.Name}}{{end}}",
        &short[0],
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while listed().contains(&short[0]) {
        assert!(
            std::time::Instant::now() < deadline,
            "{} still runs",
            short[0]
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let volumes = docker(&["volume", "ls", "--quiet"]);
    assert!(
        !volumes.lines().any(|v| v == volume),
        "volume {volume} left"
    );
    for name in now {
        docker(&["rm", "--force", "--volumes", &name]);
    }
}

/// Records how /usr is mounted in the build container (its line of mountinfo, or none).
const RECORD_USR: &str = "share=$DESTDIR$($PG_CONFIG --sharedir)/extension && mkdir -p $share && { grep ' /usr ' /proc/self/mountinfo || echo 'no mount at /usr'; } > $share/$NAME.usr";

/// What `name`'s build recorded with [`RECORD_USR`].
fn recorded_usr(ctx: &TestContext, name: &str) -> String {
    recorded(ctx, name, "usr")
}

/// The file `<name>.<suffix>` of `name`'s amd64 artifact: what its build recorded.
fn recorded(ctx: &TestContext, name: &str, suffix: &str) -> String {
    let store = azb::store::Store::open(&ctx.store()).unwrap();
    let (_, _, hash) = &plan_rows(ctx, "amd64")[name];
    let tar = crate::context::stored(&store, hash).1;
    for entry in tar::Archive::new(&tar[..]).entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().ends_with(format!("{name}.{suffix}")) {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            return text;
        }
    }
    panic!("{name} recorded nothing");
}

#[test]
fn builds_compile_from_a_read_only_copy_of_the_builders_usr_unless_dependencies_go_there() {
    shared();
    let ctx = TestContext::new();
    ctx.use_builders(&["linux/amd64"]);
    let commit = ctx.commit_fixture("azb_script", &[]);
    let recipe = |name: &str, depends: &str| {
        let script = RECORD_USR.replace("$NAME", name);
        fs_err::write(
            ctx.recipe_path(name),
            format!(
                "Recipe(name: \"{name}\", kind: Extension, source: Git(url: \"{UPSTREAM}azb_script\", commit: \"{commit}\"), build: Script(script: \"{script}\"), depends: [{depends}])\n"
            ),
        )
        .unwrap();
    };
    recipe("azb_usr", "");
    recipe("azb_usr_dep", "\"azb_usr\"");
    let out = ctx.run(&["build", "--platform", "amd64"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The volume of the builder's /usr, read-only; the copy is whole (its ready volume).
    let builder = ctx.plan("amd64")["derivations"][0]["builder"]
        .as_str()
        .unwrap()
        .to_owned();
    let tag = azb::build::image_tag(&builder);
    let volume = format!("azb-usr-{}", tag.rsplit(':').next().unwrap());
    let line = recorded_usr(&ctx, "azb_usr");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert!(fields[3].contains(&format!("/{volume}/")), "{line}");
    assert!(fields[5].split(',').any(|o| o == "ro"), "{line}");
    let inspect = std::process::Command::new("docker")
        .args([
            "volume",
            "inspect",
            "--format",
            "{{index .Labels \"org.azb.toolchain-of\"}}",
        ])
        .args([&volume, &format!("{volume}-ready")])
        .output()
        .unwrap();
    assert!(inspect.status.success());
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout),
        format!("{tag}\n{tag}\n")
    );
    // A build with dependencies has them laid over the toolchain in /usr: the image's own.
    assert_eq!(recorded_usr(&ctx, "azb_usr_dep"), "no mount at /usr\n");
}

/// Leaves something in every place a build may write, a System V message queue and a
/// process that outlives the script, and records the container it ran in.
const LEAVE: &str = "for dir in /tmp /var/tmp /run/lock /dev/shm $HOME /build; do echo left > $dir/left; done; ipcmk -Q >/dev/null; sleep 1000 </dev/null >/dev/null 2>&1 & share=$DESTDIR$($PG_CONFIG --sharedir)/extension && mkdir -p $share && cat /proc/sys/kernel/hostname > $share/$NAME.seen";

/// Records the container it ran in and what it finds of [`LEAVE`] (the pattern `sleep
/// 100[0]` does not match the command lines of this script and its grep).
const FIND: &str = "share=$DESTDIR$($PG_CONFIG --sharedir)/extension && mkdir -p $share && { cat /proc/sys/kernel/hostname; for f in /tmp/left /var/tmp/left /run/lock/left /dev/shm/left $HOME/left /build/left; do if [ -e $f ]; then echo found $f; fi; done; cat /proc/[0-9]*/cmdline | tr '\\\\0' ' ' | grep -o 'sleep 100[0]' || true; ipcs -q | grep -c '^0x' || true; } > $share/$NAME.seen";

#[test]
fn a_container_a_build_used_is_wiped_and_serves_the_next_build_of_its_kind() {
    shared();
    let ctx = TestContext::new();
    ctx.use_builders(&["linux/amd64"]);
    let commit = ctx.commit_fixture("azb_script", &[]);
    // One build at a time, in name order: the second takes the first one's container.
    for (name, script) in [("azb_a_leave", LEAVE), ("azb_b_find", FIND)] {
        let script = script.replace("$NAME", name);
        fs_err::write(
            ctx.recipe_path(name),
            format!(
                "Recipe(name: \"{name}\", kind: Extension, source: Git(url: \"{UPSTREAM}azb_script\", commit: \"{commit}\"), build: Script(script: \"{script}\"))\n"
            ),
        )
        .unwrap();
    }
    let out = ctx.run(&["build", "--platform", "amd64", "--jobs", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let left = recorded(&ctx, "azb_a_leave", "seen");
    let found = recorded(&ctx, "azb_b_find", "seen");
    let mut lines = found.lines();
    // The same container (its host name)...
    assert_eq!(lines.next(), left.lines().next(), "{found}");
    // ...with no file, process or message queue of the build before.
    assert_eq!(lines.collect::<Vec<_>>(), ["0"], "{found}");
}
