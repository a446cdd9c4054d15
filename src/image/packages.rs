//! Runtime packages and linkage. The Debian packages an image's extensions need at run
//! time (`runtime_packages`, pinned by builders.lock) become one deterministic layer of
//! their unpacked data (as apko lays packages: no package manager runs in the image), with
//! a `/var/lib/dpkg/status.d/<name>` record each so scanners see them; packages the base
//! already has are left out. Then every ELF file of every artifact must find each
//! `DT_NEEDED` library in the base, that layer or the artifacts themselves, in the dynamic
//! linker's directories or its own run path; otherwise assembly fails naming the artifact,
//! the library and the fix.
//!
//! Owns reading the base's files and package records, the package layer's content and the
//! linkage rule. Never downloads anything: the caller hands over each package's data tar.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read};
use std::path::Path;

use super::Error;
use super::base::{Base, blob_path, sha256_of};
use super::layer::{ElfNeeds, Entry, LayerContent, tar_entries};
use crate::digest::HashingReader;
use crate::fs::{FsError, err};
use crate::recipe::Platform;

pub use crate::fetch::RuntimePackage;

/// What the base image holds: every path, and its installed packages (`name:arch`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct BaseContents {
    paths: BTreeMap<String, Option<String>>,
    packages: BTreeSet<String>,
    /// The text of its /etc/ld.so.conf.d/*.conf files.
    conf: Vec<String>,
}

impl BaseContents {
    /// What `base` holds: from `memo` (a directory assembly may keep such facts in) when
    /// a run before read the same layers, else read from the layers and kept there. The
    /// base's layers are named by digest, so the same digests are the same contents.
    pub fn read_memo(base: &Base, memo: Option<&Path>) -> Result<Self, Error> {
        let Some(memo) = memo else {
            return Self::read(base);
        };
        let key: String = base
            .layers
            .iter()
            .map(|d| format!("{}\n", d.digest()))
            .collect();
        let path = memo.join(format!(
            "base-contents-v1-{}.json",
            blake3::hash(key.as_bytes()).to_hex()
        ));
        if let Ok(bytes) = err::read(&path)
            && let Ok(contents) = serde_json::from_slice(&bytes)
        {
            return Ok(contents);
        }
        let contents = Self::read(base)?;
        let json = serde_json::to_vec(&contents).expect("paths and names serialise");
        err::create_dir_all(memo).map_err(|e| FsError::new("create directory", memo, e))?;
        crate::fs::write_atomic(memo, &path, &json)?;
        Ok(contents)
    }

    /// Reads every layer of `base` (checking each blob's digest), later layers over
    /// earlier ones, and the dpkg status records.
    pub fn read(base: &Base) -> Result<Self, Error> {
        let mut contents = Self::default();
        let mut status = String::new();
        for descriptor in &base.layers {
            let digest = sha256_of(&base.dir, descriptor.digest())?;
            let path = blob_path(&base.dir, &digest);
            let io = |e| FsError::new("read base layer", &path, e);
            // Streamed and hashed on the way; the digest is checked once the blob is read.
            let file = err::File::open(&path).map_err(|e| FsError::new("open blob", &path, e))?;
            let mut blob = std::io::BufReader::new(HashingReader::new(file));
            let gzip = blob.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
            let tar: Box<dyn Read + '_> = if gzip {
                Box::new(flate2::bufread::GzDecoder::new(&mut blob))
            } else {
                Box::new(&mut blob)
            };
            let mut archive = tar::Archive::new(tar);
            for entry in archive.entries().map_err(io)? {
                let mut entry = entry.map_err(io)?;
                let name = clean(&entry.path().map_err(io)?.to_string_lossy());
                if name.is_empty() {
                    continue;
                }
                let link = match entry.header().entry_type() {
                    tar::EntryType::Symlink => entry
                        .link_name()
                        .map_err(io)?
                        .map(|l| l.to_string_lossy().into_owned()),
                    _ => None,
                };
                if name == "var/lib/dpkg/status" {
                    status.clear();
                    entry.read_to_string(&mut status).map_err(io)?;
                } else if name.starts_with("etc/ld.so.conf.d/") && link.is_none() {
                    let mut text = String::new();
                    entry.read_to_string(&mut text).map_err(io)?;
                    contents.conf.push(text);
                }
                contents.paths.insert(name, link);
            }
            drop(archive);
            std::io::copy(&mut blob, &mut std::io::sink()).map_err(io)?;
            let found = blob.into_inner().finish().sha256;
            if found != digest {
                return Err(Error::BlobMismatch {
                    path,
                    expected: digest.oci_digest(),
                    found: found.oci_digest(),
                });
            }
        }
        contents.packages = installed(&status);
        Ok(contents)
    }
}

/// `name:arch` of every package a dpkg status file says is installed.
fn installed(status: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for paragraph in status.split("\n\n") {
        let field = |key: &str| {
            paragraph
                .lines()
                .find_map(|l| l.strip_prefix(key).map(str::trim))
        };
        if let (Some(name), Some(arch), Some(state)) =
            (field("Package:"), field("Architecture:"), field("Status:"))
            && state.ends_with("installed")
            && !state.ends_with("not-installed")
        {
            out.insert(format!("{name}:{arch}"));
        }
    }
    out
}

/// A tar path as a layer path: no `./`, no leading or trailing slash.
fn clean(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_owned()
}

/// The merged-/usr place of a path: Debian 12 images have /bin, /sbin, /lib* as symlinks
/// into /usr, and a layer directory there would shadow them.
fn merged_usr(path: &str) -> String {
    for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        if path == top || path.starts_with(&format!("{top}/")) {
            return format!("usr/{path}");
        }
    }
    path.to_owned()
}

/// The layer of the packages the base lacks, or None when it lacks none. Documentation is
/// dropped; each package gets its dpkg record in /var/lib/dpkg/status.d/.
pub(crate) fn package_layer(
    base: &BaseContents,
    packages: &[RuntimePackage],
) -> Result<Option<(LayerContent, Vec<String>)>, Error> {
    let mut content = LayerContent::default();
    let mut added = Vec::new();
    for package in packages {
        if base
            .packages
            .contains(&format!("{}:{}", package.name, package.arch))
        {
            continue;
        }
        for (path, entry) in tar_entries(&package.data).map_err(|e| Error::Package {
            package: package.name.clone(),
            source: e,
        })? {
            let path = merged_usr(&clean(&path));
            let dropped = ["usr/share/doc", "usr/share/man", "usr/share/lintian"]
                .iter()
                .any(|d| path == *d || path.starts_with(&format!("{d}/")));
            if path.is_empty() || dropped {
                continue;
            }
            // Directories the base has stay the base's (a symlink such as /var/run too).
            if matches!(entry, Entry::Dir) && base.paths.contains_key(&path) {
                continue;
            }
            content.insert(&path, entry);
        }
        content.insert(
            &format!("var/lib/dpkg/status.d/{}", package.name),
            Entry::File(
                format!(
                    "{}\nStatus: install ok installed\n",
                    package.control.trim_end()
                )
                .into_bytes(),
                0o644,
            ),
        );
        added.push(format!("{}:{}", package.name, package.arch));
    }
    Ok((!added.is_empty()).then_some((content, added)))
}

/// Directories the dynamic linker searches in a Debian image of `platform`, and those the
/// image's /etc/ld.so.conf.d files add.
fn linker_dirs(platform: Platform, conf: &[String]) -> Vec<String> {
    let triple = platform.gnu_triple();
    let mut dirs: Vec<String> = [
        format!("usr/lib/{triple}"),
        format!("lib/{triple}"),
        "usr/lib".to_owned(),
        "lib".to_owned(),
    ]
    .into();
    for text in conf {
        for line in text.lines().map(str::trim) {
            if line.starts_with('/') {
                dirs.push(clean(line));
            }
        }
    }
    dirs
}

/// Follows symlinks (at most a few) among `paths` to the final path of `path`.
fn resolve(paths: &BTreeMap<String, Option<String>>, path: &str) -> Option<String> {
    let mut current = path.to_owned();
    for _ in 0..16 {
        // A symlinked parent (lib -> usr/lib) first.
        let mut rewritten = None;
        let mut prefix = String::new();
        for part in current.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if prefix != current
                && let Some(Some(target)) = paths.get(&prefix)
            {
                let base = Path::new(&prefix).parent().unwrap_or(Path::new(""));
                let joined = if target.starts_with('/') {
                    clean(target)
                } else {
                    normalise(&base.join(target).to_string_lossy())
                };
                rewritten = Some(format!("{joined}{}", &current[prefix.len()..]));
                break;
            }
        }
        if let Some(next) = rewritten {
            current = next;
            continue;
        }
        return match paths.get(&current)? {
            None => Some(current),
            Some(target) => {
                let base = Path::new(&current).parent().unwrap_or(Path::new(""));
                current = if target.starts_with('/') {
                    clean(target)
                } else {
                    normalise(&base.join(target).to_string_lossy())
                };
                continue;
            }
        };
    }
    None
}

/// `a/b/../c` as `a/c`.
fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// Checks that every ELF file of every artifact finds its `DT_NEEDED` libraries in the
/// image (base, package layer, artifacts), in the linker's directories or its run path.
pub(crate) fn check_linkage(
    platform: Platform,
    base: &BaseContents,
    packages: Option<&LayerContent>,
    artifacts: &[(&str, &LayerContent, &[ElfNeeds])],
) -> Result<(), Error> {
    let mut paths = base.paths.clone();
    let mut add = |content: &LayerContent| {
        for (path, entry) in content.entries() {
            let link = match entry {
                Entry::Symlink(target) => Some(target.clone()),
                _ => None,
            };
            paths.insert(path.clone(), link);
        }
    };
    if let Some(layer) = packages {
        add(layer);
    }
    for (_, content, _) in artifacts {
        add(content);
    }
    // Artifacts map only into /usr: linker configuration comes from the base and packages.
    let conf: Vec<String> = packages
        .into_iter()
        .flat_map(|p| p.entries())
        .filter(|(p, _)| p.starts_with("etc/ld.so.conf.d/"))
        .filter_map(|(_, e)| match e {
            Entry::File(bytes, _) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        })
        .chain(base.conf.iter().cloned())
        .collect();
    let dirs = linker_dirs(platform, &conf);
    for (artifact, _, needs) in artifacts {
        for elf in *needs {
            let origin = Path::new(&elf.path).parent().unwrap_or(Path::new(""));
            let mut search: Vec<String> = Vec::new();
            for runpath in &elf.runpaths {
                for dir in runpath.split(':') {
                    let dir = dir.replace("$ORIGIN", &format!("/{}", origin.display()));
                    search.push(clean(&normalise(&dir)));
                }
            }
            search.extend(dirs.iter().cloned());
            for library in &elf.libraries {
                let found = search
                    .iter()
                    .any(|dir| resolve(&paths, &format!("{dir}/{library}")).is_some());
                if !found {
                    return Err(Error::MissingLibrary {
                        artifact: (*artifact).to_owned(),
                        file: format!("/{}", elf.path),
                        library: library.clone(),
                        platform,
                        package: package_guess(library),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The Debian package that most likely ships `library` by Debian's naming rule
/// (`libsodium.so.23` → `libsodium23`, `libgeos_c.so.1` → `libgeos-c1`).
fn package_guess(library: &str) -> String {
    let Some((stem, version)) = library.split_once(".so.") else {
        return library.trim_end_matches(".so").replace('_', "-");
    };
    let stem = stem.replace('_', "-");
    let major = version.split('.').next().unwrap_or(version);
    if stem.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{stem}-{major}")
    } else {
        format!("{stem}{major}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_follow_debians_rule() {
        assert_eq!(package_guess("libsodium.so.23"), "libsodium23");
        assert_eq!(package_guess("libgeos_c.so.1"), "libgeos-c1");
        assert_eq!(package_guess("liblz4.so.1"), "liblz4-1");
        assert_eq!(package_guess("libcurl.so.4"), "libcurl4");
    }

    #[test]
    fn symlinked_directories_and_files_resolve() {
        let paths: BTreeMap<String, Option<String>> = [
            ("lib".to_owned(), Some("usr/lib".to_owned())),
            (
                "usr/lib/x86_64-linux-gnu/libz.so.1".to_owned(),
                Some("libz.so.1.2.13".to_owned()),
            ),
            ("usr/lib/x86_64-linux-gnu/libz.so.1.2.13".to_owned(), None),
        ]
        .into();
        assert_eq!(
            resolve(&paths, "lib/x86_64-linux-gnu/libz.so.1").as_deref(),
            Some("usr/lib/x86_64-linux-gnu/libz.so.1.2.13")
        );
        assert_eq!(resolve(&paths, "lib/x86_64-linux-gnu/libnope.so.1"), None);
    }

    #[test]
    fn installed_packages_come_from_the_status_file() {
        let status = "Package: libc6\nStatus: install ok installed\nArchitecture: arm64\n\n\
                      Package: gone\nStatus: deinstall ok config-files\nArchitecture: arm64\n";
        assert_eq!(installed(status), ["libc6:arm64".to_owned()].into());
    }
}
