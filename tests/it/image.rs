//! Images: OCI layouts read by skopeo and umoci, reproducible digests, and a
//! docker-archive that the Docker engine loads and runs.

use std::path::Path;
use std::process::Command;

use crate::context::{TestContext, run, shared, stderr, valid_cyclonedx};

fn skopeo_arch(layout: &Path, arch: &str) -> serde_json::Value {
    let text = run(Command::new("skopeo")
        .args(["--override-arch", arch, "--override-os", "linux", "inspect"])
        .arg(format!("oci:{}:18", layout.display())));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn two_stores_give_the_same_multi_arch_layout_that_skopeo_and_umoci_read() {
    shared();
    let (one, two) = (
        TestContext::new().with_fixtures(),
        TestContext::new().with_fixtures(),
    );
    let layout = one.root().join("oci");
    let digest_one = one.ok(&[
        "build",
        "--platform",
        "all",
        "--output",
        &format!("oci:{}", layout.display()),
    ]);
    let digest_two = two.ok(&[
        "build",
        "--platform",
        "all",
        "--output",
        &format!("oci:{}", two.root().join("oci").display()),
    ]);
    assert!(digest_one.starts_with("sha256:"), "{digest_one}");
    assert_eq!(
        digest_one, digest_two,
        "same pins, different stores and directories: same image"
    );
    assert_eq!(
        fs_err::read(layout.join("index.json")).unwrap(),
        fs_err::read(two.root().join("oci/index.json")).unwrap()
    );

    for arch in ["amd64", "arm64"] {
        let info = skopeo_arch(&layout, arch);
        assert_eq!(info["Architecture"], arch);
        // base layer + 3 extensions + runtime
        assert_eq!(info["Layers"].as_array().unwrap().len(), 5, "{info}");
        assert_eq!(info["Labels"]["io.azb.postgresql.version"], "18.6");

        let index: serde_json::Value =
            serde_json::from_slice(&fs_err::read(layout.join("index.json")).unwrap()).unwrap();
        let tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(tag.starts_with("18.6-") && tag.ends_with("-test"), "{tag}");
        let bundle = one.root().join(format!("bundle-{arch}"));
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{tag}-{arch}", layout.display()))
            .arg(&bundle));
        let rootfs = bundle.join("rootfs");
        let so = fs_err::read(rootfs.join("usr/lib/postgresql/18/lib/azb_hello.so")).unwrap();
        let machine = if arch == "amd64" { 62 } else { 183 };
        assert_eq!(azb::layer::elf::machine(&so[..20]), Some(machine));
        assert!(
            rootfs
                .join("usr/share/postgresql/18/extension/azb_sql.control")
                .is_file()
        );
        assert!(rootfs.join("usr/share/doc/azb/azb_hello/LICENSE").is_file());
        assert!(!rootfs.join("usr/lib/postgresql/18/include").exists());
        let info: serde_json::Value = serde_json::from_slice(
            &fs_err::read(rootfs.join("etc/postgresql/version-info.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(info["platform"], format!("linux/{arch}"));
        let names: Vec<&str> = info["extensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["azb_dep", "azb_hello", "azb_sql"]);
        assert!(rootfs.join("etc/postgresql/version-info.txt").is_file());
        // The SBOM: valid CycloneDX, one component per extension with the derivation it
        // was built as, and the licence read from the artifact's licence files.
        let sbom =
            valid_cyclonedx(&fs_err::read(rootfs.join("etc/postgresql/sbom.cdx.json")).unwrap());
        assert_eq!(sbom["metadata"]["lifecycles"][0]["phase"], "build");
        assert_eq!(sbom["metadata"]["component"]["version"], tag.as_str());
        let components = sbom["components"].as_array().unwrap();
        let sbom_names: Vec<&str> = components
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(sbom_names, names);
        for (component, extension) in components
            .iter()
            .zip(info["extensions"].as_array().unwrap())
        {
            let property = |name: &str| {
                component["properties"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == name)
                    .map(|p| p["value"].clone())
            };
            assert_eq!(
                property("azb:derivation"),
                Some(extension["derivation"].clone())
            );
            assert_eq!(property("azb:commit"), Some(extension["commit"].clone()));
        }
        assert_eq!(
            components[1]["licenses"][0]["license"]["id"], "MIT",
            "{sbom}"
        );
        assert!(
            components[0].get("licenses").is_none(),
            "azb_dep has no licence file"
        );
        // The base is there too.
        assert!(rootfs.join("usr/lib/postgresql/18/bin/postgres").is_file());
    }
}

/// Removes the container and image when the test ends, passed or not.
struct DockerCleanup {
    container: String,
    image: String,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.container])
            .output();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

#[test]
fn docker_archive_loads_and_runs_postgres_18_with_the_extensions() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    // A builtin (in the base image, no derivation) that the init SQL must still create.
    fs_err::write(
        ctx.recipe_path("pg_trgm"),
        "Recipe(name: \"pg_trgm\", kind: Builtin, runtime: (create: true), smoke: Some(\"SELECT similarity('postgres', 'postgres')\"))\n",
    )
    .unwrap();
    for (name, smoke) in [
        ("azb_hello", "SELECT azb_hello_add(20, 22)"),
        ("azb_dep", "SELECT azb_dep_scaled(1)"),
        ("azb_sql", "SELECT azb_sql_answer() + 1;"),
    ] {
        let path = ctx.recipe_path(name);
        let text = fs_err::read_to_string(&path).unwrap().replace(
            "    enabled: true,\n",
            &format!("    enabled: true,\n    smoke: Some({smoke:?}),\n"),
        );
        fs_err::write(&path, text).unwrap();
    }
    let archive = ctx.root().join("image.tar");
    ctx.ok(&[
        "build",
        "--platform",
        "amd64",
        "--output",
        &format!("docker-archive:{}", archive.display()),
    ]);
    let loaded = run(Command::new("docker").arg("load").arg("-i").arg(&archive));
    assert!(loaded.contains("azb/test:18"), "{loaded}");
    let container = format!("azb-it-{}", std::process::id());
    let _cleanup = DockerCleanup {
        container: container.clone(),
        image: "azb/test:18".into(),
    };
    run(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &container,
        "-e",
        "POSTGRES_PASSWORD=azb-test",
        "-e",
        "POSTGRES_MEMORY=1024",
        "-e",
        "POSTGRES_CPUS=2",
        "-e",
        "REPLICATION_PASSWORD=azb-repl:pw",
        "azb/test:18",
    ]));
    let exec = |args: &[&str]| {
        Command::new("docker")
            .args(["exec", &container])
            .args(args)
            .output()
            .unwrap()
    };
    let mut ready = false;
    for _ in 0..120 {
        // pg_isready answers once the final server (after init) accepts connections.
        if exec(&["pg_isready", "-q", "-h", "127.0.0.1"])
            .status
            .success()
        {
            ready = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(
        ready,
        "server never became ready:\n{}",
        run(Command::new("docker").args(["logs", &container]))
    );
    let psql = |sql: &str| {
        // Over the local socket (trust inside the container); TCP asks for the password.
        let out = exec(&[
            "psql",
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-c",
            sql,
        ]);
        assert!(out.status.success(), "{sql}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert!(psql("SELECT version()").starts_with("PostgreSQL 18.6"));
    // The image's entrypoint sized the server and kept the preload libraries it has.
    assert_eq!(psql("SHOW shared_buffers"), "256MB");
    assert_eq!(psql("SHOW max_connections"), "80");
    assert_eq!(psql("SHOW io_method"), "worker");
    assert_eq!(
        psql("SHOW shared_preload_libraries"),
        "auto_explain,pg_stat_statements"
    );
    assert_eq!(psql("SHOW data_checksums"), "on");
    assert_eq!(psql("SHOW listen_addresses"), "127.0.0.1");
    // 02-replication.sh (carried in the image) made the replication role and slot.
    assert_eq!(
        psql("SELECT rolreplication FROM pg_roles WHERE rolname = 'replicator'"),
        "t"
    );
    assert_eq!(
        psql("SELECT slot_type FROM pg_replication_slots WHERE slot_name = 'replica_1'"),
        "physical"
    );
    // 01-extensions.sql (generated from the recipes) created them on first boot.
    assert_eq!(
        psql(
            "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension WHERE extname <> 'plpgsql'"
        ),
        "azb_dep,azb_hello,azb_sql,pg_trgm"
    );
    assert_eq!(psql("SELECT similarity('postgres', 'postgres')"), "1");
    assert_eq!(psql("SELECT azb_hello_add(20, 22)"), "42");
    assert_eq!(psql("SELECT azb_dep_scaled(1)"), "43");
    assert_eq!(psql("SELECT azb_sql_answer()"), "42");
    // The image's smoke queries, each after its CREATE EXTENSION, rolled back.
    let smoke = exec(&[
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
        [
            "smoke: azb_hello",
            "42",
            "smoke: azb_dep",
            "43",
            "smoke: azb_sql",
            "43",
            "smoke: pg_trgm",
            "1"
        ]
    );
    let info = run(Command::new("docker").args([
        "exec",
        &container,
        "cat",
        "/etc/postgresql/version-info.txt",
    ]));
    assert!(info.contains("azb_hello"), "{info}");
}

#[test]
fn re_pinning_one_extension_changes_only_its_layer_and_the_runtime_layer() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    let layout = ctx.root().join("oci");
    let output = format!("oci:{}", layout.display());
    ctx.ok(&["build", "--platform", "amd64", "--output", &output]);
    let layers = || -> Vec<String> {
        let info = skopeo_arch(&layout, "amd64");
        info["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect()
    };
    let before = layers();
    // A newer commit of azb_sql (a day later than the others).
    let commit = ctx.commit_fixture("azb_sql", &[("NEWS", "1.0.1\n")]);
    ctx.write_recipe(crate::context::RecipeSpec::new("azb_sql", commit));
    ctx.ok(&["build", "--platform", "amd64", "--output", &output]);
    let after = layers();
    assert_eq!(before.len(), after.len());
    let changed: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    // Layers: base, azb_hello, azb_dep, azb_sql, runtime (dependency order, ties by name).
    assert_eq!(
        changed,
        [3, 4],
        "only azb_sql's layer and the runtime layer may change"
    );
}

#[test]
fn the_image_says_its_licences_and_the_commit_and_source_of_a_clean_checkout() {
    shared();
    let ctx = TestContext::new().with_fixtures();
    ctx.write_image(&["linux/amd64"]);
    // The project as a git checkout whose origin URL carries credentials.
    let repo = git2::Repository::init(ctx.root()).unwrap();
    fs_err::write(
        ctx.root().join(".gitignore"),
        "/store/\n/upstreams/\n/oci/\n",
    )
    .unwrap();
    repo.remote("origin", "https://ci:secret@git.example/org/pg.git")
        .unwrap();
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let who = git2::Signature::now("t", "t@example.invalid").unwrap();
    let head = repo
        .commit(Some("HEAD"), &who, &who, "project", &tree, &[])
        .unwrap();
    let layout = ctx.root().join("oci");
    let labels = || {
        ctx.ok(&[
            "build",
            "--platform",
            "amd64",
            "--output",
            &format!("oci:{}", layout.display()),
        ]);
        skopeo_arch(&layout, "amd64")["Labels"].clone()
    };
    let clean = labels();
    assert_eq!(
        clean["org.opencontainers.image.revision"],
        head.to_string(),
        "{clean}"
    );
    assert_eq!(
        clean["org.opencontainers.image.source"], "https://git.example/org/pg.git",
        "{clean}"
    );
    let licenses = clean["org.opencontainers.image.licenses"].as_str().unwrap();
    assert!(licenses.starts_with("PostgreSQL"), "{licenses}");
    // An uncommitted change to a tracked file: the commit would not say what was built.
    let image_ron = ctx.root().join("stacks/image.ron");
    let text = fs_err::read_to_string(&image_ron).unwrap();
    fs_err::write(&image_ron, format!("// edited\n{text}")).unwrap();
    let dirty = labels();
    assert!(
        dirty.get("org.opencontainers.image.revision").is_none()
            && dirty.get("org.opencontainers.image.source").is_none(),
        "{dirty}"
    );
    assert_eq!(dirty["org.opencontainers.image.licenses"], licenses);
}
