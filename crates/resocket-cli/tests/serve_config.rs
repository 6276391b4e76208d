//! `resocket serve --config`: the example file, errors that name the key and the line, the
//! precedence of flags, variables, the file and the defaults, and `--print-config`.

mod support;

use std::path::Path;

use resocket_testkit::within;
use support::{output_of, resocket_without_env, serve_on_free_port, TempDir};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hub.example.toml");

/// `resocket serve`, without the `RESOCKET_*` variables of the test's own environment.
fn serve_command() -> tokio::process::Command {
    let mut command = resocket_without_env();
    command.arg("serve");
    command
}

/// Runs `resocket serve ARGS` with `env` and no other `RESOCKET_*` variable; returns (exit
/// code, stdout, stderr).
async fn serve(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = serve_command();
    command.args(args).envs(env.iter().copied());
    output_of(command).await
}

/// `serve ARGS --print-config`, which must succeed; returns the printed TOML.
async fn print_config(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut args = args.to_vec();
    args.push("--print-config");
    let (code, stdout, stderr) = serve(&args, env).await;
    assert_eq!(code, 0, "{args:?}: {stderr}");
    stdout
}

/// One setting of a printed configuration.
fn setting(printed: &str, section: &str, key: &str) -> toml::Value {
    let table: toml::Table = toml::from_str(printed).expect("--print-config prints TOML");
    table[section][key].clone()
}

/// Expects exit status 1 and one stderr line, `error: FILE:LINE: KEY: ...`; returns it.
/// Writes `toml` to `name` in `dir` and asserts that serving it fails with one line that
/// names the file and contains `expected`.
async fn assert_config_error(dir: &TempDir, name: &str, toml: &str, expected: &str) {
    let error = config_error(&dir.write(name, toml)).await;
    assert!(error.contains(expected), "{error}");
}

async fn config_error(file: &Path) -> String {
    let (code, stdout, stderr) =
        serve(&["--config", file.to_str().unwrap(), "--print-config"], &[]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr:?}");
    assert!(
        lines[0].starts_with(&format!("error: {}:", file.display())),
        "{stderr}"
    );
    lines[0].to_owned()
}

#[tokio::test]
async fn example_config_loads_and_states_every_default() {
    within(60, "example config", async {
        let from_example = print_config(&["--config", EXAMPLE], &[]).await;
        let defaults = print_config(&[], &[]).await;
        assert_eq!(from_example, defaults);
        for section in ["listen", "tls", "auth", "limits", "history", "engine"] {
            assert!(
                from_example.contains(&format!("[{section}]")),
                "{from_example}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn printed_config_loads_back_to_the_same_configuration() {
    within(60, "round trip", async {
        let dir = TempDir::new("print-config");
        dir.write("revoked.txt", "");
        let config = dir.write(
            "hub.toml",
            &std::fs::read_to_string(EXAMPLE)
                .unwrap()
                .replace("# revoked = ", "revoked = ")
                .replace("max_connections = 10000", "max_connections = 12")
                .replace("budget = \"256M\"", "budget = \"64K\""),
        );
        let config = config.to_str().unwrap();
        let args = [
            "--config",
            config,
            "--allow-origin",
            "https://app.example",
            "--history",
            "7",
        ];
        let printed = print_config(&args, &[]).await;
        assert_eq!(
            setting(&printed, "limits", "max_connections").as_integer(),
            Some(12)
        );
        assert_eq!(
            setting(&printed, "history", "budget").as_integer(),
            Some(64 << 10)
        );
        assert_eq!(setting(&printed, "history", "len").as_integer(), Some(7));
        // Relative to the file, so the printed file names the same deny-list wherever it is.
        let revoked = dir.path().join("revoked.txt");
        assert_eq!(
            setting(&printed, "auth", "revoked").as_str(),
            revoked.to_str()
        );

        let copy = TempDir::new("print-config-copy");
        let saved = copy.write("printed.toml", &printed);
        let reprinted = print_config(&["--config", saved.to_str().unwrap()], &[]).await;
        assert_eq!(reprinted, printed);
    })
    .await;
}

#[tokio::test]
async fn unknown_key_is_an_error_naming_the_key_the_file_and_the_line() {
    within(60, "unknown key", async {
        let dir = TempDir::new("unknown-key");
        assert_config_error(
            &dir,
            "hub.toml",
            "[listen]\naddress = \"127.0.0.1:0\"\n\n[limits]\nmax_conections = 5\n",
            ":5: limits.max_conections: unknown field",
        )
        .await;

        assert_config_error(
            &dir,
            "section.toml",
            "# a comment\n[limit]\nmax_connections = 5\n",
            ":2: limit: unknown field",
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn wrong_type_is_an_error_naming_the_key_the_file_and_the_line() {
    within(60, "wrong type", async {
        let dir = TempDir::new("wrong-type");
        assert_config_error(
            &dir,
            "hub.toml",
            "[limits]\nrate_limit = 5\nmax_connections = \"many\"\n",
            ":3: limits.max_connections: invalid type",
        )
        .await;

        assert_config_error(
            &dir,
            "budget.toml",
            "[history]\n\nbudget = \"lots\"\n",
            ":3: history.budget:",
        )
        .await;

        assert_config_error(
            &dir,
            "address.toml",
            "[listen]\naddress = \"nowhere\"\n",
            ":2: listen.address:",
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn unreadable_config_file_exits_1() {
    within(60, "unreadable file", async {
        let dir = TempDir::new("unreadable");
        let missing = dir.path().join("missing.toml");
        let (code, _, stderr) = serve(&["--config", missing.to_str().unwrap()], &[]).await;
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("cannot read the config file"), "{stderr}");
    })
    .await;
}

#[tokio::test]
async fn flag_beats_environment_beats_file_beats_default() {
    within(60, "precedence", async {
        let dir = TempDir::new("precedence");
        let file = dir.write("hub.toml", "[limits]\nmax_connections = 111\n");
        let file = file.to_str().unwrap();
        let max = |printed: String| setting(&printed, "limits", "max_connections").as_integer();
        let env = [("RESOCKET_MAX_CONNECTIONS", "222")];

        assert_eq!(max(print_config(&[], &[]).await), Some(10_000));
        assert_eq!(max(print_config(&["--config", file], &[]).await), Some(111));
        assert_eq!(
            max(print_config(&["--config", file], &env).await),
            Some(222)
        );
        let flag = ["--config", file, "--max-connections", "333"];
        assert_eq!(max(print_config(&flag, &env).await), Some(333));
        // A flag set to its default still beats the file.
        let flag = ["--config", file, "--max-connections", "10000"];
        assert_eq!(max(print_config(&flag, &[]).await), Some(10_000));
    })
    .await;
}

#[tokio::test]
async fn a_false_in_the_environment_turns_off_a_switch_the_file_turns_on() {
    within(60, "boolean precedence", async {
        let dir = TempDir::new("switch");
        let file = dir.write("hub.toml", "[auth]\nallow_anonymous = true\n");
        let file = file.to_str().unwrap();
        let anonymous = |printed: String| setting(&printed, "auth", "allow_anonymous").as_bool();
        assert_eq!(
            anonymous(print_config(&["--config", file], &[]).await),
            Some(true)
        );
        let off = [("RESOCKET_ALLOW_ANONYMOUS", "false")];
        assert_eq!(
            anonymous(print_config(&["--config", file], &off).await),
            Some(false)
        );
        let on = ["--config", file, "--allow-anonymous"];
        assert_eq!(anonymous(print_config(&on, &off).await), Some(true));
    })
    .await;
}

#[tokio::test]
async fn print_config_redacts_secrets_and_a_hub_refuses_the_placeholder() {
    within(60, "secrets", async {
        let secret = "a-secret-of-more-than-16-bytes";
        let dir = TempDir::new("secrets");
        let file = dir.write("hub.toml", &format!("[auth]\njwt_secret = \"{secret}\"\n"));
        let file = file.to_str().unwrap();
        let env = [("RESOCKET_ADMIN_SECRET", secret)];
        let printed = print_config(&["--config", file], &env).await;
        assert!(!printed.contains(secret), "{printed}");
        assert_eq!(
            setting(&printed, "auth", "jwt_secret").as_str(),
            Some("<redacted>")
        );
        assert_eq!(
            setting(&printed, "auth", "admin_secret").as_str(),
            Some("<redacted>")
        );

        let saved = dir.write("printed.toml", &printed);
        let (code, _, stderr) = serve(&["--config", saved.to_str().unwrap()], &[]).await;
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains("auth.admin_secret is \"<redacted>\""),
            "{stderr}"
        );
    })
    .await;
}

#[tokio::test]
async fn tls_cert_and_key_may_come_from_different_places_but_not_alone() {
    within(60, "tls pair", async {
        let dir = TempDir::new("tls-pair");
        let file = dir.write("hub.toml", "[tls]\nkey = \"key.pem\"\n");
        let file = file.to_str().unwrap();
        let printed = print_config(&["--config", file, "--tls-cert", "cert.pem"], &[]).await;
        // The file's path is taken from the file's folder, the flag's from the working one.
        let key = dir.path().join("key.pem");
        assert_eq!(setting(&printed, "tls", "key").as_str(), key.to_str());
        let cert = std::env::current_dir().unwrap().join("cert.pem");
        assert_eq!(setting(&printed, "tls", "cert").as_str(), cert.to_str());

        let alone = [
            "--listen",
            "127.0.0.1:0",
            "--allow-anonymous",
            "--tls-cert",
            "cert.pem",
        ];
        let (code, _, stderr) = serve(&alone, &[]).await;
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains("tls.cert and tls.key go together"),
            "{stderr}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_list_given_in_the_environment_replaces_the_list_in_the_file() {
    within(60, "lists", async {
        let dir = TempDir::new("lists");
        let file = dir.write(
            "hub.toml",
            "[auth]\nallow_origins = [\"https://a.example\"]\n",
        );
        let file = file.to_str().unwrap();
        let origins = |printed: String| setting(&printed, "auth", "allow_origins");
        let from_file = origins(print_config(&["--config", file], &[]).await);
        assert_eq!(from_file.as_array().unwrap().len(), 1);
        let env = [(
            "RESOCKET_ALLOW_ORIGIN",
            "https://b.example,https://c.example",
        )];
        let from_env = origins(print_config(&["--config", file], &env).await);
        let from_env: Vec<_> = from_env
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(from_env, ["https://b.example", "https://c.example"]);
    })
    .await;
}

#[tokio::test]
async fn help_states_the_precedence_and_each_flag_s_file_key() {
    within(60, "help", async {
        let (code, help, _) = serve(&["--help"], &[]).await;
        assert_eq!(code, 0);
        assert!(
            help.contains("its flag, its RESOCKET_* variable, the --config file,\n  its default"),
            "{help}"
        );
        assert!(help.contains("Limits ([limits])"), "{help}");
        assert!(help.contains("[config: max_connections]"), "{help}");
        assert!(help.contains("--history <N>"), "{help}");
        assert!(help.contains("[config: len]"), "{help}");
    })
    .await;
}

#[tokio::test]
async fn serve_runs_a_hub_with_the_settings_of_its_config_file() {
    within(60, "serve from a file", async {
        let dir = TempDir::new("serve-file");
        let file = dir.write(
            "hub.toml",
            "[listen]\naddress = \"127.0.0.1:0\"\n\n\
             [auth]\nallow_anonymous = true\nanonymous_rooms = [\"cfg.*\"]\n",
        );
        let (mut child, port) =
            serve_on_free_port(["--config".as_ref(), file.as_os_str()], &[]).await;
        let client = resocket::hub::HubClient::builder(&format!("ws://127.0.0.1:{port}/ws"))
            .spawn()
            .unwrap();
        // The file's room list is in force: its rooms are open to anonymous clients, others not.
        client.subscribe("cfg.news").await.unwrap();
        let refused = client.subscribe("elsewhere").await;
        assert!(
            matches!(refused, Err(resocket::hub::HubError::Refused { .. })),
            "{refused:?}"
        );
        child.kill().await.unwrap();
    })
    .await;
}
