//! TLS test support: certificates made by the test (rcgen) and private servers with TLS on
//! free loopback ports — a PostgreSQL cluster (`initdb` + `pg_ctl`, as the `postgres` user
//! when the tests run as root, since PostgreSQL refuses to run as root) and a `redis-server`
//! with `--tls-port`. Every server is stopped when its guard is dropped, whatever the test's
//! outcome.

use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use super::nodes::TestResult;

/// Where Debian puts the PostgreSQL server binaries.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A free TCP port on the loopback interface.
pub fn free_port() -> TestResult<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The test's certificates, as PEM files in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA that signed both server certificates.
    pub ca: PathBuf,
    /// A second, unrelated CA: the wrong one.
    pub wrong_ca: PathBuf,
    /// A server certificate for `localhost` and `127.0.0.1`, and its key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A server certificate of the right CA for `localhost` only (not for `127.0.0.1`).
    pub localhost_cert: PathBuf,
    pub localhost_key: PathBuf,
}

fn ca(name: &str) -> TestResult<(Issuer<'static, KeyPair>, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key)?;
    Ok((Issuer::new(params, key), cert.pem()))
}

fn leaf(issuer: &Issuer<'_, KeyPair>, names: &[&str]) -> TestResult<(String, String)> {
    let key = KeyPair::generate()?;
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "bitcraps test server");
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl Pki {
    /// Makes the certificates; the key files are 0600.
    pub fn new() -> TestResult<Pki> {
        let dir = tempfile::tempdir()?;
        let write = |name: &str, pem: &str, mode: u32| -> TestResult<PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, pem)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            Ok(path)
        };
        let (issuer, ca_pem) = ca("bitcraps test CA")?;
        let (_, wrong_pem) = ca("bitcraps unrelated CA")?;
        let (server_pem, server_key) = leaf(&issuer, &["localhost", "127.0.0.1"])?;
        let (localhost_pem, localhost_key) = leaf(&issuer, &["localhost"])?;
        Ok(Pki {
            ca: write("ca.pem", &ca_pem, 0o644)?,
            wrong_ca: write("wrong-ca.pem", &wrong_pem, 0o644)?,
            server_cert: write("server.pem", &server_pem, 0o644)?,
            server_key: write("server.key", &server_key, 0o600)?,
            localhost_cert: write("localhost.pem", &localhost_pem, 0o644)?,
            localhost_key: write("localhost.key", &localhost_key, 0o600)?,
            dir,
        })
    }
}

/// Whether this process runs as root (then PostgreSQL must be run as another user).
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program` with `args`, as the `postgres` user when running as root.
fn pg_command(program: &str) -> Command {
    let path = format!("{PG_BIN}/{program}");
    if running_as_root() {
        let mut command = Command::new("setpriv");
        command.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
            &path,
        ]);
        command
    } else {
        Command::new(path)
    }
}

/// Hands `path` (and everything under it) to the `postgres` user when running as root.
fn give_to_postgres(path: &Path) -> TestResult {
    if running_as_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()?;
        if !status.success() {
            return Err(format!("chown -R postgres {} failed", path.display()).into());
        }
    }
    Ok(())
}

/// Whether the PostgreSQL server binaries are installed.
pub fn postgres_available() -> bool {
    Path::new(PG_BIN).join("initdb").exists() && Path::new(PG_BIN).join("pg_ctl").exists()
}

/// How a private cluster is set up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PgTls {
    /// `ssl = on` with the certificate for `localhost` only, and a pg_hba that accepts only
    /// TLS connections (`hostssl`).
    Only,
    /// `ssl = off`: the server declines TLS.
    Off,
}

/// A private PostgreSQL cluster on a free loopback port, stopped on drop.
pub struct PgCluster {
    dir: tempfile::TempDir,
    pub port: u16,
    /// Keeps the certificates alive as long as the server reads them.
    pub pki: Arc<Pki>,
}

impl PgCluster {
    /// `initdb`, configure, and `pg_ctl start -w`.
    pub fn start(tls: PgTls, pki: Arc<Pki>) -> TestResult<PgCluster> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let port = free_port()?;
        // The server reads its own copy of the certificate and key (0600, its own).
        std::fs::copy(&pki.localhost_cert, dir.path().join("server.pem"))?;
        std::fs::copy(&pki.localhost_key, dir.path().join("server.key"))?;
        std::fs::set_permissions(
            dir.path().join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )?;
        let hba = match tls {
            PgTls::Only => "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            PgTls::Off => "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        };
        std::fs::write(dir.path().join("pg_hba.conf"), hba)?;
        give_to_postgres(dir.path())?;
        let cluster = PgCluster { dir, port, pki };
        run(pg_command("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]))?;
        let d = cluster.dir.path().display();
        let mut options = format!(
            "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={d} \
             -c hba_file={d}/pg_hba.conf -c fsync=off -c max_connections=20"
        );
        match tls {
            PgTls::Only => options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={d}/server.pem -c ssl_key_file={d}/server.key"
            )),
            PgTls::Off => options.push_str(" -c ssl=off"),
        }
        run(pg_command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(cluster.dir.path().join("server.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"]))
        .map_err(|e| format!("{e}; server log: {}", cluster.log()))?;
        Ok(cluster)
    }

    /// A URL of the cluster's `postgres` database over `host` (the server listens on
    /// 127.0.0.1; `host=localhost` connects there too) with `params` appended.
    pub fn url(&self, host: &str, params: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/postgres?hostaddr=127.0.0.1&{params}",
            self.port
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = run(pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "-t", "30", "stop"]));
    }
}

fn run(command: &mut Command) -> TestResult {
    let output = command.stdin(Stdio::null()).output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into())
    }
}

/// One TLS-only cluster for the tests of a binary that run at the same time: each holds an
/// `Arc`; the last to drop it stops the server, and a later test starts a new one.
pub fn shared_tls_cluster() -> TestResult<Arc<PgCluster>> {
    static SHARED: Mutex<Weak<PgCluster>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(cluster) = shared.upgrade() {
        return Ok(cluster);
    }
    let cluster = Arc::new(PgCluster::start(PgTls::Only, Arc::new(Pki::new()?))?);
    *shared = Arc::downgrade(&cluster);
    Ok(cluster)
}

/// Whether `redis-server` is installed.
pub fn redis_server_available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A private `redis-server` that speaks only TLS, on a free loopback port; killed on drop.
pub struct TlsRedis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    /// Serves `cert`/`key` (no client certificates asked for).
    pub fn start(cert: &Path, key: &Path, ca: &Path) -> TestResult<TlsRedis> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--tls-cert-file")
            .arg(cert)
            .arg("--tls-key-file")
            .arg(key)
            .arg("--tls-ca-cert-file")
            .arg(ca)
            .args(["--tls-auth-clients", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut server = TlsRedis {
            child,
            port,
            _dir: dir,
        };
        server.wait_listening()?;
        Ok(server)
    }

    /// Waits until the port accepts connections (or the server exited).
    fn wait_listening(&mut self) -> TestResult {
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("redis-server exited: {status} (built without TLS?)").into());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err("redis-server did not listen within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `rediss://HOST:PORT`.
    pub fn url(&self, host: &str) -> String {
        format!("rediss://{host}:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
