//! Where a registry's credentials come from, in the order docker and podman
//! users expect; the first source that has credentials for the host wins:
//!
//! 1. the host's `[[registry]]` table (`password`, `password_env`,
//!    `password_file`, `identity_token`), which the one-shot commands' flags
//!    (`--username`, `--password-env`, `--password-file`) override;
//! 2. a Docker config: the explicit one (`--docker-config`, or the config
//!    file's `docker_config`), else `$DOCKER_CONFIG/config.json`, else
//!    `~/.docker/config.json`;
//! 3. the containers `auth.json` of podman, buildah and skopeo:
//!    `$REGISTRY_AUTH_FILE` when set, else
//!    `${XDG_RUNTIME_DIR}/containers/auth.json` then
//!    `~/.config/containers/auth.json`;
//! 4. credential helpers named by those files (`credHelpers` for the host,
//!    then `credsStore`), in the same file order.
//!
//! An explicit Docker config that does not exist is an error; default
//! locations that do not exist are skipped. A file that exists but cannot be
//! read or is not JSON is an error naming the file.
//!
//! A cloud identity provider (`auth = "ecr"`, …, see
//! [`crate::registry::identity`]) replaces these sources when the table
//! names it, and fills in for a host its name makes unambiguous when none
//! of them has credentials.
//!
//! Lifetime: credentials are checked when a client first talks to a host,
//! then read again at the start of every run of `serve` and whenever the
//! registry or its token service refuses them (once per refusal), so a
//! rotated Secret file or a new `docker login` takes effect at the next run
//! without a restart or SIGHUP. A credential that is still refused fails
//! with an error naming its source.

mod docker;
mod helper;
mod kind;
mod live;
mod lookup;

pub(crate) use live::LiveCredentials;

pub use kind::Credentials;
pub use lookup::{
    CredentialFile, FileKind, Helpers, Resolved, Source, credential_files, resolve,
    resolve_with_identity,
};
