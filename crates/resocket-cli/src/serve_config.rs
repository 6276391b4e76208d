//! The config file of `resocket serve`: loading it, layering it under the command line and the
//! environment, and printing the result.
//!
//! Precedence, per setting: a flag, then its `RESOCKET_*` variable (clap resolves those two),
//! then the file, then the default. The layering works on TOML tables keyed by the settings'
//! field names, which are also their clap arg ids, so a setting added to
//! [`ServeSettings`] joins the file, the layering and `--print-config` with no code here.

use std::{collections::BTreeSet, fmt, path::Path};

use anyhow::{anyhow, Context as _};
use clap::{parser::ValueSource, ArgMatches, Args, FromArgMatches};
use serde::de::{self, Deserializer, Visitor};
use toml::{Table, Value};

use crate::cli::{ServeArgs, ServeSettings};

/// What `--print-config` prints in place of a secret.
///
/// Loading a file where this is the effective value of a secret is an error, so a printed
/// configuration cannot start a hub with a placeholder for a key.
pub(crate) const REDACTED: &str = "<redacted>";

/// The settings that the command line or the environment gave, by arg id; they win over the file.
#[derive(Debug, Clone, Default)]
pub struct Given(BTreeSet<String>);

impl Given {
    /// Reads where each value came from: clap's `default_value` fills every setting, so only
    /// the value source tells a typed flag from a default.
    pub(crate) fn from_matches(matches: &ArgMatches) -> Self {
        let given = matches
            .ids()
            .filter(|id| {
                matches!(
                    matches.value_source(id.as_str()),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
            })
            .map(|id| id.as_str().to_owned())
            .collect();
        Given(given)
    }

    fn contains(&self, id: &str) -> bool {
        self.0.contains(id)
    }
}

/// Adds each setting's config-file key to its `--help` line, as `[config: KEY]`; the help
/// heading names the key's section.
pub(crate) fn with_file_keys(serve: clap::Command) -> clap::Command {
    let settings = setting_ids(|_| true);
    serve.mut_args(|arg| {
        let id = arg.get_id().as_str().to_owned();
        if !settings.contains(&id) {
            return arg;
        }
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        arg.help(format!("{help} [config: {id}]"))
    })
}

/// The built-in defaults of a group of settings, as its clap `default_value`s declare them.
///
/// Serde fills the keys a file leaves out from here, so the defaults are written once, on the
/// flags. Environment variables are ignored: a default is what holds when nothing is given.
pub(crate) fn defaults<T: Args + FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults"))
        .no_binary_name(true)
        .mut_args(|arg| arg.env(None));
    let parsed = command
        .try_get_matches_from(std::iter::empty::<String>())
        .and_then(|matches| T::from_arg_matches(&matches));
    // Only a default that does not parse as its own flag's type lands here, which the unit
    // tests rule out; no input reaches it.
    parsed.expect("every setting's default_value parses")
}

/// The effective settings of `args`: its flags and variables over its config file over the
/// defaults.
///
/// # Errors
///
/// The config file cannot be read; it is not TOML; a key is unknown or a value has the wrong
/// type (the error names the file, the line and the key); a secret is still [`REDACTED`].
pub(crate) fn resolve(args: &ServeArgs) -> anyhow::Result<ServeSettings> {
    let mut merged = to_table(&args.settings)?;
    if let Some(path) = &args.config {
        for (section, values) in load(path)? {
            let Value::Table(values) = values else {
                continue; // `load` checked that every top-level key is a section.
            };
            let target = merged
                .entry(section)
                .or_insert_with(|| Value::Table(Table::new()));
            if let Value::Table(target) = target {
                for (key, value) in values {
                    if !args.given.contains(&key) {
                        target.insert(key, value);
                    }
                }
            }
        }
    }
    let (paths, secrets) = (path_ids(), secret_ids());
    each_setting(&mut merged, |section, key, value| {
        match value {
            Value::String(path) if paths.contains(key) => absolute(section, key, path)?,
            Value::Array(list) if paths.contains(key) => {
                for item in list {
                    if let Value::String(path) = item {
                        absolute(section, key, path)?;
                    }
                }
            }
            Value::String(secret) if secrets.contains(key) && secret == REDACTED => {
                return Err(anyhow!(
                    "{section}.{key} is \"{REDACTED}\", the placeholder --print-config prints: \
                     give the real secret"
                ));
            }
            _ => {}
        }
        Ok(())
    })?;
    Value::Table(merged)
        .try_into()
        .context("config settings rejected")
}

/// Makes `path` absolute, so that a printed configuration names the same files wherever it is
/// saved and loaded again.
fn absolute(section: &str, key: &str, path: &mut String) -> anyhow::Result<()> {
    let absolute = std::path::absolute(&*path)
        .with_context(|| format!("cannot resolve the path {path} of {section}.{key}"))?;
    *path = absolute.to_string_lossy().into_owned();
    Ok(())
}

/// `settings` as a TOML document in the config file's sections, secrets [`REDACTED`].
///
/// # Errors
///
/// A setting has no TOML form (a path that is not UTF-8).
pub(crate) fn to_toml(settings: &ServeSettings) -> anyhow::Result<String> {
    let mut table = to_table(settings)?;
    let secrets = secret_ids();
    each_setting(&mut table, |_, key, value| {
        if secrets.contains(key) {
            *value = Value::String(REDACTED.to_owned());
        }
        Ok(())
    })?;
    // Back through the typed settings, so the keys come out in their declared order.
    let redacted: ServeSettings = Value::Table(table).try_into()?;
    Ok(toml::to_string(&redacted)?)
}

fn to_table(settings: &ServeSettings) -> anyhow::Result<Table> {
    match Value::try_from(settings).context("a setting has no TOML form")? {
        Value::Table(table) => Ok(table),
        _ => Err(anyhow!("the settings are not a TOML table")),
    }
}

/// Reads and checks a config file; relative paths in it are taken from the file's folder.
fn load(path: &Path) -> anyhow::Result<Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    // Typed first, so that an unknown key or a value of the wrong type is reported with its key
    // and line; the untyped table then tells which keys the file sets.
    let document = toml::Deserializer::parse(&text).map_err(|e| located(path, &text, None, &e))?;
    serde_path_to_error::deserialize::<_, ServeSettings>(document).map_err(|e| {
        let key = e.path().to_string();
        located(path, &text, Some(&key), e.inner())
    })?;
    let mut table: Table = toml::from_str(&text).map_err(|e| located(path, &text, None, &e))?;
    let base = path.parent().unwrap_or(Path::new(""));
    let paths = path_ids();
    let rebase = |path: &mut String| *path = base.join(&*path).to_string_lossy().into_owned();
    each_setting(&mut table, |_, key, value| {
        match value {
            Value::String(path) if paths.contains(key) => rebase(path),
            Value::Array(list) if paths.contains(key) => {
                list.iter_mut().for_each(|item| {
                    if let Value::String(path) = item {
                        rebase(path);
                    }
                });
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(table)
}

/// Calls `visit(section, key, value)` on every setting of `table`.
fn each_setting(
    table: &mut Table,
    mut visit: impl FnMut(&str, &str, &mut Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for (section, values) in table.iter_mut() {
        if let Value::Table(values) = values {
            for (key, value) in values.iter_mut() {
                visit(section, key, value)?;
            }
        }
    }
    Ok(())
}

/// One line: `FILE:LINE: KEY: what is wrong`.
fn located(path: &Path, text: &str, key: Option<&str>, error: &toml::de::Error) -> anyhow::Error {
    let mut at = path.display().to_string();
    if let Some(span) = error.span() {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        at = format!("{at}:{line}");
    }
    let message = error.message().replace('\n', " ");
    match key.filter(|k| !k.is_empty() && *k != ".") {
        Some(key) => anyhow!("{at}: {key}: {message}"),
        None => anyhow!("{at}: {message}"),
    }
}

/// The arg ids of the secrets: the settings whose variables clap hides.
fn secret_ids() -> BTreeSet<String> {
    setting_ids(|arg| arg.is_hide_env_values_set())
}

/// The arg ids of the settings that hold a file path.
fn path_ids() -> BTreeSet<String> {
    setting_ids(|arg| {
        matches!(
            arg.get_value_hint(),
            clap::ValueHint::AnyPath | clap::ValueHint::FilePath | clap::ValueHint::DirPath
        )
    })
}

fn setting_ids(pick: impl Fn(&clap::Arg) -> bool) -> BTreeSet<String> {
    ServeSettings::augment_args(clap::Command::new("serve"))
        .get_arguments()
        .filter(|arg| pick(arg))
        .map(|arg| arg.get_id().as_str().to_owned())
        .collect()
}

/// A byte count in a config file: a number, or a string with a binary suffix like `"256M"`.
///
/// # Errors
///
/// Neither a non-negative integer nor a string that [`crate::cli::parse_bytes`] takes.
pub(crate) fn byte_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    struct ByteCount;

    impl Visitor<'_> for ByteCount {
        type Value = usize;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte count: a number, or a string like \"256M\"")
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<usize, E> {
            usize::try_from(n).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(n), &self))
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<usize, E> {
            usize::try_from(n).map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<usize, E> {
            crate::cli::parse_bytes(text).map_err(E::custom)
        }
    }

    deserializer.deserialize_any(ByteCount)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Catches, among others, two settings with one arg id, which the layering relies on not
    /// happening.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        crate::Cli::command().debug_assert();
    }

    #[test]
    fn defaults_parse_and_name_every_section() {
        let settings: ServeSettings = defaults();
        assert_eq!(settings.listen.address.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.history.budget, 256 << 20);
        assert_eq!(settings.auth.anonymous_rooms, ["*"]);
        let table = to_table(&settings).unwrap();
        let sections: Vec<_> = table.keys().map(String::as_str).collect();
        for section in ["listen", "tls", "auth", "limits", "history", "engine"] {
            assert!(sections.contains(&section), "{sections:?}");
        }
    }

    #[test]
    fn secrets_and_paths_are_found_from_the_flags() {
        let secrets: Vec<_> = secret_ids().into_iter().collect();
        assert_eq!(secrets, ["admin_secret", "jwt_secret", "redis"]);
        let paths: Vec<_> = path_ids().into_iter().collect();
        assert_eq!(paths, ["cert", "jwks", "jwt_public_keys", "key", "revoked"]);
    }

    /// The layering looks settings up by arg id in the file's sections, so each id must be a
    /// key of exactly one section.
    #[test]
    fn every_setting_flag_is_one_file_key() {
        let settings = ServeSettings::augment_args(clap::Command::new("serve"));
        let full = settings
            .try_get_matches_from([
                "serve",
                "--jwt-secret=0123456789abcdef",
                "--admin-secret=0123456789abcdef",
                "--revoked=r",
                "--tls-cert=c",
                "--tls-key=k",
                "--allow-origin=https://a.example",
                "--jwt-public-key=k.pem",
                "--jwks=jwks.json",
                "--jwt-issuer=https://idp.example",
                "--jwt-audience=resocket",
                "--jwt-algorithms=RS256",
                "--jwt-leeway=5",
                "--redis=redis://127.0.0.1:1",
                "--node-id=web-1",
            ])
            .unwrap();
        let table = to_table(&ServeSettings::from_arg_matches(&full).unwrap()).unwrap();
        let command = ServeSettings::augment_args(clap::Command::new("serve"));
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            let sections = table
                .values()
                .filter(|values| values.as_table().is_some_and(|t| t.contains_key(id)))
                .count();
            assert_eq!(
                sections, 1,
                "`{id}` is a key of {sections} sections (a setting without a default needs a \
                 value in this test's command line)"
            );
        }
    }

    #[test]
    fn byte_counts_in_a_file_take_numbers_and_suffixed_strings() {
        #[derive(serde::Deserialize)]
        struct Budget {
            #[serde(deserialize_with = "byte_count")]
            budget: usize,
        }
        let read = |text: &str| toml::from_str::<Budget>(text).map(|b| b.budget);
        assert_eq!(read("budget = 1024").unwrap(), 1024);
        assert_eq!(read("budget = \"64K\"").unwrap(), 64 << 10);
        assert!(read("budget = -1").is_err());
        assert!(read("budget = \"lots\"").is_err());
        assert!(read("budget = true").is_err());
    }
}
