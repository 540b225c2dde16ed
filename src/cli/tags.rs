//! `regmirror tags`: list a repository's tags, or every image of an OCI
//! layout by the REF that addresses it.

use std::cmp::Ordering;

use anyhow::Context as _;

use regmirror::registry::{Client, Reference};
use regmirror::sync::filter::lenient_version;

use super::out::outln;
use super::{Exit, UsageError};

/// Long help of `regmirror tags`.
pub const LONG_ABOUT: &str = "List a repository's tags, one per line (or a JSON array with \
--output json), following the registry's pagination.

REPOSITORY is [REGISTRY[:PORT]/]REPOSITORY, without tag or digest (`nginx` is \
docker.io/library/nginx), or an OCI image layout: oci:DIR lists every image of the layout by \
the REF that addresses it as oci:DIR:REF (a tag alone for images named by a tag, as skopeo and \
umoci write them; NAME:TAG for images named by a full reference, as a sync to a layout writes \
them); oci:DIR:NAME lists the tags of NAME. oci-archive:FILE likewise.

--sort semver (the default) puts tags that read as versions first, oldest to newest by version \
precedence (`v1.9.0` before `v1.10.0`, `1.0.0-rc1` before `1.0.0`; a leading `v` and a missing \
minor or patch are allowed, as in the semver filter), then the other tags in natural order \
(digit runs compared as numbers); lexical sorts by bytes; registry keeps the order the \
registry (or index.json) gave.";

/// How `tags` orders its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sort {
    /// Versions by precedence, then other tags in natural order.
    Semver,
    /// Byte order.
    Lexical,
    /// The order the registry or index.json gave.
    Registry,
}

/// Arguments of `regmirror tags`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Repository (`nginx`, `ghcr.io/org/app`, `localhost:5000/mirror/app`).
    pub repository: String,
    /// Output format (json: a JSON array instead of one tag per line).
    #[arg(long, value_enum, default_value = "text")]
    pub output: super::report::Output,
    /// The old spelling of `--output json`.
    #[arg(long, hide = true)]
    pub json: bool,
    /// Order of the list: semver (versions by precedence, then the rest in natural
    /// order), lexical, or registry (as listed).
    #[arg(long, value_enum, default_value = "semver")]
    pub sort: Sort,
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// Run the command.
pub async fn run(args: Args) -> anyhow::Result<Exit> {
    let parsed = super::parse_image("repository", &args.repository)?;
    if parsed.tag().is_some() || parsed.digest().is_some() {
        return Err(UsageError(format!(
            "{:?} is an image, not a repository: `tags` lists a repository's tags; drop the tag or digest (try {})",
            args.repository,
            parsed.repository_only()
        ))
        .into());
    }
    let repo = Reference::parse_repository(&args.repository)?;
    let options = args.registry.client_options()?;
    super::check_credentials(&options, &Vec::from_iter(repo.registry_host()))?;
    let client = Client::new(options)?;
    let mut tags = if repo.is_layout() && repo.repository().is_empty() {
        layout_refs(&client, &repo).await?
    } else {
        client
            .list_tags(&repo)
            .await
            .with_context(|| format!("cannot list the tags of {repo}"))?
    };
    sort_tags(&mut tags, args.sort);
    if args.json || args.output == super::report::Output::Json {
        outln!("{}", serde_json::to_string(&tags)?)?;
    } else {
        for t in tags {
            outln!("{t}")?;
            if super::out::stdout_closed() {
                break;
            }
        }
    }
    Ok(Exit::Ok)
}

/// Every image of a layout by its REF: `TAG` for the unnamed repository,
/// `NAME:TAG` for the others, in index.json order.
async fn layout_refs(client: &Client, layout: &Reference) -> anyhow::Result<Vec<String>> {
    let names = client
        .layout_names(layout)
        .await
        .with_context(|| format!("cannot list the images of {layout}"))?;
    Ok(names
        .into_iter()
        .map(|(name, tag)| {
            if name.is_empty() {
                tag
            } else {
                format!("{name}:{tag}")
            }
        })
        .collect())
}

/// Order `tags` as `sort` says.
fn sort_tags(tags: &mut [String], sort: Sort) {
    match sort {
        Sort::Registry => {}
        Sort::Lexical => tags.sort(),
        Sort::Semver => tags.sort_by(|a, b| semver_order(a, b)),
    }
}

/// Versions first, by precedence (equal versions such as `1.2` and
/// `1.2.0` by text), then the other tags in natural order.
fn semver_order(a: &str, b: &str) -> Ordering {
    match (lenient_version(a), lenient_version(b)) {
        (Some(va), Some(vb)) => va.cmp(&vb).then_with(|| natural_order(a, b)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => natural_order(a, b),
    }
}

/// Compare runs of digits as numbers and everything else as bytes
/// (`build-9` before `build-10`); byte order breaks ties (`01` and `1`).
fn natural_order(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    while let (Some(&cx), Some(&cy)) = (x.first(), y.first()) {
        let ord = if cx.is_ascii_digit() && cy.is_ascii_digit() {
            let (nx, rx) = split_digits(x);
            let (ny, ry) = split_digits(y);
            (x, y) = (rx, ry);
            let (tx, ty) = (trim_zeros(nx), trim_zeros(ny));
            tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty))
        } else {
            (x, y) = (&x[1..], &y[1..]);
            cx.cmp(&cy)
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    x.len().cmp(&y.len()).then_with(|| a.cmp(b))
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    s.split_at(n)
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b'0').count();
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(list: &[&str], sort: Sort) -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        sort_tags(&mut v, sort);
        v
    }

    #[test]
    fn semver_order_puts_versions_first_by_precedence() {
        let list = [
            "latest",
            "v1.10.0",
            "build-10",
            "v1.9.0",
            "1.0.0",
            "1.0.0-rc1",
            "build-9",
            "1.2",
        ];
        assert_eq!(
            sorted(&list, Sort::Semver),
            [
                "1.0.0-rc1",
                "1.0.0",
                "1.2",
                "v1.9.0",
                "v1.10.0",
                "build-9",
                "build-10",
                "latest"
            ]
        );
        assert_eq!(
            sorted(&["b", "a10", "a9"], Sort::Lexical),
            ["a10", "a9", "b"]
        );
        assert_eq!(sorted(&["b", "a"], Sort::Registry), ["b", "a"]);
        assert_eq!(natural_order("01", "1"), Ordering::Less);
        assert_eq!(natural_order("a", "a0"), Ordering::Less);
    }
}
