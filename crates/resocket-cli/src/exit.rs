//! The exit statuses the commands share, and the `--help` text that documents them.
//!
//! Scripts read `$?`, so each status means one thing in every command: 0 done as asked, 1 a
//! failure (the last stderr line says which), 2 a usage error, 3 messages that did not make
//! it (the count is on stderr).

use std::process::ExitCode;

/// Everything asked for was done.
pub(crate) const SUCCESS: u8 = 0;
/// A failure: a permanent connection error, a port that cannot be bound, a bad file.
pub(crate) const FAILURE: u8 = 1;
/// A bad flag or argument (clap's usage errors, and values clap checks).
pub(crate) const USAGE: u8 = 2;
/// Messages were dropped, refused or lost; stderr says how many.
pub(crate) const UNDELIVERED: u8 = 3;

/// `status` as the process's exit code.
pub(crate) fn code(status: u8) -> ExitCode {
    ExitCode::from(status)
}

/// The top-level `--help` footer.
pub(crate) const TOP_HELP: &str = "\
Exit status (every command; see each command's --help):
  0  done as asked
  1  a failure; the last line on stderr says which
  2  usage: a bad flag or argument
  3  messages were dropped, refused or lost; stderr says how many";

/// `resocket connect --help` footer.
pub(crate) const CONNECT_HELP: &str = "\
End of input:
  When stdin ends, the lines still queued keep being delivered, through reconnects, for at most
  --drain-timeout seconds. Once they are written, the connection stays open until no message
  has arrived for --linger seconds (default 1): servers such as Python's `websockets` stop
  answering as soon as they receive a Close, so replies still on their way would be lost. Then
  the client closes with 1000; until the close handshake completes (or 5 s pass) every message
  that arrives is still printed. Reading stdin stops while the send
  queue is full (backpressure); the end of input is still noticed as long as the unread rest
  fits in the read-ahead (1024 lines, 8 MiB).

Exit status:
  0  every line read from stdin was written to a connection, which then closed
  1  a permanent failure: HTTP 401/403/404, a bad certificate, retries exhausted
     (--max-retries, --exit-on-first-failure); the last line on stderr says which
  2  usage: a bad flag or argument
  3  input was not delivered: lines still queued when --drain-timeout passed (or written to a
     connection that died before confirming them); stderr says how many";

/// `resocket serve --help` footer.
pub(crate) const SERVE_HELP: &str = "\
Configuration:
  Each setting comes from, first to last: its flag, its RESOCKET_* variable, the --config file,
  its default. The file is TOML with the sections shown above ([listen], [tls], [auth],
  [limits], [history], [engine]) and each flag's key shown as [config: KEY] under its section's
  heading; hub.example.toml lists every key with its default. An unknown key or a value of the wrong type is an
  error naming the file, the line and the key. --print-config prints the result in the same
  form, with jwt_secret and admin_secret as \"<redacted>\" (a hub will not start with that
  placeholder as a secret).

Exit status:
  0  the hub shut down, or --print-config printed the configuration
  1  a failure: the address cannot be bound, a bad certificate or key, rejected settings, a
     config file that cannot be read or has an unknown key or a value of the wrong type
  2  usage: a bad flag or argument";

/// `resocket chaos --help` footer.
pub(crate) const CHAOS_HELP: &str = "\
The proxy starts whether or not the upstream answers. While the upstream is down, every client
connection is accepted and closed at once (one line each with -v); it runs until stopped.

Exit status:
  0  stopped with Ctrl-C
  1  a failure: the address cannot be bound, the upstream name does not resolve
  2  usage: a bad flag or argument";

/// `resocket bench --help` footer.
pub(crate) const BENCH_HELP: &str = "\
Exit status:
  0  every message was sent and, if the server echoes, every echo came back
  1  a failure: a connection could not be made
  2  usage: a bad flag or argument
  3  messages were lost: refused by a full queue, dropped at the close, or (from an echoing
     server) never echoed; the report says how many";

/// `resocket demo --help` footer.
pub(crate) const DEMO_HELP: &str = "\
Exit status:
  0  nothing was lost or duplicated
  1  something was lost or duplicated (the summary says what), or the demo could not start
  2  usage: a bad flag or argument";

/// `resocket completions --help` footer.
pub(crate) const COMPLETIONS_HELP: &str = "\
Installing the script:
  bash        resocket completions bash > ~/.local/share/bash-completion/completions/resocket
  zsh         resocket completions zsh > ~/.zfunc/_resocket   (a directory on $fpath)
  fish        resocket completions fish > ~/.config/fish/completions/resocket.fish
  powershell  resocket completions powershell >> $PROFILE
  elvish      resocket completions elvish >> ~/.config/elvish/rc.elv

Exit status:
  0  the script was printed
  1  stdout could not be written
  2  usage: a bad flag or argument, or a shell not in the list";
