//! `regmirror completions SHELL` and `regmirror man`: generated from the
//! clap definitions, so they always match the binary.

use clap::CommandFactory;
use clap_complete::Shell;

use super::Exit;
use super::out::write_bytes;

/// Long help of `regmirror completions`.
pub const LONG_ABOUT: &str = "Print a completion script for SHELL on stdout, generated from \
the command definitions, so it always matches this binary.";

/// Long help of `regmirror man`.
pub const MAN_LONG_ABOUT: &str = "Print the man page (roff) of regmirror on stdout: the \
top-level page followed by one section per command, generated from the command definitions.";

/// Arguments of `regmirror completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Print the completion script.
pub fn run(args: Args) -> anyhow::Result<Exit> {
    let mut cmd = super::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "regmirror", &mut buf);
    write_bytes(&buf)?;
    Ok(Exit::Ok)
}

/// Print the man page: the top-level page with its ENVIRONMENT, FILES and
/// EXIT STATUS sections, then each subcommand's.
pub fn man() -> anyhow::Result<Exit> {
    let cmd = super::Cli::command();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    buf.extend_from_slice(super::man_sections::render().as_bytes());
    for sub in cmd.get_subcommands() {
        render_sub(&mut buf, "regmirror", sub)?;
    }
    write_bytes(&buf)?;
    Ok(Exit::Ok)
}

fn render_sub(buf: &mut Vec<u8>, parent: &str, sub: &clap::Command) -> std::io::Result<()> {
    let name = format!("{parent}-{}", sub.get_name());
    let page = sub.clone().name(name.clone());
    let man = clap_mangen::Man::new(page);
    man.render_title(buf)?;
    man.render_name_section(buf)?;
    man.render_synopsis_section(buf)?;
    man.render_description_section(buf)?;
    man.render_options_section(buf)?;
    if sub.get_after_help().is_some() || sub.get_after_long_help().is_some() {
        man.render_extra_section(buf)?;
    }
    for s in sub.get_subcommands() {
        render_sub(buf, &name, s)?;
    }
    Ok(())
}
