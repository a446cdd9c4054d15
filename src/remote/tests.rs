//! Tests of trust and of a file:// cache between two real stores.

use std::cell::RefCell;

use super::*;
use crate::store::{BuildRecord, Lookup};

/// A store in a temp dir holding the artifact of `x`.
struct Built {
    _dir: tempfile::TempDir,
    store: Store,
    drv: Derivation,
    record: Realisation,
}

fn built(name: &str) -> Built {
    built_with(name, "SELECT 1;\n")
}

/// The artifact of `name` whose SQL file holds `sql` (another `sql`: the same derivation
/// with another output, as a build that is not deterministic gives).
fn built_with(name: &str, sql: &str) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let out = dir.path().join("out");
    fs_err::create_dir_all(out.join("share/extension")).unwrap();
    fs_err::write(out.join("share/extension/x.control"), "comment = 'x'\n").unwrap();
    fs_err::write(out.join("share/extension/x--1.sql"), sql).unwrap();
    let drv = Derivation::example(name);
    let build = BuildRecord {
        builder: "test".into(),
        source_time: 1_700_000_000,
        duration_ms: 3,
    };
    let record = store.add_artifact(&drv, &out, build).unwrap();
    Built {
        _dir: dir,
        store,
        drv,
        record,
    }
}

fn empty_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

/// Collects warnings.
struct Warnings(RefCell<Vec<String>>);

impl Warnings {
    fn new() -> Self {
        Self(RefCell::new(Vec::new()))
    }
    fn push(&self, message: &str) {
        self.0.borrow_mut().push(message.to_owned());
    }
    fn all(&self) -> String {
        self.0.borrow().join("\n")
    }
}

#[test]
fn a_signature_covers_every_field_that_reaches_an_image() {
    let key = SecretKey::parse(&format!("ci-1:{}", "07".repeat(32))).unwrap();
    let trust = Trust::new(vec![key.public()]);
    let mut record = built("x").record;
    assert_eq!(trust.check(&record), Err(Refusal::Unsigned));
    record.signatures = vec![key.sign(&record)];
    assert_eq!(trust.check(&record).unwrap(), "ci-1");
    // duration and signatures are not covered; everything else is.
    let mut slower = record.clone();
    slower.duration_ms += 1000;
    assert!(trust.check(&slower).is_ok());
    let tampered: [fn(&mut Realisation); 9] = [
        |r| r.object = crate::digest::ObjectHash::of(b"other"),
        |r| r.tar_size += 1,
        |r| r.layer.digest = crate::digest::Sha256::of(b"other"),
        |r| r.layer.diff_id = crate::digest::Sha256::of(b"other"),
        |r| r.layer.size += 1,
        |r| r.builder.push('!'),
        |r| r.source_time += 1,
        |r| r.name = "y".parse().unwrap(),
        |r| r.platform = crate::recipe::Platform::Arm64,
    ];
    for (i, change) in tampered.iter().enumerate() {
        let mut bad = record.clone();
        change(&mut bad);
        assert_eq!(
            trust.check(&bad),
            Err(Refusal::BadSignature("ci-1".into())),
            "change {i}"
        );
    }
    let other = SecretKey::parse(&format!("dev:{}", "09".repeat(32))).unwrap();
    let mut foreign = record.clone();
    foreign.signatures = vec![other.sign(&foreign)];
    assert_eq!(
        trust.check(&foreign),
        Err(Refusal::Untrusted(vec!["dev".into()]))
    );
    // A trusted key's name with another key's signature is a bad signature.
    let impostor = SecretKey::parse(&format!("ci-1:{}", "09".repeat(32))).unwrap();
    foreign.signatures = vec![impostor.sign(&foreign)];
    assert_eq!(
        trust.check(&foreign),
        Err(Refusal::BadSignature("ci-1".into()))
    );
}

#[test]
fn keys_round_trip_and_bad_ones_are_named() {
    let key = SecretKey::generate("ci-1").unwrap();
    let public = key.public();
    assert_eq!(PublicKey::parse(&public.to_string()).unwrap(), public);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ci.key");
    key.write_new(&file).unwrap();
    assert_eq!(SecretKey::read(&file).unwrap().public(), public);
    use std::os::unix::fs::PermissionsExt;
    let mode = fs_err::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(key.write_new(&file).is_err(), "never overwritten");
    for bad in [
        "ci-1",
        "ci-1:abc",
        ":00",
        "a b:00",
        &format!("x:{}", "zz".repeat(32)),
    ] {
        let error = PublicKey::parse(bad).unwrap_err();
        assert!(
            error.to_string().starts_with("bad public key"),
            "{bad}: {error}"
        );
    }
}

#[test]
fn a_file_cache_carries_an_entry_between_two_stores() {
    let a = built("x");
    let cache = tempfile::tempdir().unwrap();
    let url = format!("file://{}", cache.path().display());
    let target = open(&url).unwrap();
    let key = SecretKey::generate("ci-1").unwrap();
    let hash = a.drv.hash();
    let pushed = push(&a.store, target.as_ref(), &key, &[hash]).unwrap();
    assert_eq!(pushed, [(hash, PushOutcome::Uploaded)]);
    // Pushing again finds it; the local record kept the signature.
    let again = push(&a.store, target.as_ref(), &key, &[hash]).unwrap();
    assert_eq!(again, [(hash, PushOutcome::Present)]);
    assert_eq!(
        a.store
            .realisation(&hash)
            .unwrap()
            .unwrap()
            .signatures
            .len(),
        1
    );

    let (_b_dir, b) = empty_store();
    let remote = Remote::new(vec![open(&url).unwrap()], Trust::new(vec![key.public()]));
    let warnings = Warnings::new();
    let found = remote
        .substitute(&b, &a.drv, &|m| warnings.push(m))
        .expect("substituted");
    assert_eq!(found.url, url);
    assert_eq!(warnings.all(), "");
    let Lookup::Hit(record) = b.lookup(&hash).unwrap() else {
        panic!("not in B")
    };
    assert_eq!(
        (record.object, record.layer),
        (a.record.object, a.record.layer)
    );
    assert_eq!(b.derivation(&hash).unwrap().unwrap(), a.drv);
}

#[test]
fn bad_entries_are_refused_with_the_substituter_and_derivation_named_and_nothing_enters() {
    let a = built("x");
    let cache = tempfile::tempdir().unwrap();
    let url = format!("file://{}", cache.path().display());
    let key = SecretKey::generate("ci-1").unwrap();
    let hash = a.drv.hash();
    push(&a.store, open(&url).unwrap().as_ref(), &key, &[hash]).unwrap();
    let record_file = cache.path().join(format!("realisations/{hash}.json"));
    let good = fs_err::read(&record_file).unwrap();
    let object_file = cache
        .path()
        .join(format!("objects/{}.zst", a.record.object));
    let good_object = fs_err::read(&object_file).unwrap();

    let try_b = |trust: Vec<PublicKey>| {
        let (dir, b) = empty_store();
        let remote = Remote::new(vec![open(&url).unwrap()], Trust::new(trust));
        let warnings = Warnings::new();
        let found = remote.substitute(&b, &a.drv, &|m| warnings.push(m));
        assert!(found.is_none());
        assert!(matches!(b.lookup(&hash).unwrap(), Lookup::Miss));
        let stats = b.stats().unwrap();
        assert_eq!((stats.objects, stats.blobs), (0, 0), "nothing entered B");
        drop(dir);
        warnings.all()
    };
    // Signed by a key B does not trust.
    let untrusted = try_b(vec![SecretKey::generate("other").unwrap().public()]);
    assert!(
        untrusted.contains(&format!("refused the entry for {hash}")),
        "{untrusted}"
    );
    assert!(untrusted.contains(&url) && untrusted.contains("untrusted keys (ci-1)"));
    // Unsigned.
    let mut record: Realisation = serde_json::from_slice(&good).unwrap();
    record.signatures.clear();
    fs_err::write(&record_file, serde_json::to_vec(&record).unwrap()).unwrap();
    assert!(try_b(vec![key.public()]).contains("it is not signed"));
    // A tampered record (another object named, signature kept).
    let mut record: Realisation = serde_json::from_slice(&good).unwrap();
    record.source_time += 1;
    fs_err::write(&record_file, serde_json::to_vec(&record).unwrap()).unwrap();
    assert!(try_b(vec![key.public()]).contains("does not match its content (tampered)"));
    // A tampered object under a good record: refused by the store's check.
    fs_err::write(&record_file, &good).unwrap();
    let mut bytes = good_object.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    fs_err::write(&object_file, &bytes).unwrap();
    let tampered = try_b(vec![key.public()]);
    assert!(
        tampered.contains(&format!("could not substitute {hash}")) && tampered.contains("object"),
        "{tampered}"
    );
    // Garbage where the record should be.
    fs_err::write(&object_file, &good_object).unwrap();
    fs_err::write(&record_file, b"{").unwrap();
    assert!(try_b(vec![key.public()]).contains("not a realisation"));
}

#[test]
fn a_cache_that_is_down_is_a_warning_and_is_not_asked_again() {
    let a = built("x");
    let b = built("y");
    // A file where the cache directory should be: every read fails.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let remote = Remote::new(vec![open(&url).unwrap()], Trust::default());
    fs_err::remove_dir(dir.path()).unwrap();
    fs_err::write(dir.path(), "not a directory").unwrap();
    let (_d, store) = empty_store();
    let warnings = Warnings::new();
    assert!(
        remote
            .substitute(&store, &a.drv, &|m| warnings.push(m))
            .is_none()
    );
    assert!(
        remote
            .substitute(&store, &b.drv, &|m| warnings.push(m))
            .is_none()
    );
    let all = warnings.all();
    assert_eq!(all.lines().count(), 1, "{all}");
    assert!(
        all.contains(&url) && all.contains("not asking it again"),
        "{all}"
    );
    fs_err::remove_file(dir.path()).unwrap();
    fs_err::create_dir(dir.path()).unwrap();
}

#[test]
fn cache_settings_parse_and_the_environment_replaces_lists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.ron");
    assert_eq!(CacheConfig::load(&path).unwrap(), CacheConfig::default());
    fs_err::write(
        &path,
        r#"Cache(substituters: ["file:///a", "s3://b/c"], trusted_keys: [], push_to: Some("file:///d"))"#,
    )
    .unwrap();
    let config = CacheConfig::load(&path).unwrap();
    assert_eq!(config.substituters, ["file:///a", "s3://b/c"]);
    assert_eq!(config.push_target(None).as_deref(), Some("file:///d"));
    assert_eq!(
        config.push_target(Some("file:///e")).as_deref(),
        Some("file:///e")
    );
    let config = config.with_env(Some("file:///x  file:///y".into()), None);
    assert_eq!(config.substituters, ["file:///x", "file:///y"]);
    fs_err::write(&path, r#"Cache(substituters: [], secret: "x")"#).unwrap();
    let error = CacheConfig::load(&path).unwrap_err().to_string();
    assert!(
        error.contains("cache.ron") && error.contains("secret"),
        "{error}"
    );
    for bad in [
        "http://x",
        "file://relative",
        "s3://",
        "oci://host",
        "oci://host/Upper",
        "oci://host/a//b",
        "oci://ho st/a",
    ] {
        assert!(
            matches!(open(bad), Err(Error::BadUrl { .. })),
            "{bad} should be refused"
        );
        assert!(check_url(bad).is_err(), "{bad}");
    }
    for good in ["oci://127.0.0.1:5000/azb/cache", "s3://b", "file:///x"] {
        check_url(good).unwrap();
    }
}

/// An object store that ignores create-only writes, as some S3-compatible servers do:
/// object_store's in-memory store with every put turned into an overwrite.
#[derive(Debug)]
struct IgnoresIfNoneMatch(object_store::memory::InMemory);

impl std::fmt::Display for IgnoresIfNoneMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IgnoresIfNoneMatch")
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for IgnoresIfNoneMatch {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        mut opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        opts.mode = object_store::PutMode::Overwrite;
        self.0.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.0.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: futures_util::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>
    {
        self.0.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
    {
        self.0.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.0.copy_opts(from, to, options).await
    }
}

#[test]
fn a_server_that_ignores_create_only_writes_is_never_pushed_to() {
    let a = built("x");
    let url = "s3://lying/cache";
    let store = std::sync::Arc::new(IgnoresIfNoneMatch(object_store::memory::InMemory::new()));
    let target = Bucket::with_store(url, store);
    let key = SecretKey::generate("ci-1").unwrap();
    let error = push(&a.store, &target, &key, &[a.drv.hash()]).unwrap_err();
    assert!(
        error.to_string().contains("does not refuse overwrites"),
        "{error}"
    );
    assert!(matches!(error, Error::NoCreateOnly { url: u } if u == url));
    assert_eq!(
        target.realisation(&a.drv.hash()).unwrap(),
        None,
        "nothing pushed"
    );
    // The honest file:// cache passes the same check.
    let dir = tempfile::tempdir().unwrap();
    let honest = open(&format!("file://{}", dir.path().display())).unwrap();
    honest.check_create_only().unwrap();
}

#[test]
fn another_output_for_the_same_derivation_is_reported_and_overwrites_nothing() {
    let (one, two) = (
        built_with("x", "SELECT 1;\n"),
        built_with("x", "SELECT 2;\n"),
    );
    assert_eq!(one.drv.hash(), two.drv.hash());
    assert_ne!(one.record.object, two.record.object);
    let cache = tempfile::tempdir().unwrap();
    let target = open(&format!("file://{}", cache.path().display())).unwrap();
    let key = SecretKey::generate("ci-1").unwrap();
    let hash = one.drv.hash();
    push(&one.store, target.as_ref(), &key, &[hash]).unwrap();
    let pushed = push(&two.store, target.as_ref(), &key, &[hash]).unwrap();
    match &pushed[..] {
        [(h, PushOutcome::Differs { remote })] if *h == hash => {
            assert_eq!(remote.object, one.record.object);
        }
        other => panic!("{other:?}"),
    }
    let kept: Realisation =
        serde_json::from_slice(&target.realisation(&hash).unwrap().unwrap()).unwrap();
    assert_eq!(kept.object, one.record.object, "nothing was overwritten");
}

#[test]
fn two_pushers_of_the_same_derivation_write_it_once() {
    let (one, two) = (built("x"), built("x"));
    let cache = tempfile::tempdir().unwrap();
    let url = format!("file://{}", cache.path().display());
    let key = SecretKey::generate("ci-1").unwrap();
    let hash = one.drv.hash();
    let barrier = std::sync::Barrier::new(2);
    let outcomes: Vec<PushOutcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = [&one, &two]
            .map(|b| {
                let (url, key, barrier) = (&url, &key, &barrier);
                scope.spawn(move || {
                    let target = open(url).unwrap();
                    barrier.wait();
                    push(&b.store, target.as_ref(), key, &[hash]).unwrap()[0]
                        .1
                        .clone()
                })
            })
            .into_iter()
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let uploaded = outcomes
        .iter()
        .filter(|o| **o == PushOutcome::Uploaded)
        .count();
    let present = outcomes
        .iter()
        .filter(|o| **o == PushOutcome::Present)
        .count();
    assert_eq!((uploaded, present), (1, 1), "{outcomes:?}");
}
