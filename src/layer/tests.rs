//! Tests of the normaliser, the path map and artifact layers.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::digest::Sha256;
use crate::fs::err;

/// (path, mtime, mode, uid, gid, entry type byte, user name) of a tar entry.
pub(crate) type Header = (String, u64, u32, u64, u64, u8, Option<String>);

/// The headers of every entry of a tar.
pub(crate) fn headers(tar: &[u8]) -> Vec<Header> {
    ::tar::Archive::new(tar)
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.mtime().unwrap(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.entry_type().as_byte(),
                h.username()
                    .unwrap()
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned),
            )
        })
        .collect()
}

fn write(dir: &Path, path: &str, bytes: &[u8], mode: u32) {
    let path = dir.join(path);
    err::create_dir_all(path.parent().unwrap()).unwrap();
    err::write(&path, bytes).unwrap();
    err::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn the_normaliser_writes_only_the_entries_own_facts() {
    let mut tar = NormalTar::new(Vec::new(), 42);
    tar.dir("a").unwrap();
    tar.file("a/x", 0o4755, 3, &b"abc"[..]).unwrap();
    tar.symlink("a/y", "x").unwrap();
    let bytes = tar.finish().unwrap();
    assert_eq!(
        headers(&bytes),
        [
            ("a/".into(), 42, 0o755, 0, 0, b'5', None),
            ("a/x".into(), 42, 0o4755, 0, 0, b'0', None),
            ("a/y".into(), 42, 0o777, 0, 0, b'2', None),
        ]
    );
    // Negative times are clamped, not wrapped.
    let mut tar = NormalTar::new(Vec::new(), -5);
    tar.dir("d").unwrap();
    assert_eq!(headers(&tar.finish().unwrap())[0].1, 0);
    assert_eq!((normal_mode(0o700), normal_mode(0o640)), (0o755, 0o644));
}

#[test]
fn artifact_paths_map_onto_the_debian_layout() {
    let cases = [
        ("lib/x.so", Ok(Some("usr/lib/postgresql/18/lib/x.so"))),
        ("bin", Ok(Some("usr/lib/postgresql/18/bin"))),
        (
            "share/extension/x.control",
            Ok(Some("usr/share/postgresql/18/extension/x.control")),
        ),
        (
            "licenses/x/LICENSE",
            Ok(Some("usr/share/doc/azb/x/LICENSE")),
        ),
        ("include/server/x.h", Ok(None)),
        ("", Ok(None)),
        ("etc/passwd", Err(OutsideLayout)),
    ];
    for (path, expected) in cases {
        assert_eq!(
            image_path(path, 18).as_ref().map(|p| p.as_deref()),
            expected.as_ref().map(|e| *e),
            "{path}"
        );
    }
    assert_eq!(relative_path(Path::new("./a/./b")).as_deref(), Some("a/b"));
    assert_eq!(relative_path(Path::new("a/../b")), None);
    assert_eq!(relative_path(Path::new("/a")), None);
}

#[test]
fn an_artifact_layer_has_every_parent_fixed_headers_and_no_headers_dir() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "lib/x.so", &elf::tests::header(62, true), 0o700);
    write(dir.path(), "include/server/x.h", b"int x;", 0o644);
    write(dir.path(), "share/extension/x.control", b"c", 0o600);
    std::os::unix::fs::symlink("x.so", dir.path().join("lib/y.so")).unwrap();
    let (blob, digests) = artifact_layer(
        "x",
        dir.path(),
        Platform::Amd64,
        18,
        1_700_000_000,
        Vec::new(),
    )
    .unwrap();
    assert_eq!(Sha256::of(&blob), digests.digest);
    assert_eq!(blob.len() as u64, digests.size);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&blob[..])
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(Sha256::of(&tar), digests.diff_id);
    let t: i64 = 1_700_000_000;
    let dir_entry = |p: &str| (format!("{p}/"), t as u64, 0o755, 0, 0, b'5', None);
    assert_eq!(
        headers(&tar),
        [
            dir_entry("usr"),
            dir_entry("usr/lib"),
            dir_entry("usr/lib/postgresql"),
            dir_entry("usr/lib/postgresql/18"),
            dir_entry("usr/lib/postgresql/18/lib"),
            (
                "usr/lib/postgresql/18/lib/x.so".into(),
                t as u64,
                0o755,
                0,
                0,
                b'0',
                None
            ),
            (
                "usr/lib/postgresql/18/lib/y.so".into(),
                t as u64,
                0o777,
                0,
                0,
                b'2',
                None
            ),
            dir_entry("usr/share"),
            dir_entry("usr/share/postgresql"),
            dir_entry("usr/share/postgresql/18"),
            dir_entry("usr/share/postgresql/18/extension"),
            (
                "usr/share/postgresql/18/extension/x.control".into(),
                t as u64,
                0o644,
                0,
                0,
                b'0',
                None
            ),
        ]
    );
    // The same directory always gives the same blob; another mtime another one.
    let again = artifact_layer("x", dir.path(), Platform::Amd64, 18, t, Vec::new()).unwrap();
    assert_eq!(again.1, digests);
    let other = artifact_layer("x", dir.path(), Platform::Amd64, 18, t + 1, Vec::new()).unwrap();
    assert_ne!(other.1.digest, digests.digest);
}

#[test]
fn wrong_machines_stray_paths_and_special_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "lib/x.so", &elf::tests::header(62, true), 0o755);
    let error = artifact_layer("x", dir.path(), Platform::Arm64, 18, 0, Vec::new()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "x86-64 file lib/x.so in artifact `x` cannot go into a linux/arm64 image (it needs aarch64)"
    );
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "etc/x.conf", b"x", 0o644);
    let error = artifact_layer("x", dir.path(), Platform::Amd64, 18, 0, Vec::new()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("artifact `x` holds `etc`, outside lib/"),
        "{error}"
    );
    let dir = tempfile::tempdir().unwrap();
    err::create_dir_all(dir.path().join("share")).unwrap();
    let fifo = dir.path().join("share/pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let error = walk(dir.path()).unwrap_err();
    assert!(matches!(error, Error::SpecialFile { path } if path == fifo));
}

#[test]
fn golden_layer_digests() {
    // Fixed inputs, fixed bytes: a change of the gzip backend (flate2's, through feature
    // unification) or of the normaliser shows here before it changes users' image digests.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "lib/x.so", &elf::tests::header(62, true), 0o755);
    write(
        dir.path(),
        "share/extension/x.control",
        b"comment = 'x'\n",
        0o644,
    );
    let (_, digests) = artifact_layer(
        "x",
        dir.path(),
        Platform::Amd64,
        18,
        1_700_000_000,
        Vec::new(),
    )
    .unwrap();
    assert_eq!(
        (
            digests.diff_id.to_string(),
            digests.digest.to_string(),
            digests.size
        ),
        (
            "6bb90c30424a900a05ffeb1f6183977b435eb6f6c8780a876dcee0d662695103".to_owned(),
            "0de0ec2085ab559795b573a455ba3f7a6727ebb7d14dfd4ef11ed5c25f5614bf".to_owned(),
            305
        )
    );
}
