//! The checked-in man pages (`man/`) are the ones the current command line generates.

use std::{collections::BTreeMap, fs, path::Path};

use clap::CommandFactory;
use resocket_cli::Cli;

/// Every file of `dir`, by name, with its contents.
fn pages(dir: &Path) -> BTreeMap<String, String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read_to_string(&path).unwrap())
        })
        .collect()
}

#[test]
fn man_pages_are_current() {
    let fresh = Path::new(env!("CARGO_TARGET_TMPDIR")).join("resocket-man");
    // A leftover from an earlier run would hide a page that is no longer generated.
    let _ = fs::remove_dir_all(&fresh);
    fs::create_dir_all(&fresh).unwrap();
    clap_mangen::generate_to(Cli::command(), &fresh).unwrap();

    let generated = pages(&fresh);
    let checked_in = pages(&Path::new(env!("CARGO_MANIFEST_DIR")).join("man"));
    assert!(
        generated.contains_key("resocket.1"),
        "{:?}",
        generated.keys()
    );
    assert!(generated.contains_key("resocket-completions.1"));
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        checked_in.keys().collect::<Vec<_>>(),
        "the man pages in crates/resocket-cli/man are out of date: run scripts/man"
    );
    for (name, page) in &generated {
        // Not assert_eq!: a whole page in a panic message hides the hint.
        assert!(
            checked_in[name] == *page,
            "crates/resocket-cli/man/{name} is out of date: run scripts/man"
        );
    }
}
