//! The remote cache between two machines (two projects, two stores, one file:// cache):
//! what one pushes signed, the other substitutes without fetching or building anything,
//! and what it cannot trust it builds itself.

use std::process::Output;

use crate::context::{TestContext, UPSTREAM, shared, stderr};
use crate::servers::{RegistryServer, S3Server};

/// A remote cache: its URL and the environment its client needs (credentials).
struct Backend {
    url: String,
    env: Vec<(&'static str, String)>,
}

impl Backend {
    fn file(ctx: &TestContext) -> Self {
        Self {
            url: format!("file://{}", ctx.root().join("remote").display()),
            env: Vec::new(),
        }
    }
}

/// Makes a key named `name` in `ctx`, pushes its last build to `url` signed with it, and
/// checks every one of the 6 derivations is reported `word`; returns the public key.
fn push_as(ctx: &TestContext, name: &str, backend: &Backend, word: &str) -> String {
    let key_file = ctx.root().join(format!("{name}.key"));
    let public = ctx.ok(&["cache", "keygen", name, "--out", key_file.to_str().unwrap()]);
    let out = ctx
        .azb()
        .args(["cache", "push", "--to", &backend.url])
        .env("AZB_SIGNING_KEY_FILE", &key_file)
        .envs(backend.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = String::from_utf8(out.stdout).unwrap();
    let prefix = format!("{word} ");
    assert_eq!(
        lines.lines().filter(|l| l.starts_with(&prefix)).count(),
        6,
        "{lines}"
    );
    public.trim().to_owned()
}

/// A's store pushed to a file:// cache with a fresh key `ci-1`: (cache URL, public key).
fn pushed(a: &TestContext) -> (String, String) {
    let backend = Backend::file(a);
    let public = push_as(a, "ci-1", &backend, "uploaded");
    (backend.url, public)
}

/// `azb ARGS` in B with these substituter settings and no way to fetch any source.
fn in_b(b: &TestContext, backend: &Backend, trusted: &str, args: &[&str]) -> Output {
    b.azb()
        .args(args)
        .envs(backend.env.iter().map(|(k, v)| (k, v)))
        .env("AZB_SUBSTITUTERS", &backend.url)
        .env("AZB_TRUSTED_KEYS", trusted)
        .env("AZB_SOURCE_MIRRORS", format!("{UPSTREAM}=/nonexistent/"))
        .output()
        .unwrap()
}

/// A builds the fixture image for both platforms and pushes it; B, with an empty store
/// and no way to fetch a source, builds the same image from the cache alone.
fn two_machines(a: &TestContext, b: &TestContext, backend: &Backend) {
    let url = &backend.url;
    let output = |ctx: &TestContext| format!("oci:{}", ctx.root().join("oci").display());
    let digest_a = a.ok(&["build", "--platform", "all", "--output", &output(a)]);
    let public = push_as(a, "ci-1", backend, "uploaded");

    let plan = in_b(b, backend, &public, &["plan", "--json"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    for row in plan["derivations"].as_array().unwrap() {
        assert_eq!(row["status"], "substitute", "{row}");
        assert_eq!(row["from"], url.as_str(), "{row}");
    }

    let out = in_b(
        b,
        backend,
        &public,
        &["build", "--platform", "all", "--output", &output(b)],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("azb: 0 built, 6 substituted, 0 from the store"),
        "{err}"
    );
    assert!(!err.contains("fetching"), "no source is fetched: {err}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        digest_a,
        "same image"
    );

    // Pushing again from B (signed by its own key) finds everything there.
    push_as(b, "b", backend, "present");
}

#[test]
fn a_second_machine_substitutes_everything_from_a_shared_directory() {
    shared();
    let (a, b) = (
        TestContext::new().with_fixtures(),
        TestContext::new().with_fixtures(),
    );
    two_machines(&a, &b, &Backend::file(&a));
}

#[test]
fn a_second_machine_substitutes_everything_from_s3() {
    shared();
    let server = S3Server::start();
    let (a, b) = (
        TestContext::new().with_fixtures(),
        TestContext::new().with_fixtures(),
    );
    let backend = Backend {
        url: format!("s3://{}/ci/main", server.bucket),
        env: server.env(),
    };
    two_machines(&a, &b, &backend);
}

#[test]
fn a_second_machine_substitutes_everything_from_an_oci_registry() {
    shared();
    let server = RegistryServer::start();
    let (a, b) = (
        TestContext::new().with_fixtures(),
        TestContext::new().with_fixtures(),
    );
    let backend = Backend {
        url: format!("oci://{}/azb/cache", server.host),
        env: Vec::new(),
    };
    two_machines(&a, &b, &backend);
    // Each entry is an OCI artifact whose second layer is the very blob the image has.
    let tags = std::process::Command::new("curl")
        .arg("-s")
        .arg(format!("http://{}/v2/azb/cache/tags/list", server.host))
        .output()
        .unwrap();
    let tags: serde_json::Value = serde_json::from_slice(&tags.stdout).unwrap();
    let tags = tags["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 6, "{tags:?}");
    for tag in tags {
        let manifest = std::process::Command::new("curl")
            .args([
                "-s",
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json",
            ])
            .arg(format!(
                "http://{}/v2/azb/cache/manifests/{}",
                server.host,
                tag.as_str().unwrap()
            ))
            .output()
            .unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
        assert_eq!(
            manifest["artifactType"],
            "application/vnd.azb.realisation.v1+json"
        );
        let layer = manifest["layers"][1]["digest"].as_str().unwrap();
        let hex = layer.strip_prefix("sha256:").unwrap();
        assert!(
            a.root().join("oci/blobs/sha256").join(hex).is_file(),
            "{layer} is a layer of A's image"
        );
    }
}

#[test]
fn untrusted_or_unsigned_entries_are_built_locally_and_pushing_needs_a_key() {
    shared();
    let (a, b) = (
        TestContext::new().with_fixtures(),
        TestContext::new().with_fixtures(),
    );
    a.ok(&["build", "--platform", "amd64"]);
    // No signing key: refused, nothing written.
    let url = format!("file://{}", a.root().join("remote").display());
    let out = a
        .azb()
        .args(["cache", "push", "--to", &url])
        .env_remove("AZB_SIGNING_KEY_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("pushing needs a signing key"));
    assert!(!a.root().join("remote/realisations").exists());
    let (url, _) = {
        a.ok(&["build", "--platform", "arm64"]);
        pushed(&a)
    };
    // B trusts another key: every entry is refused by name, and B builds (sources from
    // the fixture mirrors this time).
    let other = azb::remote::SecretKey::generate("other")
        .unwrap()
        .public()
        .to_string();
    let out = b
        .azb()
        .args(["build", "--platform", "amd64"])
        .env("AZB_SUBSTITUTERS", &url)
        .env("AZB_TRUSTED_KEYS", &other)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("it is signed only by untrusted keys (ci-1)"),
        "{err}"
    );
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("azb: 3 built, 0 substituted"), "{err}");
    let bad_key = in_b(&b, &Backend::file(&a), "nonsense", &["plan"]);
    assert_eq!(bad_key.status.code(), Some(2), "{}", stderr(&bad_key));
    assert!(
        stderr(&bad_key).contains("bad public key"),
        "{}",
        stderr(&bad_key)
    );
}

/// Runs `cmd`, killing it (and failing) if it has not finished within two minutes: a
/// remote cache that is down or silent must never hang a build.
fn finishes(mut cmd: std::process::Command) -> Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match wait.recv_timeout(std::time::Duration::from_secs(120)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &id.to_string()])
                .status();
            panic!("azb hung on a remote cache that does not answer");
        }
    }
}

#[test]
fn a_cache_that_is_down_or_silent_is_given_up_on_and_the_build_goes_on() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    // Down: nothing listens. Silent: a listener that accepts and never answers.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>> = Default::default();
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            keep.lock().unwrap().push(stream);
        }
    });
    for (port, what) in [(closed_port, "down"), (silent_port, "silent")] {
        let store = ctx.root().join(format!("store-{what}"));
        let mut cmd = ctx.azb_with_store(&store);
        cmd.args(["build", "--platform", "amd64"])
            .env("AZB_SUBSTITUTERS", "s3://azb-cache/ci")
            .env("AZB_TRUSTED_KEYS", "")
            .env("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"))
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "x")
            .env("AWS_SECRET_ACCESS_KEY", "y")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_TIMEOUT", "2s");
        let out = finishes(cmd);
        let err = stderr(&out);
        assert!(out.status.success(), "{what}: {err}");
        assert_eq!(
            err.matches("not asking it again in this run").count(),
            1,
            "{what}: asked once, then left alone: {err}"
        );
        assert!(err.contains("s3://azb-cache/ci"), "{what}: {err}");
        assert!(err.contains("azb: 3 built, 0 substituted"), "{what}: {err}");
    }
    assert!(
        !held.lock().unwrap().is_empty(),
        "the silent cache was asked"
    );
}

/// Every record in the file:// cache at `dir` names an object and a layer that are there.
fn no_record_without_its_files(dir: &std::path::Path) -> usize {
    let records = dir.join("realisations");
    let Ok(entries) = fs_err::read_dir(&records) else {
        return 0;
    };
    let mut count = 0;
    for entry in entries {
        let record: azb::store::Realisation =
            serde_json::from_slice(&fs_err::read(entry.unwrap().path()).unwrap()).unwrap();
        assert!(
            dir.join(format!("objects/{}.zst", record.object)).is_file(),
            "{} has no object",
            record.drv
        );
        assert!(
            dir.join(format!("blobs/sha256/{}", record.layer.digest))
                .is_file(),
            "{} has no layer",
            record.drv
        );
        count += 1;
    }
    count
}

/// Starts `cmd` and kills it (SIGKILL) after `after`, or lets it finish; returns whether it
/// was killed.
fn kill_after(mut cmd: std::process::Command, after: std::time::Duration) -> bool {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + after;
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::yield_now();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    true
}

#[test]
fn killed_pushes_and_pulls_leave_nothing_half_done() {
    shared();
    let (a, b) = (TestContext::new(), TestContext::new());
    // One large artifact (64 MiB that do not compress), so a kill lands mid-transfer.
    for ctx in [&a, &b] {
        let commit = ctx.commit_fixture("azb_sql", &[]);
        fs_err::write(
            ctx.recipe_path("azb_big"),
            format!(
                r#"Recipe(name: "azb_big", kind: Extension, source: Git(url: "{UPSTREAM}azb_sql", commit: "{commit}"), build: Script(script: "share=$DESTDIR$($PG_CONFIG --sharedir)/extension && mkdir -p $share && cp azb_sql.control azb_sql--1.0.sql $share/ && head -c 64M /dev/urandom > $share/azb_big.bin"), runtime: (create: false))"#
            ),
        )
        .unwrap();
    }
    a.ok(&["build", "--platform", "amd64"]);
    let dir = a.root().join("remote");
    let url = format!("file://{}", dir.display());
    let key_file = a.root().join("ci.key");
    let public = a.ok(&[
        "cache",
        "keygen",
        "ci-1",
        "--out",
        key_file.to_str().unwrap(),
    ]);
    let push = || {
        let mut cmd = a.azb();
        cmd.args(["cache", "push", "--to", &url])
            .env("AZB_SIGNING_KEY_FILE", &key_file);
        cmd
    };
    let mut killed = 0;
    for ms in [5, 20, 50, 100, 200, 400] {
        killed += kill_after(push(), std::time::Duration::from_millis(ms)) as usize;
        no_record_without_its_files(&dir);
    }
    assert!(killed > 0, "no push was killed midway");
    let out = push().output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(no_record_without_its_files(&dir), 1);

    // B pulls it; killed midway, then again to the end.
    let pull = || {
        let mut cmd = b.azb();
        cmd.args(["build", "--platform", "amd64"])
            .env("AZB_SUBSTITUTERS", &url)
            .env("AZB_TRUSTED_KEYS", public.trim())
            .env("AZB_SOURCE_MIRRORS", format!("{UPSTREAM}=/nonexistent/"));
        cmd
    };
    let mut killed = 0;
    for ms in [5, 20, 50, 100, 200] {
        killed += kill_after(pull(), std::time::Duration::from_millis(ms)) as usize;
        let store = azb::store::Store::open(&b.store()).unwrap();
        let plan = b.plan("amd64");
        let hash = plan["derivations"][0]["hash"].as_str().unwrap().to_owned();
        match store.lookup(&hash.parse().unwrap()).unwrap() {
            azb::store::Lookup::Hit(_) | azb::store::Lookup::Miss => {}
            other => panic!("a killed pull left {other:?}"),
        }
    }
    assert!(killed > 0, "no pull was killed midway");
    let out = pull().output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("1 substituted") || err.contains("0 built, 0 substituted, 1 from the store"),
        "{err}"
    );
}

#[test]
fn verify_reports_damage_and_repair_fetches_it_again() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    ctx.ok(&["build", "--platform", "amd64"]);
    let backend = Backend::file(&ctx);
    let public = push_as_platform(&ctx, &backend, "amd64");
    let store = azb::store::Store::open(&ctx.store()).unwrap();
    let plan = ctx.plan("amd64");
    let hash = plan["derivations"][0]["hash"].as_str().unwrap().to_owned();
    let record = store.realisation(&hash.parse().unwrap()).unwrap().unwrap();
    let object = store.object_path(&record);
    let mut bytes = fs_err::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs_err::write(&object, &bytes).unwrap();

    let out = ctx.run(&["cache", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, format!("damaged {hash} object {}\n", record.object));
    assert_eq!(
        fs_err::read(&object).unwrap(),
        bytes,
        "verify alone changes nothing"
    );

    let out = ctx
        .azb()
        .args(["cache", "verify", "--repair"])
        .env("AZB_SUBSTITUTERS", &backend.url)
        .env("AZB_TRUSTED_KEYS", &public)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        format!(
            "repaired {hash} object {} from {}\n",
            record.object, backend.url
        )
    );
    let out = ctx.run(&["cache", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("azb: 3 sound, 0 damaged"),
        "{}",
        stderr(&out)
    );
}

/// Pushes `ctx`'s last build on `platform` to `backend` with a new key; returns it.
fn push_as_platform(ctx: &TestContext, backend: &Backend, platform: &str) -> String {
    let key_file = ctx.root().join("ci.key");
    let public = ctx.ok(&[
        "cache",
        "keygen",
        "ci-1",
        "--out",
        key_file.to_str().unwrap(),
    ]);
    let out = ctx
        .azb()
        .args([
            "cache",
            "push",
            "--to",
            &backend.url,
            "--platform",
            platform,
        ])
        .env("AZB_SIGNING_KEY_FILE", &key_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    public.trim().to_owned()
}

#[test]
fn gc_keeps_the_plan_and_the_last_build_and_drops_the_rest() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    ctx.ok(&["build", "--platform", "amd64"]);
    let old = ctx.plan("amd64")["derivations"][2]["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    // Re-pin azb_sql twice: the first re-pin's output is then needed by nothing.
    for note in ["1.0.1\n", "1.0.2\n"] {
        let commit = ctx.commit_fixture("azb_sql", &[("NEWS", note)]);
        ctx.write_recipe(crate::context::RecipeSpec::new("azb_sql", commit));
        ctx.ok(&["build", "--platform", "amd64"]);
    }
    let store = azb::store::Store::open(&ctx.store()).unwrap();
    let before = store.stats().unwrap();
    assert_eq!(before.realisations, 5);
    // Young files stay (a build might be writing them).
    let report: serde_json::Value = serde_json::from_str(&ctx.ok(&["cache", "gc"])).unwrap();
    assert_eq!(report["realisations"], 0, "{report}");
    let report: serde_json::Value =
        serde_json::from_str(&ctx.ok(&["cache", "gc", "--grace", "0"])).unwrap();
    assert_eq!(report["realisations"], 2, "{report}");
    assert_eq!(report["blobs"], 2, "{report}");
    let after = store.stats().unwrap();
    assert_eq!(after.realisations, 3);
    assert_eq!(after.blobs, 3);
    assert!(store.realisation(&old.parse().unwrap()).unwrap().is_none());
    for row in ctx.plan("amd64")["derivations"].as_array().unwrap() {
        assert_eq!(row["status"], "cached", "{row}");
    }
    let out = ctx.run(&["cache", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_image_is_pushed_to_a_registry_mounting_the_cached_layers_and_docker_pulls_it() {
    shared();
    let server = RegistryServer::start();
    let a = TestContext::new().with_fixtures();
    let layout = format!("oci:{}", a.root().join("oci").display());
    let digest = a.ok(&["build", "--platform", "all", "--output", &layout]);
    let cache = Backend {
        url: format!("oci://{}/azb/cache", server.host),
        env: Vec::new(),
    };
    push_as(&a, "ci-1", &cache, "uploaded");
    let image = format!("{}/azb/postgres", server.host);
    let push = || {
        a.azb()
            .args(["build", "--platform", "all", "--output"])
            .arg(format!("registry:{image}:ci"))
            .env("AZB_SUBSTITUTERS", &cache.url)
            .output()
            .unwrap()
    };
    let out = push();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        digest,
        "the same image"
    );
    // The extension layers come from the cache's repository (azb_sql's has no machine
    // code: one layer for both platforms, mounted once); base and runtime layers and the
    // two configs are uploaded; so is each platform's SBOM, while the empty config their
    // artifact manifests name is mounted from the cache (whose entries use it too), then
    // already there.
    assert!(
        err.contains("8 blob(s) uploaded, 6 mounted, 2 already there"),
        "{err}"
    );
    let again = push();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("0 blob(s) uploaded, 0 mounted"),
        "{}",
        stderr(&again)
    );
    for arch in ["amd64", "arm64"] {
        let info = std::process::Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--override-arch", arch])
            .arg(format!("docker://{image}:ci"))
            .output()
            .unwrap();
        assert!(info.status.success(), "{}", stderr(&info));
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(info["Architecture"], arch);
        assert_eq!(info["Layers"].as_array().unwrap().len(), 5, "{info}");
    }
    // Each platform's SBOM is found through the referrers fallback tag of its manifest.
    let raw = |reference: String| {
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{reference}: {}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let index = raw(format!("{image}:ci"));
    for manifest in index["manifests"].as_array().unwrap() {
        let digest = manifest["digest"].as_str().unwrap();
        let referrers = raw(format!("{image}:{}", digest.replace(':', "-")));
        let listed = &referrers["manifests"][0];
        assert_eq!(listed["artifactType"], "application/vnd.cyclonedx+json");
        let artifact = raw(format!("{image}@{}", listed["digest"].as_str().unwrap()));
        assert_eq!(artifact["subject"]["digest"], digest);
        assert_eq!(
            artifact["layers"][0]["mediaType"],
            "application/vnd.cyclonedx+json"
        );
    }
    let pulled = std::process::Command::new("docker")
        .args(["pull", &format!("{image}:ci")])
        .output()
        .unwrap();
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &format!("{image}:ci")])
        .output();
    assert!(pulled.status.success(), "{}", stderr(&pulled));
}

#[test]
fn a_base_pinned_by_digest_is_pulled_from_a_registry_once_and_a_tag_is_refused() {
    shared();
    let server = RegistryServer::start();
    let ctx = TestContext::new().with_fixtures();
    ctx.write_image(&["linux/amd64"]);
    let layout = format!("oci:{}", ctx.root().join("oci-local").display());
    let local = ctx.ok(&["build", "--platform", "amd64", "--output", &layout]);
    // The same base, copied into the registry.
    let base = crate::context::shared_path("AZB_BASE_IMAGES_DIR", "cache/base").join("pg18-amd64");
    let remote = format!("{}/base/pg", server.host);
    let copied = std::process::Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:pg18", base.display()))
        .arg(format!("docker://{remote}:18"))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{}", stderr(&copied));
    let digest = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{remote}:18"))
        .output()
        .unwrap();
    let digest = String::from_utf8(digest.stdout).unwrap().trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let image_file = ctx.root().join("stacks/image.ron");
    let text = fs_err::read_to_string(&image_file).unwrap();
    let start = text.find("base: OciLayout(").unwrap();
    let end = start + text[start..].find("),").unwrap() + 2;
    let with = |reference: &str| {
        let replaced = format!(
            "{}base: Registry(reference: \"{reference}\"),{}",
            &text[..start],
            &text[end..]
        );
        fs_err::write(&image_file, replaced).unwrap();
    };
    // A tag alone can move: refused where it is written.
    with(&format!("{remote}:18"));
    let out = ctx.run(&["plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("is not pinned") && err.contains("image.ron:"),
        "{err}"
    );
    // Pinned: pulled into the store, and the image is the one the local layout gave.
    with(&format!("{remote}@{digest}"));
    let layout = format!("oci:{}", ctx.root().join("oci-pulled").display());
    let pulled = ctx.ok(&["build", "--platform", "amd64", "--output", &layout]);
    assert_eq!(pulled, local, "the same base gives the same image");
    let bases = ctx.store().join("bases");
    assert!(
        bases
            .join(digest.trim_start_matches("sha256:"))
            .join("index.json")
            .is_file()
    );
    // Pulled once: with the registry gone, the next build still assembles.
    drop(server);
    let again = ctx.ok(&["build", "--platform", "amd64", "--output", &layout]);
    assert_eq!(again, local);
}
