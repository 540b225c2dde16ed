//! `--help` teaches: each command has a one-line description, the reference
//! syntax where it takes references, and two examples; the top-level help
//! lists commands in the order a user meets them; completions and the man
//! page are generated; the README's Usage section agrees with the binary.

use crate::common;

use std::path::Path;

use common::regmirror_isolated;

/// Command paths, in the order `regmirror --help` lists them.
const COMMANDS: [&[&str]; 17] = [
    &["import"],
    &["inspect"],
    &["tags"],
    &["digest"],
    &["catalog"],
    &["tag"],
    &["delete"],
    &["index", "create"],
    &["verify"],
    &["check"],
    &["sync"],
    &["serve"],
    &["trigger"],
    &["config", "convert"],
    &["auth", "check"],
    &["completions"],
    &["man"],
];

/// Commands whose operands are image references.
const TAKES_REFERENCES: [&str; 11] = [
    "import",
    "inspect",
    "tags",
    "digest",
    "tag",
    "delete",
    "index create",
    "verify",
    "check",
    "sync",
    "serve",
];

async fn help(path: &[&str]) -> String {
    let mut args = path.to_vec();
    args.push("--help");
    let run = regmirror_isolated(&args, &[]).await;
    assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    run.stdout
}

#[tokio::test]
async fn top_level_help_lists_commands_in_order() {
    let text = help(&[]).await;
    let positions: Vec<usize> = COMMANDS
        .iter()
        .map(|c| {
            text.find(&format!("\n  {} ", c[0]))
                .unwrap_or_else(|| panic!("{} missing from --help:\n{text}", c[0]))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "commands out of order:\n{text}"
    );
    assert!(
        text.contains("Examples:") && text.contains("Exit codes"),
        "{text}"
    );
}

#[tokio::test]
async fn every_command_has_a_description_syntax_and_two_examples() {
    for path in COMMANDS {
        let text = help(path).await;
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.len() > 20,
            "{path:?}: no one-line description: {text}"
        );
        let examples: Vec<&str> = text
            .split("Examples:")
            .nth(1)
            .unwrap_or_else(|| panic!("{path:?}: no Examples section:\n{text}"))
            .lines()
            .filter(|l| l.trim_start().starts_with("regmirror "))
            .collect();
        assert!(
            examples.len() >= 2,
            "{path:?}: fewer than two examples:\n{text}"
        );
        for e in &examples {
            let words: Vec<&str> = e.split_whitespace().collect();
            assert_eq!(
                &words[1..=path.len()],
                path,
                "{path:?}: example of another command: {e}"
            );
        }
        if TAKES_REFERENCES.contains(&path.join(" ").as_str()) {
            assert!(
                text.contains("[REGISTRY[:PORT]/]REPOSITORY"),
                "{path:?}: help does not show the reference syntax:\n{text}"
            );
        }
    }
    // The config commands describe the mirror file, not the [[registry]] file.
    for c in ["sync", "check", "serve"] {
        let text = help(&[c]).await;
        assert!(text.contains("Mirror config file"), "{c}: {text}");
        assert!(!text.contains("its mirrors are ignored"), "{c}: {text}");
    }
    assert!(help(&["import"]).await.contains("its mirrors are ignored"));
}

#[tokio::test]
async fn completions_and_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = regmirror_isolated(&["completions", shell], &[]).await;
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        for word in ["regmirror", "import", "index", "platform", "dry-run"] {
            assert!(run.stdout.contains(word), "{shell} completions lack {word}");
        }
    }
    // bash itself accepts its script.
    let run = regmirror_isolated(&["completions", "bash"], &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("regmirror.bash");
    std::fs::write(&script, &run.stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("running bash -n");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let run = regmirror_isolated(&["man"], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with(".ie") || run.stdout.contains(".TH regmirror"),
        "{}",
        &run.stdout[..200.min(run.stdout.len())]
    );
    for page in [
        "regmirror\\-import",
        "regmirror\\-index\\-create",
        "regmirror\\-auth\\-check",
        "regmirror\\-sync",
    ] {
        assert!(run.stdout.contains(page), "man page lacks {page}");
    }
    let run = regmirror_isolated(&["completions", "tcsh"], &[]).await;
    assert_eq!(run.code, 2);
}

#[tokio::test]
async fn readme_usage_agrees_with_the_binary() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let usage = readme
        .split("## Usage")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Usage section");
    let mut all_help = help(&[]).await;
    for path in COMMANDS {
        all_help.push_str(&help(path).await);
    }
    // Every flag the section names exists.
    let flags: std::collections::BTreeSet<String> = usage
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w[2..].starts_with(|c: char| c.is_ascii_lowercase()))
        .map(str::to_string)
        .collect();
    assert!(flags.len() > 15, "{flags:?}");
    for f in &flags {
        assert!(
            all_help.contains(f.as_str()),
            "README names {f}, which no command accepts"
        );
    }
    // Every command line of the example block names a command that exists.
    for line in usage.lines().filter(|l| l.starts_with("regmirror ")) {
        let cmd = line.split_whitespace().nth(1).unwrap();
        assert!(
            COMMANDS.iter().any(|c| c[0] == cmd),
            "README runs `regmirror {cmd}`, which does not exist"
        );
    }
    // The exit-code table lists every code the binary documents.
    let top = help(&[]).await;
    for code in ["| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 4 |", "| 130 |"] {
        assert!(usage.contains(code), "README exit-code table lacks {code}");
    }
    assert!(top.contains("130 interrupted"), "{top}");
}

/// The command list of `regmirror --help` is exactly [`COMMANDS`] (by
/// their first word) plus clap's `help`, each with a description: a
/// command added to the binary without its place here (and so without the
/// checks above of its help, examples and README entry) fails this test.
#[tokio::test]
async fn top_level_help_lists_no_command_this_file_does_not_check() {
    let text = help(&[]).await;
    let listed: Vec<(String, String)> = text
        .split("\nCommands:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no Commands: section in --help:\n{text}"))
        .lines()
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let (name, rest) = l.trim_start().split_once(' ').unwrap_or((l.trim(), ""));
            (name.to_string(), rest.trim().to_string())
        })
        .collect();
    let mut expected: Vec<&str> = COMMANDS.iter().map(|c| c[0]).collect();
    expected.push("help");
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names, expected,
        "--help lists other commands than tests/it/cli_help.rs checks: add a new command to \
         COMMANDS (and its help, examples and README entry):\n{text}"
    );
    for (name, description) in &listed {
        assert!(
            !description.is_empty(),
            "{name} has no description:\n{text}"
        );
    }
}
