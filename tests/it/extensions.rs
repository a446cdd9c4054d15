//! Extension images (`azb build --output extensions:DIR`, issue 10): one OCI image per
//! extension with its files at the image root (and the shared libraries of its runtime
//! packages in `system/`), read by skopeo and umoci, reproducible across stores, and
//! mounted the CloudNativePG way into a PostgreSQL 18 container that carries neither the
//! extensions nor libsodium, where `CREATE EXTENSION` and the smoke queries work.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::builders::{BLAKE2B_ABC, add_build_packages};
use crate::context::{RecipeSpec, TestContext, run, shared, stderr};

/// A container or image removed when dropped.
struct Removed(&'static str, String);

impl Drop for Removed {
    fn drop(&mut self) {
        let mut docker = Command::new("docker");
        docker.args([self.0, "-f"]);
        if self.0 == "rm" {
            // With the image's anonymous data volume.
            docker.arg("--volumes");
        }
        let _ = docker.arg(&self.1).output();
    }
}

/// `skopeo inspect --raw` of `reference` in the layout `dir`.
fn raw(dir: &Path, reference: &str) -> serde_json::Value {
    let text = run(Command::new("skopeo")
        .arg("inspect")
        .arg("--raw")
        .arg(format!("oci:{}:{reference}", dir.display())));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn an_extension_image_mounted_into_a_server_creates_its_extension() {
    shared();
    let ctx = TestContext::new();
    ctx.use_builders(&["linux/amd64", "linux/arm64"]);
    let commit = ctx.commit_fixture("azb_hello", &[]);
    ctx.write_recipe(RecipeSpec::new("azb_hello", commit.clone()));
    let sodium = ctx.commit_fixture("azb_sodium", &[]);
    ctx.write_recipe(RecipeSpec::new("azb_sodium", sodium));
    add_build_packages(&ctx, "azb_sodium", "\"libsodium-dev\"");
    let path = ctx.recipe_path("azb_sodium");
    let text = fs_err::read_to_string(&path).unwrap().replace(
        "    depends:",
        "    runtime_packages: [\"libsodium23\"],\n    depends:",
    );
    fs_err::write(&path, text).unwrap();
    let out = ctx.root().join("ext");
    let stdout = ctx.ok(&[
        "build",
        "--output",
        &format!("extensions:{}", out.display()),
    ]);
    let tag = "18-1.0-bookworm";
    let names: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_once(' ').unwrap().0)
        .collect();
    assert_eq!(
        names,
        [format!("azb_hello:{tag}"), format!("azb_sodium:{tag}")],
        "{stdout}"
    );

    // One layout per extension; its tag names a two-platform index with the annotations.
    let layout = out.join("azb_hello");
    let index = raw(&layout, tag);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    let annotations = &index["annotations"];
    assert_eq!(annotations["org.opencontainers.image.revision"], commit);
    assert_eq!(annotations["org.opencontainers.image.version"], "1.0");
    assert_eq!(annotations["org.opencontainers.image.title"], "azb_hello");
    assert_eq!(
        annotations["org.opencontainers.image.source"],
        format!("{}azb_hello", crate::context::UPSTREAM)
    );
    let manifest = raw(&layout, &format!("{tag}-arm64"));
    assert_eq!(manifest["annotations"], *annotations);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);

    // Its files sit at the image root, and nothing of the Debian layout; libsodium, which
    // the base lacks, sits in system/.
    let bundles = tempfile::tempdir().unwrap();
    let unpack = |name: &str| {
        let unpacked = bundles.path().join(name);
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{tag}-amd64", out.join(name).display()))
            .arg(&unpacked));
        unpacked.join("rootfs")
    };
    let hello = unpack("azb_hello");
    for file in [
        "lib/azb_hello.so",
        "share/extension/azb_hello.control",
        "share/extension/azb_hello--1.0.sql",
    ] {
        assert!(hello.join(file).is_file(), "{file} missing");
    }
    assert!(!hello.join("usr").exists());
    assert!(!hello.join("include").exists());
    assert!(!hello.join("system").exists());
    let sodium = unpack("azb_sodium");
    assert!(sodium.join("lib/azb_sodium.so").is_file());
    assert!(sodium.join("system/libsodium.so.23").exists());
    assert_eq!(
        raw(&out.join("azb_sodium"), &format!("{tag}-amd64"))["layers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Another store builds the same artifact, so the same digests.
    let other = ctx.root().join("other-store");
    let again = run(ctx.azb_with_store(&other).args([
        "build",
        "--output",
        &format!("extensions:{}", ctx.root().join("ext2").display()),
    ]));
    assert_eq!(again, stdout);

    // A server without the extension, the image's content mounted read-only where
    // CloudNativePG mounts it, and the two paths pointing there.
    let tag_suffix = format!("ext{}", std::process::id());
    let bare = fs_err::read_to_string(ctx.root().join("stacks/image.ron"))
        .unwrap()
        .replace(
            "name: \"azb/test\",",
            &format!("name: \"azb-{tag_suffix}/postgres\",\n    recipes: Only([]),"),
        );
    let definition = ctx.root().join("stacks/bare.ron");
    fs_err::write(&definition, bare).unwrap();
    let archive = ctx.root().join("bare.tar");
    ctx.ok(&[
        "--image",
        definition.to_str().unwrap(),
        "build",
        "--platform",
        "amd64",
        "--output",
        &format!("docker-archive:{}", archive.display()),
    ]);
    let image = format!("azb-{tag_suffix}/postgres:18");
    let loaded = run(Command::new("docker").arg("load").arg("-i").arg(&archive));
    assert!(loaded.contains(&image), "{loaded}");
    let _image = Removed("rmi", image.clone());
    let mut docker = Command::new("docker");
    docker.args(["run", "-d", "-e", "POSTGRES_PASSWORD=secret"]);
    docker.args(["-e", "LD_LIBRARY_PATH=/extensions/azb_sodium/system"]);
    for (name, rootfs) in [("azb_hello", &hello), ("azb_sodium", &sodium)] {
        docker
            .arg("-v")
            .arg(format!("{}:/extensions/{name}:ro", rootfs.display()));
    }
    docker.arg(&image).args([
        "-c",
        "extension_control_path=$system:/extensions/azb_hello/share:/extensions/azb_sodium/share",
        "-c",
        "dynamic_library_path=$libdir:/extensions/azb_hello/lib:/extensions/azb_sodium/lib",
    ]);
    let container = run(&mut docker).trim().to_owned();
    let _container = Removed("rm", container.clone());
    let psql = |sql: &str| {
        Command::new("docker")
            .args(["exec", "-e", "PGPASSWORD=secret", &container])
            .args([
                "psql",
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args(["-U", "postgres", "-c", sql])
            .output()
            .unwrap()
    };
    // Ready once the server answers on TCP (the first boot's own server does not listen).
    let start = Instant::now();
    while !psql("SELECT 1").status.success() {
        let logs = Command::new("docker")
            .args(["logs", &container])
            .output()
            .unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "not ready: {}",
            stderr(&logs)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let created = psql("CREATE EXTENSION azb_hello; SELECT azb_hello_add(2, 3)");
    assert!(created.status.success(), "{}", stderr(&created));
    assert_eq!(String::from_utf8_lossy(&created.stdout).trim(), "5");
    let created = psql("CREATE EXTENSION azb_sodium; SELECT azb_sodium_blake2b('abc')");
    assert!(created.status.success(), "{}", stderr(&created));
    assert_eq!(String::from_utf8_lossy(&created.stdout).trim(), BLAKE2B_ABC);
    // The image itself has no libsodium: system/ brought it.
    let listed = Command::new("docker")
        .args(["exec", &container, "sh", "-c", "ls /usr/lib/*/libsodium*"])
        .output()
        .unwrap();
    assert!(
        !listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    // Without the mounted path the server does not know the extension: the mount did it.
    let without = psql(
        "DROP EXTENSION azb_hello; SET extension_control_path = '$system'; CREATE EXTENSION azb_hello",
    );
    assert!(!without.status.success());
    assert!(
        stderr(&without).contains("is not available"),
        "{}",
        stderr(&without)
    );
}

#[test]
fn extension_images_of_an_image_without_extensions_are_refused() {
    shared();
    let ctx = TestContext::new();
    let out = ctx.root().join("ext");
    let failed = ctx.run(&[
        "build",
        "--output",
        &format!("extensions:{}", out.display()),
    ]);
    assert_eq!(failed.status.code(), Some(2), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("has no extension"),
        "{}",
        stderr(&failed)
    );
    assert!(!out.exists());
}
