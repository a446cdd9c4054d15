//! The test context: a temporary project (recipes, image definition), local git
//! repositories standing in for upstreams, a private store, and an `azb` command builder.
//! Slow shared setup (PostgreSQL 18 toolchains, base images) comes from
//! `scripts/test-fixtures.sh` once per machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use git2::{Repository, Signature};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Shared fixtures: toolchains (and base images, found by path), prepared once (the script locks and skips
/// what exists, so parallel test binaries are safe).
pub struct Shared {
    pub toolchains: PathBuf,
}

pub fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let root = repo_root();
        let status = Command::new("bash")
            .arg(root.join("scripts/test-fixtures.sh"))
            .status()
            .expect("run scripts/test-fixtures.sh");
        assert!(
            status.success(),
            "scripts/test-fixtures.sh failed; run scripts/setup-host.sh first"
        );
        Shared {
            toolchains: shared_path("AZB_TOOLCHAINS_DIR", "cache/toolchains"),
        }
    })
}

/// A builders.lock for test projects that build in builder containers, resolved once per
/// test process (`azb lock update` on a project whose recipes ask for no package, for
/// libsodium-dev to build and libsodium23 to run, and for the emulated arm64 builder), so
/// every such test shares its builder images.
pub fn shared_lock() -> &'static str {
    static LOCK: OnceLock<String> = OnceLock::new();
    LOCK.get_or_init(|| {
        shared();
        let ctx = TestContext::new();
        ctx.use_builders_without_lock(&["linux/amd64", "linux/arm64"]);
        for (name, packages, runtime, emulate) in [
            ("plain", "", "", false),
            ("sodium", "\"libsodium-dev\"", "\"libsodium23\"", false),
            ("native", "", "", true),
            // cargo-pgrx builds: bindgen loads libclang (the builder's own, also when
            // cross-compiling).
            ("rust", "\"clang\"", "", false),
        ] {
            fs_err::write(
                ctx.recipe_path(name),
                format!(
                    "Recipe(name: \"{name}\", kind: Extension, source: Git(url: \"u\", commit: \"{}\"), build: Pgxs(), build_packages: [{packages}], runtime_packages: [{runtime}], emulate_arm64: {emulate})",
                    "0".repeat(40)
                ),
            )
            .unwrap();
        }
        // The companion images' packages too (stacks/pgbouncer.ron, stacks/exporter.ron).
        ctx.add_companions("lock");
        ctx.ok(&["lock", "update"]);
        fs_err::read_to_string(ctx.root().join("builders.lock")).unwrap()
    })
}

/// The URL prefix fixture recipes use; AZB_SOURCE_MIRRORS maps it to local repositories.
pub const UPSTREAM: &str = "https://fixtures.invalid/";

/// Fixed commit times: the first commit of a fixture and each later one a day after.
const EPOCH: i64 = 1_750_000_000;

/// One test's world.
pub struct TestContext {
    pub dir: tempfile::TempDir,
}

/// What one recipe of a test says.
pub struct RecipeSpec<'a> {
    pub name: &'a str,
    pub commit: String,
    pub depends: &'a [&'a str],
    pub enabled: bool,
}

impl<'a> RecipeSpec<'a> {
    /// An enabled recipe with no dependencies.
    pub fn new(name: &'a str, commit: String) -> Self {
        Self {
            name,
            commit,
            depends: &[],
            enabled: true,
        }
    }
}

impl TestContext {
    /// An empty project with the fixture repositories and an image definition for both
    /// platforms.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("azb-it-")
            .tempdir()
            .expect("temp dir");
        let ctx = Self { dir };
        fs_err::create_dir_all(ctx.root().join("recipes")).unwrap();
        fs_err::create_dir_all(ctx.root().join("stacks")).unwrap();
        fs_err::create_dir_all(ctx.upstreams()).unwrap();
        ctx.write_image(&["linux/amd64", "linux/arm64"]);
        ctx
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn store(&self) -> PathBuf {
        self.root().join("store")
    }

    fn upstreams(&self) -> PathBuf {
        self.root().join("upstreams")
    }

    /// Writes stacks/image.ron for `platforms`, pointing at the shared toolchains and bases.
    pub fn write_image(&self, platforms: &[&str]) {
        let mut entries = String::new();
        for platform in platforms {
            let arch = platform.trim_start_matches("linux/");
            let (cc, strip) = match arch {
                "amd64" => ("gcc", "strip"),
                _ => ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-strip"),
            };
            let toolchain =
                shared_path("AZB_TOOLCHAINS_DIR", "cache/toolchains").join(format!("pg18-{arch}"));
            let base =
                shared_path("AZB_BASE_IMAGES_DIR", "cache/base").join(format!("pg18-{arch}"));
            entries.push_str(&format!(
                "        \"{platform}\": (\n            base: OciLayout(path: \"{}\", reference: Some(\"pg18\")),\n            toolchain: Host(prefix: \"{}\", cc: \"{cc}\", strip: \"{strip}\"),\n        ),\n",
                base.display(),
                toolchain.display()
            ));
        }
        let text = format!(
            "Image(\n    name: \"azb/test\",\n    flavor: \"test\",\n    pg_major: 18,\n    pg_version: \"18.6\",\n    platforms: {{\n{entries}    }},\n)\n"
        );
        fs_err::write(self.root().join("stacks/image.ron"), text).unwrap();
    }

    /// Builds `platforms` in builder containers (the Docker executor) with the shared
    /// builders.lock.
    pub fn use_builders(&self, platforms: &[&str]) {
        let lock = shared_lock();
        self.use_builders_without_lock(platforms);
        fs_err::write(self.root().join("builders.lock"), lock).unwrap();
    }

    fn use_builders_without_lock(&self, platforms: &[&str]) {
        let mut entries = String::new();
        for platform in platforms {
            let arch = platform.trim_start_matches("linux/");
            let toolchain =
                shared_path("AZB_TOOLCHAINS_DIR", "cache/toolchains").join(format!("pg18-{arch}"));
            let base =
                shared_path("AZB_BASE_IMAGES_DIR", "cache/base").join(format!("pg18-{arch}"));
            entries.push_str(&format!(
                "        \"{platform}\": (\n            base: OciLayout(path: \"{}\", reference: Some(\"pg18\")),\n            toolchain: Docker(prefix: Some(\"{}\")),\n        ),\n",
                base.display(),
                toolchain.display()
            ));
        }
        let text = format!(
            "Image(\n    name: \"azb/test\",\n    flavor: \"test\",\n    pg_major: 18,\n    pg_version: \"18.6\",\n    platforms: {{\n{entries}    }},\n)\n"
        );
        fs_err::write(self.root().join("stacks/image.ron"), text).unwrap();
    }

    /// Makes (or adds a commit to) the local repository of fixture `name`, from
    /// tests/fixtures/extensions/<name>, with `extra` files on top. Returns the commit.
    pub fn commit_fixture(&self, name: &str, extra: &[(&str, &str)]) -> String {
        let path = self.upstreams().join(name);
        let repo = Repository::open(&path)
            .or_else(|_| Repository::init(&path))
            .unwrap();
        copy_dir(
            &repo_root().join("tests/fixtures/extensions").join(name),
            &path,
        );
        for (file, content) in extra {
            fs_err::write(path.join(file), content).unwrap();
        }
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let time = EPOCH + 86_400 * parent.as_ref().map_or(0, |_| count_commits(&repo));
        let sig = Signature::new(
            "fixture",
            "fixture@example.invalid",
            &git2::Time::new(time, 0),
        )
        .unwrap();
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(
            Some("HEAD"),
            &sig,
            &sig,
            &format!("{name} at {time}"),
            &tree,
            &parents,
        )
        .unwrap()
        .to_string()
    }

    /// Tags the current commit of fixture `name`'s repository.
    pub fn tag_fixture(&self, name: &str, tag: &str) {
        let repo = Repository::open(self.upstreams().join(name)).unwrap();
        let head = repo.head().unwrap().peel(git2::ObjectType::Commit).unwrap();
        // force: moving an existing tag is what some tests need.
        repo.tag_lightweight(tag, &head, true).unwrap();
    }

    /// Writes recipes/<name>.ron for a fixture.
    pub fn write_recipe(&self, spec: RecipeSpec<'_>) {
        self.write_recipe_with_flags(spec, &[]);
    }

    /// Writes recipes/<name>.ron for a fixture with PGXS make flags.
    pub fn write_recipe_with_flags(&self, spec: RecipeSpec<'_>, flags: &[&str]) {
        let flags: Vec<String> = flags.iter().map(|f| format!("\"{f}\"")).collect();
        let deps: Vec<String> = spec.depends.iter().map(|d| format!("\"{d}\"")).collect();
        let text = format!(
            r#"// Test recipe for the {name} fixture.
Recipe(
    name: "{name}",
    version: "1.0",
    kind: Extension,
    category: "test",
    description: "fixture",
    source: Git(
        url: "{UPSTREAM}{name}",
        commit: "{commit}",
        tag: Some("v1.0"),
    ),
    build: Pgxs(flags: [{flags}]),
    depends: [{deps}],
    runtime: (create: true),
    enabled: {enabled},
)
"#,
            name = spec.name,
            commit = spec.commit,
            deps = deps.join(", "),
            flags = flags.join(", "),
            enabled = spec.enabled,
        );
        fs_err::write(self.recipe_path(spec.name), text).unwrap();
    }

    pub fn recipe_path(&self, name: &str) -> PathBuf {
        self.root().join("recipes").join(format!("{name}.ron"))
    }

    /// The three working fixtures: azb_hello, azb_dep (depends on azb_hello), azb_sql.
    pub fn with_fixtures(self) -> Self {
        for (name, depends) in [
            ("azb_hello", &[][..]),
            ("azb_dep", &["azb_hello"][..]),
            ("azb_sql", &[][..]),
        ] {
            let commit = self.commit_fixture(name, &[]);
            self.write_recipe(RecipeSpec {
                name,
                commit,
                depends,
                enabled: true,
            });
        }
        self
    }

    /// The repository's companion image definitions (stacks/pgbouncer.ron,
    /// stacks/exporter.ron) and the files they carry, copied into this project: on the
    /// shared base images, named `azb-<tag>/pgbouncer` and `azb-<tag>/postgres-exporter`
    /// so tests leave a developer's own images alone.
    pub fn add_companions(&self, tag: &str) {
        let bases = shared_path("AZB_BASE_IMAGES_DIR", "cache/base");
        for name in ["pgbouncer", "exporter"] {
            let text =
                fs_err::read_to_string(repo_root().join(format!("stacks/{name}.ron"))).unwrap();
            assert!(text.contains("\"cache/base/"), "{text}");
            let text = text
                .replace("\"cache/base/", &format!("\"{}/", bases.display()))
                .replace("name: \"azb/", &format!("name: \"azb-{tag}/"));
            fs_err::write(self.root().join(format!("stacks/{name}.ron")), text).unwrap();
        }
        copy_dir(
            &repo_root().join("stacks/primary"),
            &self.root().join("stacks/primary"),
        );
    }

    /// `azb` with this project, its store and the fixture mirrors.
    pub fn azb(&self) -> Command {
        self.azb_with_store(&self.store())
    }

    /// `azb` with this project and the fixture mirrors, and the store at `store`.
    pub fn azb_with_store(&self, store: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_azb"));
        cmd.arg("--project")
            .arg(self.root())
            .arg("--cache-dir")
            .arg(store)
            .env(
                "AZB_SOURCE_MIRRORS",
                format!("{UPSTREAM}={}/", self.upstreams().display()),
            )
            .env_remove("AZB_CACHE_DIR")
            .env_remove("RUST_LOG")
            // No container outlives its test (one test checks the spares it leaves).
            .env("AZB_KEEP_WARM", "0");
        cmd
    }

    /// Runs `azb ARGS` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.azb().args(args).output().expect("run azb")
    }

    /// Runs `azb ARGS`, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "azb {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `azb plan --json` parsed.
    pub fn plan(&self, platform: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["plan", "--json", "--platform", platform])).unwrap()
    }
}

pub fn shared_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(default))
}

fn count_commits(repo: &Repository) -> i64 {
    let mut walk = repo.revwalk().unwrap();
    walk.push_head().unwrap();
    walk.count() as i64
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    for entry in fs_err::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs_err::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Runs `cmd`, failing the test with its output unless it succeeds; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Text of a process's stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Validates a CycloneDX 1.5 JSON document with the reference implementation
/// (cyclonedx-python-lib's strict JSON-schema validator, installed by setup-host.sh) and
/// returns it parsed.
pub fn valid_cyclonedx(text: &[u8]) -> serde_json::Value {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys\n\
             from cyclonedx.schema import SchemaVersion\n\
             from cyclonedx.validation.json import JsonStrictValidator\n\
             error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(sys.stdin.read())\n\
             sys.exit(str(error) if error else 0)\n",
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().unwrap().write_all(text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not a valid CycloneDX 1.5 document: {}",
        stderr(&out)
    );
    serde_json::from_slice(text).unwrap()
}

/// The record and the artifact tar of `hash`, verified by the store's lookup and read back
/// from its object; panics (naming it) when the store does not hold it.
pub fn stored(store: &azb::store::Store, hash: &str) -> (azb::store::Realisation, Vec<u8>) {
    use std::io::Read;
    match store.lookup(&hash.parse().unwrap()).unwrap() {
        azb::store::Lookup::Hit(record) => {
            let mut tar = Vec::new();
            azb::store::read_object(&store.object_path(&record))
                .unwrap()
                .read_to_end(&mut tar)
                .unwrap();
            (*record, tar)
        }
        other => panic!("{hash} not in the store: {other:?}"),
    }
}
