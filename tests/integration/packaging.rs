//! What ships beside the binary: shell completions and the manual page generated from the command
//! line's definition, and the SENTINEL_WORKDIR default that the container image relies on.

use std::process::Command;

use crate::util::Workdir;

fn sentinel(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_cover_every_command_and_flag() {
    let bash = sentinel(&["completions", "bash"]);
    for word in [
        "recover",
        "analyze",
        "--skip-unknown",
        "--fail-on-halt",
        "completions",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("sentinel.bash");
    std::fs::write(&script, &bash).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    let zsh = sentinel(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef sentinel"), "{}", &zsh[..40]);
    assert!(zsh.contains("--skip-unknown"));
    let fish = sentinel(&["completions", "fish"]);
    assert!(fish.contains("complete -c sentinel") && fish.contains("skip-unknown"));

    let w = Workdir::new();
    let err = w.fails(&["completions", "tcsh"], 2);
    assert!(err.contains("tcsh"), "{err}");
}

#[test]
fn the_manual_page_documents_the_commands_and_exit_codes() {
    let page = sentinel(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH sentinel"),
        "{}",
        &page[..80]
    );
    assert!(page.contains(".TH sentinel 1"), "not a section-1 page");
    for word in [
        "generate",
        "chaos",
        "recover",
        "analyze",
        "report",
        "run",
        "Exit codes",
    ] {
        assert!(page.contains(word), "the manual lacks {word}");
    }
}

#[test]
fn sentinel_workdir_sets_the_default_work_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .current_dir(dir.path())
        .env("SENTINEL_WORKDIR", dir.path().join("data"))
        .args(["--quiet", "generate", "--devices", "50"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("data/raw/telemetry.parquet").is_file());
    assert!(!dir.path().join("sentinel-out").exists());
}
