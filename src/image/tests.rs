//! Whole-assembly tests: determinism, the budget, and what skopeo and umoci (installed
//! here) accept. The docker test is `#[ignore]`d: it needs a running Docker engine
//! (`cargo test --lib image -- --ignored`).

use std::io::Read;
use std::path::Path;
use std::process::Command;

use super::testing::{Fixture, artifact, base_layout, labels};
use super::*;
use crate::fs::err;
use crate::layer::elf::{machine as elf_machine, tests::header as elf_header};

const CREATED: i64 = 1_763_825_400; // 2025-11-22T15:30:00Z

fn request(base: &Path, platforms: &[Platform], artifacts: usize) -> ImageRequest {
    let platforms = platforms
        .iter()
        .map(|&platform| {
            let so = elf_header(platform.elf_machine(), true);
            let mut list = vec![artifact(
                "hello",
                &[
                    ("lib/hello.so", &so, 0o755),
                    ("share/extension/hello.control", b"comment = 'hi'\n", 0o644),
                    ("include/server/hello.h", b"int x;\n", 0o644),
                    ("licenses/hello/LICENSE", b"MIT\n", 0o644),
                ],
            )];
            for i in 1..artifacts {
                let control = format!("share/extension/e{i:02}.control");
                list.push(artifact(
                    &format!("e{i:02}"),
                    &[(&control, &vec![b'x'; i * 600], 0o644)],
                ));
            }
            PlatformImage {
                platform,
                base: base.to_owned(),
                base_ref: Some("base".into()),
                pg_major: 18,
                artifacts: list,
                packages: Vec::new(),
                runtime_files: vec![RuntimeFile {
                    path: "/etc/postgresql/version-info.json".into(),
                    contents: b"{}\n".to_vec(),
                    mode: 0o644,
                }],
                created: CREATED,
                labels: labels(),
                run: RunConfig::default(),
                packages_exact: false,
                sbom: None,
            }
        })
        .collect();
    ImageRequest {
        name: "azb/postgres".into(),
        tags: vec!["18.6-202511221530-test".into(), "18".into()],
        platforms,
        memo: None,
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?}:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn skopeo_inspect(reference: String, arch: Option<&str>) -> serde_json::Value {
    let mut cmd = Command::new("skopeo");
    if let Some(arch) = arch {
        cmd.args(["--override-arch", arch, "--override-os", "linux"]);
    }
    serde_json::from_str(&run(cmd.arg("inspect").arg(reference))).unwrap()
}

fn blob_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = err::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn outputs_parse() {
    assert_eq!(
        "oci:out/x".parse::<Output>().unwrap(),
        Output::OciDir("out/x".into())
    );
    assert_eq!(
        "docker-archive:a.tar".parse::<Output>().unwrap(),
        Output::DockerArchive("a.tar".into())
    );
    for bad in ["oci:", "tar:x", "x", "docker-archive"] {
        let error = bad.parse::<Output>().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("expected oci:DIR or docker-archive:FILE"),
            "{bad}"
        );
    }
}

#[test]
fn the_same_request_gives_the_same_bytes_from_different_bases_and_dirs() {
    let work = tempfile::tempdir().unwrap();
    let all = [Platform::Amd64, Platform::Arm64];
    let mut summaries = Vec::new();
    for n in ["one", "two"] {
        let base = work.path().join(format!("base-{n}"));
        base_layout(&base, &all, Fixture::Nested);
        let out = work.path().join(format!("out-{n}"));
        summaries.push(assemble(&request(&base, &all, 3), &Output::OciDir(out)).unwrap());
    }
    assert_eq!(summaries[0], summaries[1]);
    assert!(summaries[0].index_digest.is_some());
    assert_eq!(summaries[0].layers, 1 + 3 + 1);
    // Golden: fixed inputs give these bytes on every machine and every build of azb, unless
    // the layer format, the documents or the gzip backend change (then on purpose).
    assert_eq!(
        summaries[0].index_digest.as_ref().unwrap().to_string(),
        "sha256:944a312de2887d97b31913fb1c01c3c99b7dab14ea49400ba48263b2593e1077"
    );
    let (one, two) = (work.path().join("out-one"), work.path().join("out-two"));
    assert_eq!(
        err::read(one.join("index.json")).unwrap(),
        err::read(two.join("index.json")).unwrap()
    );
    assert_eq!(blob_names(&one), blob_names(&two));
    // Assembling again into an existing layout keeps it as it is.
    let again = assemble(
        &request(&work.path().join("base-one"), &all, 3),
        &Output::OciDir(one.clone()),
    );
    assert_eq!(again.unwrap(), summaries[0]);
    assert_eq!(blob_names(&one), blob_names(&two));
}

#[test]
fn past_the_budget_the_smallest_artifacts_fold_into_one_overflow_layer() {
    let names: Vec<String> = (0..40).map(|i| format!("e{i:02}")).collect();
    let sizes: Vec<(&str, u64)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), if i == 3 { 10 } else { 1000 - i as u64 }))
        .collect();
    let fold = folded(&sizes);
    let kept: Vec<&str> = sizes
        .iter()
        .zip(&fold)
        .filter(|(_, f)| !**f)
        .map(|(s, _)| s.0)
        .collect();
    let expected: Vec<String> = (0..30)
        .filter(|&i| i != 3)
        .map(|i| format!("e{i:02}"))
        .collect();
    assert_eq!(kept, expected, "the largest keep their layers");
    assert_eq!(folded(&sizes[..LAYER_BUDGET]), vec![false; LAYER_BUDGET]);

    let work = tempfile::tempdir().unwrap();
    base_layout(work.path(), &[Platform::Arm64], Fixture::Flat);
    let out = work.path().join("out");
    let summary = assemble(
        &request(work.path(), &[Platform::Arm64], 33),
        &Output::OciDir(out.clone()),
    );
    assert_eq!(summary.unwrap().layers, 1 + LAYER_BUDGET + 1);
    let info = skopeo_inspect(format!("oci:{}:18", out.display()), None);
    assert_eq!(
        info["Layers"].as_array().unwrap().len(),
        1 + LAYER_BUDGET + 1
    );
    // The overflow layer comes after the kept ones, holds the smallest, in request order,
    // and takes its newest artifact's time.
    let config = run(Command::new("skopeo").args([
        "inspect",
        "--config",
        &format!("oci:{}:18", out.display()),
    ]));
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    let history: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(
        history[LAYER_BUDGET],
        "azb extensions e01, e02, e03, e04 (azb-overflow)"
    );
    assert_eq!(history[1], "azb extension hello");
}

#[test]
fn skopeo_and_umoci_read_every_platform_of_a_multi_arch_layout() {
    let work = tempfile::tempdir().unwrap();
    let all = [Platform::Amd64, Platform::Arm64];
    let base = work.path().join("base");
    base_layout(&base, &all, Fixture::Nested);
    let out = work.path().join("out");
    let summary = assemble(&request(&base, &all, 2), &Output::OciDir(out.clone())).unwrap();
    let host = skopeo_inspect(format!("oci:{}:18", out.display()), None);
    assert_eq!(host["Architecture"], "amd64");
    for platform in all {
        let arch = platform.oci_arch();
        for tag in ["18", "18.6-202511221530-test"] {
            let info = skopeo_inspect(format!("oci:{}:{tag}", out.display()), Some(arch));
            assert_eq!(info["Architecture"], arch, "{tag}");
            assert_eq!(info["Layers"].as_array().unwrap().len(), 4);
            assert_eq!(info["Created"], "2025-11-22T15:30:00Z");
            assert_eq!(info["Labels"]["io.azb.postgresql.version"], "18.6");
            assert_eq!(info["Labels"]["org.example.base"], "yes");
        }
        let bundle = work.path().join(format!("bundle-{arch}"));
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:18.6-202511221530-test-{arch}", out.display()))
            .arg(&bundle));
        let rootfs = bundle.join("rootfs");
        let so = err::read(rootfs.join("usr/lib/postgresql/18/lib/hello.so")).unwrap();
        assert_eq!(elf_machine(&so), Some(platform.elf_machine()));
        assert!(
            rootfs
                .join("usr/share/postgresql/18/extension/hello.control")
                .is_file()
        );
        assert!(rootfs.join("usr/share/doc/azb/hello/LICENSE").is_file());
        assert!(rootfs.join("etc/postgresql/version-info.json").is_file());
        assert!(
            rootfs.join("usr/lib/postgresql/18/bin/postgres").is_file(),
            "base layer"
        );
        assert!(!rootfs.join("usr/lib/postgresql/18/include").exists());
        let os_release = err::read_to_string(rootfs.join("etc/os-release")).unwrap();
        assert!(os_release.contains(&format!("ARCH={arch}")));
    }
    let manifests: Vec<Platform> = summary.manifests.iter().map(|(p, _)| *p).collect();
    assert_eq!(manifests, all);
}

#[test]
fn a_single_platform_layout_names_its_manifest_by_tag() {
    let work = tempfile::tempdir().unwrap();
    base_layout(work.path(), &[Platform::Arm64], Fixture::Flat);
    let out = work.path().join("out");
    let summary = assemble(
        &request(work.path(), &[Platform::Arm64], 1),
        &Output::OciDir(out.clone()),
    );
    assert_eq!(summary.unwrap().index_digest, None);
    let info = skopeo_inspect(format!("oci:{}:18", out.display()), Some("arm64"));
    assert_eq!(info["Layers"].as_array().unwrap().len(), 3);
    let bundle = work.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:18", out.display()))
        .arg(&bundle));
    assert!(
        bundle
            .join("rootfs/usr/lib/postgresql/18/lib/hello.so")
            .is_file()
    );
}

#[test]
fn wrong_machines_stray_paths_and_tampered_base_blobs_are_refused() {
    let work = tempfile::tempdir().unwrap();
    base_layout(work.path(), &[Platform::Arm64], Fixture::Flat);
    let out = Output::OciDir(work.path().join("out"));
    let mut req = request(work.path(), &[Platform::Arm64], 1);
    req.platforms[0].artifacts.push(artifact(
        "foo",
        &[("lib/foo.so", &elf_header(62, true), 0o755)],
    ));
    let error = assemble(&req, &out).unwrap_err().to_string();
    assert!(
        error.contains(
            "x86-64 file lib/foo.so in artifact `foo` cannot go into a linux/arm64 image"
        ),
        "{error}"
    );

    req.platforms[0].artifacts[1] = artifact("foo", &[("etc/foo.conf", b"x", 0o644)]);
    let error = assemble(&req, &out).unwrap_err().to_string();
    assert!(
        error.contains("artifact `foo` holds `etc/foo.conf`"),
        "{error}"
    );

    req.platforms[0].artifacts.pop();
    let base_layer = err::read_dir(work.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| err::read(p).unwrap().starts_with(&[0x1f, 0x8b]))
        .unwrap();
    let mut bytes = err::read(&base_layer).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    err::write(&base_layer, bytes).unwrap();
    let error = assemble(&req, &out).unwrap_err();
    assert!(
        matches!(&error, Error::BlobMismatch { path, .. } if *path == base_layer),
        "{error}"
    );
}

#[test]
fn a_docker_archive_holds_one_platform_with_manifest_json_and_an_oci_layout() {
    let work = tempfile::tempdir().unwrap();
    let all = [Platform::Amd64, Platform::Arm64];
    base_layout(work.path(), &all, Fixture::Nested);
    let file = work.path().join("image.tar");
    let out = Output::DockerArchive(file.clone());
    let error = assemble(&request(work.path(), &all, 1), &out).unwrap_err();
    assert!(
        error.to_string().contains("pass --platform amd64 or arm64"),
        "{error}"
    );

    assemble(&request(work.path(), &[Platform::Amd64], 2), &out).unwrap();
    let first = err::read(&file).unwrap();
    assemble(&request(work.path(), &[Platform::Amd64], 2), &out).unwrap();
    assert_eq!(
        first,
        err::read(&file).unwrap(),
        "the archive is reproducible"
    );
    let mut archive = tar::Archive::new(&first[..]);
    let mut paths = Vec::new();
    let mut manifest = String::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        assert_eq!(entry.header().mtime().unwrap(), CREATED as u64);
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path == "manifest.json" {
            entry.read_to_string(&mut manifest).unwrap();
        }
        paths.push(path);
    }
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["azb/postgres:18.6-202511221530-test", "azb/postgres:18"])
    );
    assert_eq!(manifest[0]["Layers"].as_array().unwrap().len(), 4);
    // skopeo reads both halves: Docker's manifest.json and the OCI layout.
    let docker = skopeo_inspect(format!("docker-archive:{}", file.display()), None);
    let oci = skopeo_inspect(format!("oci-archive:{}:18", file.display()), None);
    for key in ["Architecture", "Created", "Labels", "Env"] {
        assert_eq!(docker[key], oci[key], "{key}");
    }
    assert_eq!(docker["Layers"].as_array().unwrap().len(), 4);
    assert_eq!(oci["Architecture"], "amd64");
}

/// Builds a runnable base from the host's `cat` and its libraries, through `docker
/// import` and `skopeo copy`, then loads the assembled archive and reads a file with it.
/// Needs Docker: `cargo test --lib image -- --ignored`.
#[test]
#[ignore = "needs a running Docker engine"]
fn docker_loads_and_runs_the_archive() {
    let work = tempfile::tempdir().unwrap();
    let mut rootfs = layer::LayerContent::default();
    let ldd = run(Command::new("ldd").arg("/usr/bin/cat"));
    let mut files: Vec<String> = ldd
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(str::to_owned)
        .collect();
    files.push("/usr/bin/cat".into());
    for file in &files {
        let data = err::read(file).unwrap();
        rootfs.insert(
            file.trim_start_matches('/'),
            layer::Entry::File(data, 0o755),
        );
    }
    let blob = rootfs.seal(0).unwrap();
    let rootfs_tar = work.path().join("rootfs.tar.gz");
    err::write(&rootfs_tar, blob.memory()).unwrap();
    let id = std::process::id();
    let (base_image, image) = (
        format!("azb-image-test-base:{id}"),
        format!("azb-image-test/pg:t{id}"),
    );
    struct Cleanup(Vec<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for image in &self.0 {
                let _ = Command::new("docker").args(["rmi", "-f", image]).output();
            }
        }
    }
    let _cleanup = Cleanup(vec![base_image.clone(), image.clone()]);
    run(Command::new("docker")
        .args(["import", "--change", "CMD [\"/usr/bin/cat\"]"])
        .arg(&rootfs_tar)
        .arg(&base_image));
    let base = work.path().join("base");
    run(Command::new("skopeo")
        .args(["copy", &format!("docker-daemon:{base_image}")])
        .arg(format!("oci:{}:base", base.display())));

    let mut req = request(&base, &[Platform::Amd64], 2);
    req.name = "azb-image-test/pg".into();
    req.tags = vec![format!("t{id}")];
    let file = work.path().join("image.tar");
    assemble(&req, &Output::DockerArchive(file.clone())).unwrap();
    let loaded = run(Command::new("docker").arg("load").arg("-i").arg(&file));
    assert!(loaded.contains(&image), "{loaded}");
    let control = run(Command::new("docker").args([
        "run",
        "--rm",
        &image,
        "/usr/bin/cat",
        "/usr/share/postgresql/18/extension/hello.control",
    ]));
    assert_eq!(control, "comment = 'hi'\n");
}

#[test]
fn the_layer_the_store_makes_is_the_one_assembly_would_make() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(store_dir.path()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let write = |path: &str, bytes: &[u8], mode: u32| {
        let path = out.path().join(path);
        err::create_dir_all(path.parent().unwrap()).unwrap();
        err::write(&path, bytes).unwrap();
        use std::os::unix::fs::PermissionsExt;
        err::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    write("lib/hello.so", &elf_header(62, true), 0o775);
    write("lib/bitcode/hello/a.bc", b"bc", 0o600);
    write("share/extension/hello.control", b"comment = 'hi'\n", 0o644);
    write("include/server/hello.h", b"int x;\n", 0o644);
    write("licenses/hello/LICENSE", b"MIT\n", 0o444);
    std::os::unix::fs::symlink("hello.so", out.path().join("lib/hello-1.so")).unwrap();
    let drv = crate::drv::Derivation::example("hello");
    let record = crate::store::BuildRecord {
        builder: "test".into(),
        source_time: 1_700_000_123,
        duration_ms: 1,
    };
    let real = store.add_artifact(&drv, out.path(), record).unwrap();
    let artifact = ArtifactLayer {
        name: "hello".into(),
        object: store.object_path(&real),
        tar_size: real.tar_size,
        layer: None,
        mtime: real.source_time,
    };
    let (content, needs) = LayerContent::from_artifact(
        &artifact,
        Platform::Amd64,
        Layout::Debian(18),
        Keep::Contents,
    )
    .unwrap();
    let made = content.seal(real.source_time).unwrap();
    assert_eq!(
        (made.digest, made.diff_id, made.size),
        (real.layer.digest, real.layer.diff_id, real.layer.size)
    );
    assert_eq!(made.memory(), err::read(store.layer_path(&real)).unwrap());
    let elves: Vec<&str> = needs.iter().map(|n| n.path.as_str()).collect();
    assert_eq!(elves, ["usr/lib/postgresql/18/lib/hello.so"]);
}

#[test]
fn each_platforms_sbom_is_attached_to_its_manifest_and_found_through_the_fallback_tag() {
    let work = tempfile::tempdir().unwrap();
    let all = [Platform::Amd64, Platform::Arm64];
    let base = work.path().join("base");
    base_layout(&base, &all, Fixture::Nested);
    let mut req = request(&base, &all, 1);
    for image in &mut req.platforms {
        image.sbom = Some(
            format!(
                "{{\"bomFormat\":\"CycloneDX\",\"for\":\"{}\"}}",
                image.platform
            )
            .into_bytes(),
        );
    }
    let out = work.path().join("out");
    let summary = assemble(&req, &Output::OciDir(out.clone())).unwrap();
    let blob = |digest: &str| {
        err::read(
            out.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let json = |bytes: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&bytes).unwrap();
    for (platform, manifest) in &summary.manifests {
        let tag = manifest.to_string().replace(':', "-");
        // skopeo reads the referrers index under the fallback tag.
        let referrers = json(
            run(Command::new("skopeo")
                .args(["inspect", "--raw"])
                .arg(format!("oci:{}:{tag}", out.display())))
            .into_bytes(),
        );
        let listed = &referrers["manifests"].as_array().unwrap()[..];
        assert_eq!(listed.len(), 1, "{referrers}");
        assert_eq!(listed[0]["artifactType"], SBOM_TYPE);
        let artifact = json(blob(listed[0]["digest"].as_str().unwrap()));
        assert_eq!(artifact["artifactType"], SBOM_TYPE);
        assert_eq!(artifact["subject"]["digest"], manifest.to_string());
        assert_eq!(
            artifact["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        let layer = &artifact["layers"][0];
        assert_eq!(layer["mediaType"], SBOM_TYPE);
        let sbom = json(blob(layer["digest"].as_str().unwrap()));
        assert_eq!(sbom["for"], platform.to_string());
    }
    // The image itself reads as before.
    let info = skopeo_inspect(format!("oci:{}:18", out.display()), Some("arm64"));
    assert_eq!(info["Architecture"], "arm64");
}

const SBOM_TYPE: &str = "application/vnd.cyclonedx+json";

#[test]
fn a_memo_of_the_base_gives_the_same_image_and_is_used() {
    let work = tempfile::tempdir().unwrap();
    let base = work.path().join("base");
    base_layout(&base, &[Platform::Amd64], Fixture::Flat);
    let mut req = request(&base, &[Platform::Amd64], 2);
    // A package the base lacks: it gets a layer of its own.
    let mut data = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(2);
    header.set_mode(0o644);
    header.set_cksum();
    data.append_data(&mut header, "usr/share/p/file", &b"p\n"[..])
        .unwrap();
    req.platforms[0].packages = vec![RuntimePackage {
        name: "p".into(),
        arch: "amd64".into(),
        data: data.into_inner().unwrap(),
        control: "Package: p\nArchitecture: amd64\nVersion: 1\n".into(),
    }];
    let plain = assemble(&req, &Output::OciDir(work.path().join("plain"))).unwrap();
    let memo = work.path().join("memo");
    req.memo = Some(memo.clone());
    let first = assemble(&req, &Output::OciDir(work.path().join("first"))).unwrap();
    let second = assemble(&req, &Output::OciDir(work.path().join("second"))).unwrap();
    assert_eq!(plain, first);
    assert_eq!(first, second);
    let kept: Vec<_> = err::read_dir(&memo).unwrap().collect();
    assert_eq!(kept.len(), 1);
    // Later runs read the memo, not the base: a memo saying the base has the package
    // leaves its layer out.
    let path = kept[0].as_ref().unwrap().path();
    err::write(&path, br#"{"paths":{},"packages":["p:amd64"],"conf":[]}"#).unwrap();
    let third = assemble(&req, &Output::OciDir(work.path().join("third"))).unwrap();
    assert_eq!(third.layers, first.layers - 1);
}

#[test]
fn a_docker_archive_that_holds_the_image_is_left_alone_and_any_other_replaced() {
    use std::os::unix::fs::MetadataExt;
    let work = tempfile::tempdir().unwrap();
    let base = work.path().join("base");
    base_layout(&base, &[Platform::Amd64], Fixture::Flat);
    let mut req = request(&base, &[Platform::Amd64], 2);
    let file = work.path().join("image.tar");
    let out = Output::DockerArchive(file.clone());
    let stamp = || {
        let m = err::metadata(&file).unwrap();
        (m.ino(), m.ctime(), m.ctime_nsec())
    };
    assemble(&req, &out).unwrap();
    let bytes = err::read(&file).unwrap();
    let first = stamp();
    assemble(&req, &out).unwrap();
    assert_eq!(stamp(), first, "the same archive was written again");
    // Damaged (shorter): replaced by the same bytes as before.
    err::write(&file, &bytes[..bytes.len() - 512]).unwrap();
    assemble(&req, &out).unwrap();
    assert_eq!(err::read(&file).unwrap(), bytes);
    // Another tag: another archive.
    let before = stamp();
    req.tags[1] = "other".into();
    assemble(&req, &out).unwrap();
    assert_ne!(stamp(), before);
    assert_ne!(err::read(&file).unwrap(), bytes);
}
