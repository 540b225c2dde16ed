//! Long help and examples of each command, kept apart from the argument
//! definitions so both stay readable. The README's Usage section shows the
//! same commands; `tests/it/cli_help.rs` checks that every command's help has a
//! description, the reference syntax and two examples.

/// After the top-level command list.
pub const TOP: &str = "\
Reference syntax: [REGISTRY[:PORT]/]REPOSITORY[:TAG][@DIGEST]  (nginx = docker.io/library/nginx:latest)

Examples:
  regmirror import nginx:1.27 registry.example.com/mirror/nginx:1.27
  regmirror check --config mirror.toml && regmirror sync --config mirror.toml

Credentials are read like docker and podman read them (flags, [[registry]], Docker config,
containers auth.json, credential helpers); `regmirror auth check HOST` says which one applies.
Exit codes: 0 done, 1 failed, 2 bad arguments or config, 3 sync partly failed,
4 tag conflict (nothing copied), 5 sync deferred images to keep a pull budget floor,
130 interrupted.";

pub const IMPORT: &str = "\
Examples:
  regmirror import docker.io/library/nginx:1.27 registry.example.com/mirror/nginx:1.27
  regmirror import --platform linux/amd64,linux/arm64 --dry-run nginx:1.27 localhost:5000";

pub const INSPECT: &str = "\
Examples:
  regmirror inspect registry.example.com/mirror/nginx:1.27
  regmirror inspect --platform linux/arm64 --raw nginx:1.27 | sha256sum";

pub const TAGS: &str = "\
Examples:
  regmirror tags registry.example.com/mirror/nginx
  regmirror tags --output json localhost:5000/team/app";

pub const DIGEST: &str = "\
Examples:
  regmirror digest registry.example.com/mirror/nginx:1.27
  regmirror digest --platform linux/arm64 --output json nginx:1.27";

pub const CATALOG: &str = "\
Examples:
  regmirror catalog registry.example.com
  regmirror catalog --output json --page-size 500 localhost:5000";

pub const TAG: &str = "\
Examples:
  regmirror tag registry.example.com/team/app:1.4.2 stable
  regmirror tag --force localhost:5000/team/app@sha256:… latest";

pub const DELETE: &str = "\
Examples:
  regmirror delete --dry-run registry.example.com/team/app:old
  regmirror delete --yes registry.example.com/team/app:old";

pub const INDEX_CREATE: &str = "\
Examples:
  regmirror index create registry.example.com/team/app:1.0 \\
      registry.example.com/team/app:1.0-amd64 registry.example.com/team/app:1.0-arm64
  regmirror index create --dry-run --format docker localhost:5000/app:1 localhost:5000/app:1-amd64";

pub const CHECK: &str = "\
Examples:
  regmirror check --config mirror.toml
  regmirror check --config mirror.toml --next 10";

pub const SYNC: &str = "\
Examples:
  regmirror sync --config mirror.toml --dry-run
  regmirror sync --config mirror.toml --mirror nginx --output json
  regmirror sync --semver '>=1.25' docker.io/library/nginx registry.example.com/mirror/nginx
  regmirror sync --from-file images.txt --target-prefix registry.example.com/mirror";

pub const SERVE: &str = "\
Examples:
  regmirror serve --config mirror.toml --log-format json
  regmirror serve --config /etc/regmirror/config.toml --watch-config";

pub const CONFIG_CONVERT: &str = "\
Examples:
  regmirror config convert --from skopeo --target registry.example.com/mirror sync.yml > mirror.toml
  regmirror config convert --from regsync regsync.yml -o mirror.toml && regmirror check -c mirror.toml";

pub const AUTH_CHECK: &str = "\
Examples:
  regmirror auth check docker.io
  regmirror auth check --config mirror.toml registry.example.com:5000";

pub const COMPLETIONS: &str = "\
Examples:
  regmirror completions bash > /etc/bash_completion.d/regmirror
  regmirror completions zsh > \"${fpath[1]}/_regmirror\"";

pub const MAN: &str = "\
Examples:
  regmirror man > /usr/local/share/man/man1/regmirror.1
  regmirror man | man -l -";

/// Help of `--config` for the commands that run a mirror config.
pub const MIRROR_CONFIG: &str = "Mirror config file (TOML): [[mirror]] jobs, plus [defaults], \
[server] and [[registry]] settings; see config.example.toml";
