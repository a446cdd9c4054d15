//! Tests of the store: round trips, sharing, quarantine, layout versions.

use std::io::Read;

use super::*;

fn drv(name: &str) -> Derivation {
    Derivation::example(name)
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

/// A store holding the artifact of `x` (built from `out`).
struct Fixture {
    root: tempfile::TempDir,
    store: Store,
    out: tempfile::TempDir,
    d: Derivation,
    real: Realisation,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let out = tempfile::tempdir().unwrap();
    artifact(out.path());
    let d = drv("x");
    let real = store.add_artifact(&d, out.path(), record()).unwrap();
    Fixture {
        root,
        store,
        out,
        d,
        real,
    }
}

fn names(tar: impl Read) -> Vec<String> {
    tar::Archive::new(tar)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

#[test]
fn add_then_lookup_gives_the_object_and_its_image_layer() {
    let Fixture {
        root: _root,
        store,
        out: _out,
        d,
        real,
    } = fixture();
    let Lookup::Hit(found) = store.lookup(&d.hash()).unwrap() else {
        panic!("expected a hit")
    };
    assert_eq!(*found, real);
    let mut tar = Vec::new();
    read_object(&store.object_path(&real))
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(ObjectHash::of(&tar), real.object);
    assert_eq!(tar.len() as u64, real.tar_size);
    assert_eq!(
        names(&tar[..]),
        [
            "lib/",
            "lib/x.so",
            "share/",
            "share/extension/",
            "share/extension/x.control"
        ]
    );
    // The layer: gzip, image paths (every parent), mtime = the source time.
    let blob = err::read(store.layer_path(&real)).unwrap();
    assert_eq!(Sha256::of(&blob), real.layer.digest);
    assert_eq!(blob.len() as u64, real.layer.size);
    let mut layer_tar = Vec::new();
    flate2::read::GzDecoder::new(&blob[..])
        .read_to_end(&mut layer_tar)
        .unwrap();
    assert_eq!(Sha256::of(&layer_tar), real.layer.diff_id);
    assert_eq!(
        names(&layer_tar[..]),
        [
            "usr/",
            "usr/lib/",
            "usr/lib/postgresql/",
            "usr/lib/postgresql/18/",
            "usr/lib/postgresql/18/lib/",
            "usr/lib/postgresql/18/lib/x.so",
            "usr/share/",
            "usr/share/postgresql/",
            "usr/share/postgresql/18/",
            "usr/share/postgresql/18/extension/",
            "usr/share/postgresql/18/extension/x.control",
        ]
    );
    let mtimes: Vec<u64> = tar::Archive::new(&layer_tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().header().mtime().unwrap())
        .collect();
    assert!(mtimes.iter().all(|&t| t == 1), "{mtimes:?}");
    assert_eq!(store.derivation(&d.hash()).unwrap().unwrap(), d);
}

#[test]
fn an_artifact_of_another_machine_or_with_stray_paths_is_refused_and_nothing_is_recorded() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let out = tempfile::tempdir().unwrap();
    artifact(out.path());
    err::write(
        out.path().join("lib/x.so"),
        crate::layer::elf::tests::header(183, true),
    )
    .unwrap();
    let d = drv("x");
    let error = store.add_artifact(&d, out.path(), record()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("aarch64 file lib/x.so in artifact `x` cannot go into a linux/amd64 image"),
        "{error}"
    );
    assert!(store.realisation(&d.hash()).unwrap().is_none());
    err::remove_file(out.path().join("lib/x.so")).unwrap();
    err::write(out.path().join("README"), "x").unwrap();
    let error = store.add_artifact(&d, out.path(), record()).unwrap_err();
    assert!(error.to_string().contains("holds `README`"), "{error}");
    assert!(matches!(store.lookup(&d.hash()).unwrap(), Lookup::Miss));
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
    let Fixture {
        root: _root,
        store,
        out: _out,
        d,
        real,
    } = fixture();
    let object = store.layout().object(&real.object);
    let mut bytes = err::read(&object).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0xff;
    err::write(&object, &bytes).unwrap();
    match store.lookup(&d.hash()).unwrap() {
        Lookup::Corrupt { what, quarantine } => {
            assert_eq!(what, format!("object {}", real.object));
            assert!(quarantine.is_file());
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(!object.exists());
    assert!(matches!(store.lookup(&d.hash()).unwrap(), Lookup::Miss));
}

#[test]
fn a_damaged_layer_blob_is_quarantined_and_reported() {
    let Fixture {
        root: _root,
        store,
        out,
        d,
        real,
    } = fixture();
    let blob = store.layer_path(&real);
    err::write(&blob, b"not the layer").unwrap();
    match store.lookup(&d.hash()).unwrap() {
        Lookup::Corrupt { what, quarantine } => {
            assert_eq!(what, format!("layer sha256:{}", real.layer.digest));
            assert_eq!(err::read(&quarantine).unwrap(), b"not the layer");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(!blob.exists());
    assert!(matches!(store.lookup(&d.hash()).unwrap(), Lookup::Miss));
    // Building again puts it back.
    let again = store.add_artifact(&d, out.path(), record()).unwrap();
    assert_eq!(again, real);
    assert!(matches!(store.lookup(&d.hash()).unwrap(), Lookup::Hit(_)));
}

#[test]
fn an_empty_or_garbled_realisation_is_quarantined_not_fatal() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let out = tempfile::tempdir().unwrap();
    artifact(out.path());
    let d = drv("x");
    for bad in [&b""[..], b"{\"drv\": 1", b"\x00\xff"] {
        store.add_artifact(&d, out.path(), record()).unwrap();
        let path = store.layout().realisation(&d.hash());
        err::write(&path, bad).unwrap();
        assert!(
            store.realisation(&d.hash()).unwrap().is_none(),
            "plan sees it as absent"
        );
        match store.lookup(&d.hash()).unwrap() {
            Lookup::Corrupt { what, quarantine } => {
                assert_eq!(what, "realisation");
                assert_eq!(err::read(&quarantine).unwrap(), bad);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        assert!(!path.exists());
        assert!(matches!(store.lookup(&d.hash()).unwrap(), Lookup::Miss));
    }
}

#[test]
fn a_store_of_another_layout_version_is_refused() {
    let root = tempfile::tempdir().unwrap();
    err::write(root.path().join("store-version"), "999\n").unwrap();
    let e = Store::open(root.path()).unwrap_err();
    assert!(e.to_string().contains("layout version 999"), "{e}");
}

#[test]
fn gc_keeps_the_compile_caches_of_kept_derivations_and_removes_others_once_old() {
    let f = fixture();
    let kept = f.store.layout().compile_cache(&f.d);
    let mut rebuilt = f.d.clone();
    rebuilt.builder = crate::drv::BuilderId::new("another builder").unwrap();
    let stale = f.store.layout().compile_cache(&rebuilt);
    assert_ne!(kept, stale);
    for dir in [&kept, &stale] {
        err::create_dir_all(dir.join("0")).unwrap();
        err::write(dir.join("0/result"), b"cached").unwrap();
    }
    let keep = std::collections::BTreeSet::from([f.d.hash()]);
    // Young caches stay (a build may have just kept one).
    let report = f
        .store
        .gc(&keep, std::time::Duration::from_secs(3600))
        .unwrap();
    assert_eq!(report.compile_caches, 0);
    assert!(stale.is_dir());
    let report = f.store.gc(&keep, std::time::Duration::ZERO).unwrap();
    assert_eq!(report.compile_caches, 1);
    assert!(
        !stale.exists(),
        "no kept derivation builds with that builder"
    );
    assert!(
        kept.join("0/result").is_file(),
        "the kept derivation's cache stays"
    );
    // Nothing kept: its cache goes too.
    let report = f
        .store
        .gc(&Default::default(), std::time::Duration::ZERO)
        .unwrap();
    assert_eq!(report.compile_caches, 1);
    assert!(!kept.exists());
}
