//! Real `docker-registry` (CNCF distribution 2.8) processes on loopback ports.
//!
//! Each registry gets its own tempdir (config, storage, log, TLS files) and is
//! killed when the [`TestRegistry`] drops, panics included. The process is also
//! started with `PR_SET_PDEATHSIG = SIGKILL` from a dedicated spawner thread
//! that lives as long as the test process, so it dies with the test binary even
//! on SIGKILL.

use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::tls::TestCa;
use super::token::TokenIssuer;

/// How clients authenticate to the registry.
#[derive(Clone, Default)]
pub enum RegistryAuth {
    /// No authentication.
    #[default]
    Anonymous,
    /// `auth.htpasswd` with one bcrypt user.
    Htpasswd { user: String, password: String },
    /// `auth.token` delegating to a [`TokenIssuer`].
    Token(TokenIssuer),
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Htpasswd { user, .. } => f
                .debug_struct("Htpasswd")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            RegistryAuth::Token(issuer) => f.debug_tuple("Token").field(issuer).finish(),
        }
    }
}

/// Options for [`TestRegistry::start`].
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    pub auth: RegistryAuth,
    /// Serve HTTPS with a leaf for 127.0.0.1/localhost signed by a fresh CA.
    pub tls: bool,
    /// Accept manifests referencing foreign layers (`urls` matching `^https?://`).
    pub allow_foreign_layers: bool,
    /// `storage.delete.enabled`.
    pub delete_enabled: bool,
    /// With `tls`: require a client certificate signed by the registry's CA
    /// (`http.tls.clientcas`); see [`TestRegistry::client_cert_paths`].
    pub client_auth: bool,
    /// `compatibility.schema1.enabled`: accept signed Docker schema 1
    /// manifest pushes (distribution 2.8 refuses them otherwise).
    pub schema1: bool,
    /// A `notifications:` section (YAML, from its `notifications:` line on)
    /// appended to the registry's config.
    pub notifications: Option<String>,
}

impl RegistryOptions {
    pub fn anonymous() -> Self {
        Self::default()
    }

    pub fn htpasswd(user: &str, password: &str) -> Self {
        RegistryOptions {
            auth: RegistryAuth::Htpasswd {
                user: user.to_string(),
                password: password.to_string(),
            },
            ..Self::default()
        }
    }

    pub fn token(issuer: &TokenIssuer) -> Self {
        RegistryOptions {
            auth: RegistryAuth::Token(issuer.clone()),
            ..Self::default()
        }
    }

    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// HTTPS that requires a client certificate (mutual TLS).
    pub fn with_client_auth(mut self) -> Self {
        self.tls = true;
        self.client_auth = true;
        self
    }

    pub fn with_foreign_layers(mut self) -> Self {
        self.allow_foreign_layers = true;
        self
    }

    pub fn with_schema1(mut self) -> Self {
        self.schema1 = true;
        self
    }

    pub fn with_delete(mut self) -> Self {
        self.delete_enabled = true;
        self
    }
}

/// A running `docker-registry serve` process.
pub struct TestRegistry {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    opts: RegistryOptions,
    ca_pem: Option<String>,
}

impl std::fmt::Debug for TestRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRegistry")
            .field("base_url", &self.base_url())
            .field("tls", &self.opts.tls)
            .field("log", &self.log_path())
            .finish()
    }
}

const REGISTRY_BIN: &str = "docker-registry";
const START_ATTEMPTS: usize = 5;
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl TestRegistry {
    /// Starts a registry and waits until `GET /v2/` answers 200 or 401.
    /// Panics (failing the test) with the registry log when it cannot start.
    pub async fn start(opts: RegistryOptions) -> TestRegistry {
        let dir = tempfile::Builder::new()
            .prefix("regmirror-registry-")
            .tempdir()
            .expect("creating a tempdir for docker-registry");
        std::fs::create_dir_all(dir.path().join("storage")).expect("creating registry storage dir");
        let ca_pem = if opts.tls {
            let ca = TestCa::new("regmirror test registry CA");
            let leaf = ca.server_leaf();
            std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).expect("writing ca.pem");
            std::fs::write(dir.path().join("server.pem"), &leaf.cert_pem)
                .expect("writing server.pem");
            std::fs::write(dir.path().join("server.key"), &leaf.key_pem)
                .expect("writing server.key");
            if opts.client_auth {
                let client = ca.client_leaf();
                std::fs::write(dir.path().join("client.pem"), &client.cert_pem)
                    .expect("writing client.pem");
                std::fs::write(dir.path().join("client.key"), &client.key_pem)
                    .expect("writing client.key");
            }
            Some(ca.cert_pem().to_string())
        } else {
            None
        };
        if let RegistryAuth::Htpasswd { user, password } = &opts.auth {
            let hash = bcrypt::hash_with_result(password, 4)
                .expect("bcrypt hashing of the test password")
                .format_for_version(bcrypt::Version::TwoY);
            std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n"))
                .expect("writing htpasswd");
        }

        Self::launch(dir, opts, ca_pem).await
    }

    /// Picks a port and starts the process, retrying with another port when the
    /// process fails to come up (e.g. the port was taken in between).
    async fn launch(
        dir: tempfile::TempDir,
        opts: RegistryOptions,
        ca_pem: Option<String>,
    ) -> TestRegistry {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            std::fs::write(
                dir.path().join("config.yml"),
                config_yaml(dir.path(), port, &opts),
            )
            .expect("writing registry config.yml");
            match spawn_and_wait(
                dir.path(),
                port,
                opts.tls,
                ca_pem.as_deref(),
                opts.client_auth,
            )
            .await
            {
                Ok(child) => {
                    return TestRegistry {
                        child: Some(child),
                        dir,
                        port,
                        opts,
                        ca_pem,
                    };
                }
                Err(log) => {
                    last_log = log;
                    let _ = std::fs::remove_file(dir.path().join("registry.log"));
                }
            }
        }
        panic!(
            "docker-registry did not start after {START_ATTEMPTS} attempts; \
             is /usr/bin/{REGISTRY_BIN} installed? last log:\n{last_log}"
        );
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Process id of the running registry.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `http://127.0.0.1:PORT` or `https://…` when TLS is on.
    pub fn base_url(&self) -> String {
        let scheme = if self.opts.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn is_tls(&self) -> bool {
        self.opts.tls
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    /// User and password clients must present (htpasswd user or token-issuer user).
    pub fn credentials(&self) -> Option<(String, String)> {
        match &self.opts.auth {
            RegistryAuth::Anonymous => None,
            RegistryAuth::Htpasswd { user, password } => Some((user.clone(), password.clone())),
            RegistryAuth::Token(issuer) => issuer.credentials(),
        }
    }

    /// The token issuer when the registry uses token auth.
    pub fn token_issuer(&self) -> Option<&TokenIssuer> {
        match &self.opts.auth {
            RegistryAuth::Token(issuer) => Some(issuer),
            _ => None,
        }
    }

    /// PEM file of the CA that signed the HTTPS certificate (TLS registries only).
    pub fn ca_pem_path(&self) -> Option<PathBuf> {
        self.opts.tls.then(|| self.dir.path().join("ca.pem"))
    }

    /// PEM of that CA.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// A `reqwest` client trusting this registry's CA (if any), without proxy.
    /// Client certificate and key (PEM files) for a registry started with
    /// [`RegistryOptions::with_client_auth`].
    pub fn client_cert_paths(&self) -> Option<(PathBuf, PathBuf)> {
        self.opts.client_auth.then(|| {
            (
                self.dir.path().join("client.pem"),
                self.dir.path().join("client.key"),
            )
        })
    }

    pub fn http_client(&self) -> reqwest::Client {
        super::http_client(self.ca_pem.as_deref().map(str::as_bytes))
    }

    /// The registry's combined stdout/stderr (includes the access log).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// Current content of the log file.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Access-log lines whose request line is `"METHOD PATH…"` with PATH starting
    /// with `path_prefix`. The access log is written after the response, so allow
    /// a moment after the request before counting.
    pub fn access_log_count(&self, method: &str, path_prefix: &str) -> usize {
        let needle = format!("\"{method} {path_prefix}");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// Filesystem storage root.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's tempdir (config, log, TLS files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the registry, deletes its storage (every repository, blob and
    /// tag) and starts it again on the same port with the same settings: a
    /// registry that lost its data and came back. The previous log is kept
    /// as `registry.log.before-wipe`.
    pub async fn restart_wiped(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let storage = self.storage_dir();
        std::fs::remove_dir_all(&storage).expect("deleting the registry storage");
        std::fs::create_dir_all(&storage).expect("recreating the registry storage dir");
        let _ = std::fs::rename(
            self.log_path(),
            self.dir.path().join("registry.log.before-wipe"),
        );
        let mut last = String::new();
        // The port was just released; give the kernel a few tries.
        for _ in 0..START_ATTEMPTS {
            match spawn_and_wait(
                self.dir.path(),
                self.port,
                self.opts.tls,
                self.ca_pem.as_deref(),
                self.opts.client_auth,
            )
            .await
            {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(log) => last = log,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "docker-registry did not come back on port {}:\n{last}",
            self.port
        );
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the registry in `dir` and waits for `GET /v2/`; on failure the
/// process is killed and its log returned.
async fn spawn_and_wait(
    dir: &Path,
    port: u16,
    tls: bool,
    ca_pem: Option<&str>,
    client_auth: bool,
) -> Result<Child, String> {
    let log_path = dir.join("registry.log");
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let log = File::create(&log_path).map_err(|e| format!("creating {log_path:?}: {e}"))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("duplicating the log file handle: {e}"))?;
    let mut cmd = Command::new(REGISTRY_BIN);
    cmd.arg("serve")
        .arg(dir.join("config.yml"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    // Environment overrides would change the generated config.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("REGISTRY_") {
            cmd.env_remove(k);
        }
    }
    let mut child =
        spawn_tied_to_process(cmd).map_err(|e| format!("spawning {REGISTRY_BIN}: {e}"))?;

    let client = if client_auth {
        let mut pem = std::fs::read(dir.join("client.pem")).map_err(|e| e.to_string())?;
        pem.extend(std::fs::read(dir.join("client.key")).map_err(|e| e.to_string())?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| e.to_string())?;
        let ca = reqwest::Certificate::from_pem(ca_pem.unwrap_or_default().as_bytes())
            .map_err(|e| e.to_string())?;
        reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(ca)
            .identity(identity)
            .build()
            .map_err(|e| e.to_string())?
    } else {
        super::http_client(ca_pem.map(str::as_bytes))
    };
    let scheme = if tls { "https" } else { "http" };
    let url = format!("{scheme}://127.0.0.1:{port}/v2/");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{REGISTRY_BIN} exited with {status} before answering on port {port}:\n{}",
                read_log()
            ));
        }
        if let Ok(resp) = client.get(&url).send().await {
            let code = resp.status().as_u16();
            if code == 200 || code == 401 {
                return Ok(child);
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{REGISTRY_BIN} did not answer GET {url} within {START_TIMEOUT:?}:\n{}",
                read_log()
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn config_yaml(d: &Path, port: u16, opts: &RegistryOptions) -> String {
    let mut y = String::new();
    y.push_str("version: 0.1\n");
    y.push_str("log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n");
    y.push_str(&format!(
        "storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: {}\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n",
        yaml_str(&d.join("storage")),
        opts.delete_enabled
    ));
    y.push_str(&format!(
        "http:\n  addr: 127.0.0.1:{port}\n  secret: regmirror-test-{:016x}\n",
        rand::random::<u64>()
    ));
    if opts.tls {
        y.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            yaml_str(&d.join("server.pem")),
            yaml_str(&d.join("server.key"))
        ));
        if opts.client_auth {
            y.push_str(&format!(
                "    clientcas:\n      - {}\n",
                yaml_str(&d.join("ca.pem"))
            ));
        }
    }
    match &opts.auth {
        RegistryAuth::Anonymous => {}
        RegistryAuth::Htpasswd { .. } => {
            y.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: regmirror-test\n    path: {}\n",
                yaml_str(&d.join("htpasswd"))
            ));
        }
        RegistryAuth::Token(issuer) => {
            y.push_str(&format!(
                "auth:\n  token:\n    realm: \"{}\"\n    service: \"{}\"\n    issuer: \"{}\"\n    rootcertbundle: {}\n",
                issuer.realm(),
                issuer.service(),
                issuer.issuer_name(),
                yaml_str(&issuer.root_cert_bundle_path())
            ));
        }
    }
    if opts.allow_foreign_layers {
        y.push_str("validation:\n  manifests:\n    urls:\n      allow:\n        - '^https?://'\n");
    }
    if opts.schema1 {
        y.push_str("compatibility:\n  schema1:\n    enabled: true\n");
    }
    y.push_str("health:\n  storagedriver:\n    enabled: false\n");
    if let Some(n) = &opts.notifications {
        y.push_str(n);
    }
    y
}

fn yaml_str(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "''"))
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 to pick a free port");
    l.local_addr()
        .expect("local address of a bound socket")
        .port()
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from a thread that lives as long as the process, with
/// `PR_SET_PDEATHSIG = SIGKILL` so the child dies with the test process.
/// (The death signal follows the spawning *thread*, hence the dedicated thread.)
pub fn spawn_tied_to_process(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure only calls async-signal-safe functions (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let sender = SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<SpawnJob>();
            std::thread::Builder::new()
                .name("test-process-spawner".to_string())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        let _ = reply.send(cmd.spawn());
                    }
                })
                .expect("starting the process spawner thread");
            Mutex::new(tx)
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (reply_tx, reply_rx) = mpsc::channel();
    sender
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("the process spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the process spawner thread dropped the request"))?
}
