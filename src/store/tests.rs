//! Tests of the store: round trips, sharing, quarantine, layout versions.

use super::*;
use crate::drv::PROTOCOL;

fn drv(name: &str) -> Derivation {
    Derivation {
        protocol: PROTOCOL,
        name: name.parse().unwrap(),
        platform: Platform::Amd64,
        pg_major: 18,
        commit: "0123456789abcdef0123456789abcdef01234567".parse().unwrap(),
        subdir: None,
        build_kind: "pgxs".into(),
        build_flags: vec![],
        build_packages: vec![],
        builder: "test".into(),
        deps: BTreeMap::new(),
    }
}

fn artifact(dir: &Path) {
    err::create_dir_all(dir.join("lib")).unwrap();
    err::create_dir_all(dir.join("share/extension")).unwrap();
    err::write(dir.join("lib/x.so"), b"\x7fELF fake").unwrap();
    err::write(dir.join("share/extension/x.control"), b"comment = 'x'\n").unwrap();
}

fn record() -> BuildRecord {
    BuildRecord {
        builder: "test".into(),
        source_time: 1,
        duration_ms: 5,
    }
}

#[test]
fn add_then_lookup_returns_the_same_tar() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let out = tempfile::tempdir().unwrap();
    artifact(out.path());
    let d = drv("x");
    let real = store.add_artifact(&d, out.path(), record()).unwrap();
    let Lookup::Hit(found, tar) = store.lookup(&d.hash()).unwrap() else {
        panic!("expected a hit")
    };
    assert_eq!(found, real);
    assert_eq!(ObjectHash::of(&tar), real.object);
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "lib",
            "lib/x.so",
            "share",
            "share/extension",
            "share/extension/x.control"
        ]
    );
    assert_eq!(store.derivation(&d.hash()).unwrap().unwrap(), d);
}

#[test]
fn identical_artifacts_share_one_object_across_stores_and_paths() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (out_a, out_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    artifact(out_a.path());
    artifact(out_b.path());
    let ra = Store::open(a.path())
        .unwrap()
        .add_artifact(&drv("x"), out_a.path(), record())
        .unwrap();
    let store_b = Store::open(b.path()).unwrap();
    let rb = store_b
        .add_artifact(&drv("y"), out_b.path(), record())
        .unwrap();
    assert_eq!(ra.object, rb.object);
    assert_eq!(ra.compressed_size, rb.compressed_size);
    let rc = store_b
        .add_artifact(&drv("z"), out_b.path(), record())
        .unwrap();
    assert_eq!(rc.object, rb.object);
}

#[test]
fn corrupted_object_is_quarantined_and_reported() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let out = tempfile::tempdir().unwrap();
    artifact(out.path());
    let d = drv("x");
    let real = store.add_artifact(&d, out.path(), record()).unwrap();
    let object = store.layout().object(&real.object);
    let mut bytes = err::read(&object).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0xff;
    err::write(&object, &bytes).unwrap();
    match store.lookup(&d.hash()).unwrap() {
        Lookup::Corrupt {
            object: bad,
            quarantine,
        } => {
            assert_eq!(bad, real.object);
            assert!(quarantine.is_file());
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(!object.exists());
    assert!(matches!(store.lookup(&d.hash()).unwrap(), Lookup::Miss));
}

#[test]
fn a_store_of_another_layout_version_is_refused() {
    let root = tempfile::tempdir().unwrap();
    err::write(root.path().join("store-version"), "999\n").unwrap();
    let e = Store::open(root.path()).unwrap_err();
    assert!(e.to_string().contains("layout version 999"), "{e}");
}
