//! The `approval` example driven as a user would: a request drafted by the local model, quit while
//! the draft waits, then, in a new process, the waiting draft shown again, edited, and saved. Runs
//! the small real chat model (what is checked does not depend on its wording).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The example's binary, built beside this test by `cargo test --all-targets` (what `make test` runs).
fn approval_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().and_then(Path::parent).unwrap().join("examples").join("approval");
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build --example approval`",
        binary.display()
    );
    binary
}

fn approval(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(approval_binary())
        .args(["--dir", dir.to_str().unwrap(), "--model", "chat"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_draft_waits_across_processes_and_is_saved_once_approved() {
    let dir = tempfile::tempdir().unwrap();
    let first = approval(dir.path(), &["Thank Ada for the review"], "q\n");
    assert!(first.status.success(), "{}", text(&first.stderr));
    let out = text(&first.stdout);
    assert!(out.contains("--- draft ---") && out.contains("decide later"), "{out}");
    assert!(!dir.path().join("notes").exists(), "nothing is saved before approval");

    // A new request on the waiting thread is refused, saying why.
    let busy = approval(dir.path(), &["Something else"], "");
    assert!(!busy.status.success());
    assert!(text(&busy.stderr).contains("waiting for your review"), "{}", text(&busy.stderr));

    // Later: the same draft is shown again; an edit replaces it and is saved.
    let second = approval(dir.path(), &[], "e\nThanks for the careful review, Ada! - Sam\n");
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(text(&second.stdout).contains("Saved to"), "{}", text(&second.stdout));
    let saved = std::fs::read_to_string(dir.path().join("notes").join("note.md")).unwrap();
    assert_eq!(saved, "Thanks for the careful review, Ada! - Sam\n");

    // Nothing waits any more.
    let done = approval(dir.path(), &[], "");
    assert!(text(&done.stderr).contains("nothing waits on thread `note`"), "{}", text(&done.stderr));
}
