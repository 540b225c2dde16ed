//! The JSON report of the one-shot utilities (`digest`, `catalog`, `tag`,
//! `delete`): the top-level fields of docs/report.md (`schema_version`,
//! `command`, `result`, `exit_code`, `error`, `duration_seconds`) followed by
//! the command's own fields. A failed command still prints its report.

use std::time::Instant;

use serde::Serialize;

use super::Exit;
use super::out::outln;
use super::report::{CommandWord, Output, SCHEMA_VERSION};

/// One utility's report; `detail`'s fields sit at the top level.
#[derive(Debug, Serialize)]
pub(super) struct OneShot<'a, T: Serialize> {
    pub(super) schema_version: u32,
    pub(super) command: &'static str,
    pub(super) result: CommandWord,
    pub(super) exit_code: u8,
    pub(super) error: Option<String>,
    pub(super) duration_seconds: f64,
    #[serde(flatten)]
    pub(super) detail: Option<&'a T>,
}

/// The word of an exit code.
pub(super) fn word(exit: Exit) -> CommandWord {
    match exit {
        Exit::Ok => CommandWord::Success,
        Exit::Usage => CommandWord::Invalid,
        Exit::Conflict => CommandWord::Conflict,
        Exit::Interrupted => CommandWord::Interrupted,
        Exit::Partial => CommandWord::Partial,
        Exit::Deferred => CommandWord::Deferred,
        Exit::Failed => CommandWord::Failed,
    }
}

/// Print `result` as `command`'s report: with `--output json` the JSON
/// document (also for an error, which is then returned unchanged), else
/// `text` of the detail. `started` is when the command began.
pub fn finish<T: Serialize>(
    command: &'static str,
    output: Output,
    started: Instant,
    result: anyhow::Result<(Exit, T)>,
    text: impl FnOnce(&T) -> anyhow::Result<()>,
) -> anyhow::Result<Exit> {
    let duration_seconds = started.elapsed().as_secs_f64();
    match (output, result) {
        (Output::Text, Ok((exit, detail))) => {
            text(&detail)?;
            Ok(exit)
        }
        (Output::Text, Err(e)) => Err(e),
        (Output::Json, Ok((exit, detail))) => {
            print(&OneShot {
                schema_version: SCHEMA_VERSION,
                command,
                result: word(exit),
                exit_code: exit as u8,
                error: None,
                duration_seconds,
                detail: Some(&detail),
            })?;
            Ok(exit)
        }
        (Output::Json, Err(e)) => {
            let exit = super::exit_for_error(&e);
            print(&OneShot::<()> {
                schema_version: SCHEMA_VERSION,
                command,
                result: word(exit),
                exit_code: exit as u8,
                error: Some(super::out::error_chain(&e)),
                duration_seconds,
                detail: None,
            })?;
            Err(e)
        }
    }
}

fn print<T: Serialize>(report: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(report)?)?;
    Ok(())
}
