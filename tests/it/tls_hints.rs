//! TLS failures through `regmirror import` and `inspect`, each with the hint
//! that names the host and the user's next step: a certificate that does
//! not name the host, an expired certificate, and a certificate from a CA
//! regmirror does not trust.
//!
//! A real docker-registry serves each certificate; the certificates are
//! made with `openssl` (`openssl ca`, the only way OpenSSL 3.0 writes a
//! validity period in the past). The harness's TLS registry cannot serve
//! them: it issues its own good certificate and checks it at start.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::registry::spawn_tied_to_process;
use crate::common::regmirror_isolated;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA in `dir` (`ca.pem`, `ca.key`) set up for `openssl ca`.
fn make_ca(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509", "-keyout", "ca.key", "-out", "ca.pem"];
    args.extend(ec);
    args.extend(["-subj", "/CN=regmirror hint test CA", "-days", "2"]);
    openssl(dir, &args);
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "01\n").unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n\
         default_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n",
    )
    .unwrap();
}

/// A server certificate `NAME.pem` (key `NAME.key`) signed by the CA in
/// `dir`, for the subject alternative names `san`, valid over `dates`
/// (`openssl ca` options).
fn issue(dir: &Path, name: &str, san: &str, dates: &[&str]) -> (PathBuf, PathBuf) {
    let (key, csr, pem, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    let subject = format!("/CN={name}");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subject,
        ],
    );
    std::fs::write(dir.join(&ext), format!("subjectAltName = {san}\n")).unwrap();
    let mut args = vec![
        "ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
        "-in", &csr, "-out", &pem, "-extfile", &ext,
    ];
    args.extend_from_slice(dates);
    openssl(dir, &args);
    (dir.join(pem), dir.join(key))
}

/// A docker-registry serving HTTPS with `cert`; killed when dropped.
struct TlsRegistry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Drop for TlsRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn tls_registry(cert: &Path, key: &Path) -> TlsRegistry {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: \
             127.0.0.1:{port}\n  tls:\n    certificate: {}\n    key: {}\n",
            dir.path().join("storage").display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = spawn_tied_to_process(cmd).expect("docker-registry must be installed");
    let registry = TlsRegistry {
        child,
        host: format!("127.0.0.1:{port}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(&registry.host)
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "docker-registry did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    registry
}

/// `import` (to an OCI layout) and `inspect` of an image on `reg` with
/// `flags`: both fail (exit 1) with every one of `needles` in stderr.
async fn both_commands_say(reg: &TlsRegistry, flags: &[&str], needles: &[&str]) {
    let image = format!("{}/team/app:v1", reg.host);
    let out = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:v1", out.path().join("layout").display());
    for mut args in [vec!["import", &image, &layout], vec!["inspect", &image]] {
        args.extend_from_slice(flags);
        let run = regmirror_isolated(&args, &[]).await;
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        for needle in needles {
            assert!(
                run.stderr.contains(needle),
                "{args:?}: no {needle:?} in:\n{}",
                run.stderr
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_an_expired_one_and_an_unknown_ca_each_get_their_hint() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path());
    let ca = dir.path().join("ca.pem");
    let days = ["-days", "2"];

    let (cert, key) = issue(dir.path(), "other", "DNS:registry.invalid", &days);
    let reg = tls_registry(&cert, &key).await;
    let ca_flag = format!("{}={}", reg.host, ca.display());
    let names = format!("its certificate does not name {}", reg.host);
    both_commands_say(&reg, &["--ca-file", &ca_flag], &[&names, "reissued"]).await;
    drop(reg);

    let past = [
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20200102000000Z",
    ];
    let (cert, key) = issue(dir.path(), "expired", "IP:127.0.0.1,DNS:localhost", &past);
    let reg = tls_registry(&cert, &key).await;
    let ca_flag = format!("{}={}", reg.host, ca.display());
    both_commands_say(
        &reg,
        &["--ca-file", &ca_flag],
        &[&reg.host, "has expired", "renewed", "clock"],
    )
    .await;
    drop(reg);

    let (cert, key) = issue(dir.path(), "good", "IP:127.0.0.1,DNS:localhost", &days);
    let reg = tls_registry(&cert, &key).await;
    let next_step = format!("--ca-file {}=PATH", reg.host);
    both_commands_say(
        &reg,
        &["--https", &reg.host.clone()],
        &[
            &reg.host,
            "CA regmirror does not trust",
            &next_step,
            "ca_file",
        ],
    )
    .await;
}
