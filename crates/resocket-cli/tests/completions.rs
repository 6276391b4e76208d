//! `resocket completions SHELL`: a completion script on stdout for every shell clap knows.

mod support;

use std::process::Stdio;

use resocket_testkit::within;
use support::{output, resocket};

#[tokio::test]
async fn completions_print_a_script_for_every_shell() {
    within(60, "completions", async {
        // Each script names the command's subcommands, plus a construct of its own shell.
        for (shell, marker) in [
            ("bash", "complete -F"),
            ("zsh", "#compdef resocket"),
            ("fish", "complete -c resocket"),
            ("powershell", "Register-ArgumentCompleter"),
            ("elvish", "edit:completion:arg-completer[resocket]"),
        ] {
            let (code, stdout, stderr) = output(&["completions", shell]).await;
            assert_eq!(code, 0, "{shell}: {stderr}");
            assert!(stderr.is_empty(), "{shell}: {stderr}");
            assert!(stdout.contains(marker), "{shell} script without {marker:?}");
            for subcommand in ["connect", "serve", "chaos", "bench", "demo", "completions"] {
                assert!(
                    stdout.contains(subcommand),
                    "{shell} script without {subcommand:?}"
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn completions_for_an_unknown_shell_is_a_usage_error() {
    within(60, "unknown shell", async {
        let (code, stdout, stderr) = output(&["completions", "tcsh"]).await;
        assert_eq!(code, 2, "{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error"), "{stderr}");
    })
    .await;
}

// `std::io::pipe` needs Rust 1.87, newer than the crates' rust-version: only this test, built
// with the current toolchain, uses it.
#[tokio::test]
async fn completions_into_a_closed_pipe_are_an_error_line_not_a_panic() {
    within(60, "closed pipe", async {
        // The read end is gone before the command starts, so its first write fails (EPIPE):
        // no race with a reader that has not closed yet.
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        // Not `output()`: tokio's replaces the stdout given here with a pipe of its own.
        let out = resocket()
            .args(["completions", "bash"])
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the resocket binary")
            .wait_with_output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("error: cannot write the completion script"),
            "{stderr}"
        );
    })
    .await;
}

#[tokio::test]
async fn completions_help_says_where_scripts_go_and_the_exit_status() {
    within(60, "completions help", async {
        let (code, stdout, _) = output(&["completions", "--help"]).await;
        assert_eq!(code, 0);
        for needle in [
            "Usage",
            "bash-completion/completions",
            "Exit status",
            "  2 ",
        ] {
            assert!(stdout.contains(needle), "{needle}: {stdout}");
        }
        // Listed beside the other commands in the top-level help.
        let (_, top, _) = output(&["--help"]).await;
        assert!(top.contains("completions"), "{top}");
    })
    .await;
}
