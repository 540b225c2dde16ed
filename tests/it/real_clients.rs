//! Real container clients pull what regmirror mirrored: podman (vfs storage,
//! no daemon) and containerd's `ctr` (a private containerd), from Debian's
//! packages, each for two platforms of a multi-arch index with buildx-style
//! attestations. The image they store must have the config digest of that
//! platform's image, and its files unpacked. Both tools are installed by
//! `scripts/test.sh`; a missing tool fails the test.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{
    Blob, Format, Image, ImageBuilder, IndexBuilder, RegistryOptions, TestRegistry, push, regmirror,
};

const PLATFORMS: [(&str, &str); 2] = [("linux/amd64", "amd64"), ("linux/arm64", "arm64")];

/// An image whose single layer is a real tar holding `/etc/regmirror-platform`.
fn runnable_image(platform: &str) -> Image {
    ImageBuilder::new(Format::Oci)
        .platform(platform)
        .layer(Blob::tar_layer(
            Format::Oci,
            &[
                ("etc/regmirror-platform", platform.as_bytes()),
                ("app/hello.txt", b"mirrored by regmirror\n"),
            ],
        ))
        .label("org.opencontainers.image.title", "real-clients")
        .build()
}

/// Run `program args`, failing loudly when it is missing or fails.
async fn run_tool(program: &str, args: &[&str], envs: &[(&str, &Path)]) -> String {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish in 120 s"))
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); it is installed by scripts/test.sh (apt-get install podman containerd)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Mirror a two-platform index (with attestations) from one registry to
/// another with `regmirror import`; returns the target and the images.
async fn mirrored() -> (TestRegistry, TestRegistry, Vec<Image>, String) {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let images: Vec<Image> = PLATFORMS.iter().map(|(p, _)| runnable_image(p)).collect();
    let mut b = IndexBuilder::new(Format::Oci);
    for img in &images {
        b = b.image(img.clone());
    }
    for (img, (p, _)) in images.iter().zip(PLATFORMS) {
        b = b.attestation_for(img, &format!("real/{p}"));
    }
    let index = b.build();
    push(&src, "team/app", "1.0", index.to_node())
        .await
        .unwrap();
    let run = regmirror(&[
        "import",
        &format!("{}/team/app:1.0", src.host()),
        &format!("{}/mirror/app:1.0", dst.host()),
    ])
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let digest = index.digest().to_string();
    (src, dst, images, digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_pulls_the_mirror_for_two_platforms() {
    let (_src, dst, images, index_digest) = mirrored().await;
    let reference = format!("{}/mirror/app:1.0", dst.host());
    let dir = tempfile::tempdir().unwrap();
    for ((_, arch), image) in PLATFORMS.iter().zip(&images) {
        let root = dir.path().join(arch);
        let podman = |extra: &[&str]| -> Vec<String> {
            let mut a = vec![
                "--storage-driver".to_string(),
                "vfs".to_string(),
                "--root".to_string(),
                root.join("root").display().to_string(),
                "--runroot".to_string(),
                root.join("run").display().to_string(),
                "--events-backend".to_string(),
                "file".to_string(),
            ];
            a.extend(extra.iter().map(|s| s.to_string()));
            a
        };
        let args = podman(&["pull", "--tls-verify=false", "--arch", arch, &reference]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tool("podman", &args, &[("HOME", dir.path())]).await;
        let args = podman(&[
            "image",
            "inspect",
            &reference,
            "--format",
            "{{.Id}} {{.Architecture}} {{.Digest}}",
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_tool("podman", &args, &[("HOME", dir.path())]).await;
        let fields: Vec<&str> = out.split_whitespace().collect();
        let config_hex = image.config.digest.trim_start_matches("sha256:");
        assert_eq!(fields.first(), Some(&config_hex), "podman {arch}: {out}");
        assert_eq!(fields.get(1), Some(arch), "podman {arch}: {out}");
        assert_eq!(
            fields.get(2),
            Some(&index_digest.as_str()),
            "podman {arch}: {out}"
        );
    }
}

/// A containerd of its own: state, root and socket under `dir`, CRI off.
struct Containerd {
    child: tokio::process::Child,
    socket: PathBuf,
}

impl Containerd {
    async fn start(dir: &Path) -> Containerd {
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[debug]\n  address = \"{sock}.debug\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = socket.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = tokio::process::Command::new("containerd")
            .args(["--config", config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run containerd ({e}); scripts/test.sh installs it (apt-get install containerd)")
            });
        let start = std::time::Instant::now();
        while !socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "containerd did not open its socket:\n{}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Containerd { child, socket }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pulls_the_mirror_for_two_platforms() {
    let (_src, dst, images, index_digest) = mirrored().await;
    let reference = format!("{}/mirror/app:1.0", dst.host());
    let dir = tempfile::tempdir().unwrap();
    let mut containerd = Containerd::start(dir.path()).await;
    let sock = containerd.socket.display().to_string();
    for ((platform, arch), image) in PLATFORMS.iter().zip(&images) {
        let namespace = format!("regmirror-{arch}");
        let ctr = |extra: &[&str]| -> Vec<String> {
            let mut a = vec![
                "-a".to_string(),
                sock.clone(),
                "-n".to_string(),
                namespace.clone(),
            ];
            a.extend(extra.iter().map(|s| s.to_string()));
            a
        };
        let args = ctr(&[
            "images",
            "pull",
            "--plain-http",
            "--platform",
            platform,
            &reference,
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tool("ctr", &args, &[]).await;
        // The image record points at the index; its config for this platform
        // is the one mirrored.
        let args = ctr(&["images", "ls"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let listing = run_tool("ctr", &args, &[]).await;
        assert!(
            listing.contains(&reference) && listing.contains(&index_digest),
            "ctr {arch}: {listing}"
        );
        let args = ctr(&["content", "ls"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let content = run_tool("ctr", &args, &[]).await;
        assert!(
            content.contains(&image.config.digest) && content.contains(&image.manifest.digest),
            "ctr {arch}: the config and manifest of {platform} were fetched: {content}"
        );
        assert!(
            content.contains(&image.layers[0].digest),
            "ctr {arch}: the layer was fetched: {content}"
        );
        // And the layer was unpacked into a committed snapshot.
        let args = ctr(&["snapshots", "ls"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let snapshots = run_tool("ctr", &args, &[]).await;
        assert!(snapshots.contains("Committed"), "ctr {arch}: {snapshots}");
    }
    let _ = containerd.child.kill().await;
}
