//! Reading files inside one folder, for agents that answer from local documents.

use std::path::{Component, Path, PathBuf};

use catena_core::{Error, Result, RunContext, ToolOutput, TypedTool, async_trait};
use schemars::JsonSchema;
use serde::Deserialize;

/// Reads a text file, or lists a folder, inside an allowed root.
///
/// Safety limits: paths are relative to the root; absolute paths, `..` that climbs out, and
/// symbolic links that lead out are refused (the resolved path must stay under the canonical
/// root); at most `max_bytes` (default 64 KiB) are returned, with a note when cut; binary files
/// are refused; folder listings stop at 200 entries.
///
/// ```
/// use catena_core::{RunContext, Tool};
/// use catena_tools::ReadFileTool;
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
/// let tool = ReadFileTool::new(dir.path()).unwrap();
/// let ctx = RunContext::new();
/// assert_eq!(tool.call(serde_json::json!({"path": "notes.txt"}), &ctx).await.unwrap().content, "hello");
/// assert!(tool.call(serde_json::json!({"path": "../etc/passwd"}), &ctx).await.is_err());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct ReadFileTool {
    root: PathBuf,
    max_bytes: usize,
}

/// Arguments of [`ReadFileTool`].
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadFileArgs {
    /// A path relative to the allowed folder, e.g. `docs/guide.md`; `.` lists the folder.
    pub path: String,
}

const MAX_ENTRIES: usize = 200;

fn refuse(message: impl Into<String>) -> Error {
    Error::tool("read_file", message)
}

impl ReadFileTool {
    /// A tool confined to `root`, which must be an existing folder.
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let canonical = root.canonicalize().map_err(|e| Error::io(root, e))?;
        if !canonical.is_dir() {
            return Err(Error::invalid_input(format!("{} is not a folder", root.display())));
        }
        Ok(Self { root: canonical, max_bytes: 64 << 10 })
    }

    /// The most bytes of a file returned (at least 1).
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes.max(1);
        self
    }

    /// The path inside the root, or why it is refused.
    fn resolve(&self, requested: &str) -> Result<PathBuf> {
        let relative = Path::new(requested.trim());
        if relative.is_absolute()
            || relative.components().any(|c| matches!(c, Component::Prefix(_) | Component::RootDir))
        {
            return Err(refuse(format!(
                "{requested:?} is absolute; give a path relative to the allowed folder"
            )));
        }
        let joined = self.root.join(relative);
        let resolved = joined.canonicalize().map_err(|_| refuse(format!("{requested:?} does not exist")))?;
        if !resolved.starts_with(&self.root) {
            return Err(refuse(format!("{requested:?} is outside the allowed folder")));
        }
        Ok(resolved)
    }
}

#[async_trait]
impl TypedTool for ReadFileTool {
    type Args = ReadFileArgs;
    const NAME: &'static str = "read_file";
    const DESCRIPTION: &'static str =
        "Reads a text file (or lists a folder) inside the allowed folder. Paths are relative to that folder.";
    const READ_ONLY: bool = true;

    async fn run(&self, args: ReadFileArgs, _ctx: &RunContext) -> Result<ToolOutput> {
        let path = self.resolve(&args.path)?;
        let max_bytes = self.max_bytes;
        let requested = args.path.clone();
        let work = move || -> Result<String> {
            if path.is_dir() {
                let mut names: Vec<String> = std::fs::read_dir(&path)
                    .map_err(|e| Error::io(&path, e))?
                    .filter_map(|e| e.ok())
                    .map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if e.path().is_dir() { format!("{name}/") } else { name }
                    })
                    .collect();
                names.sort();
                let more = names.len().saturating_sub(MAX_ENTRIES);
                names.truncate(MAX_ENTRIES);
                if more > 0 {
                    names.push(format!("... and {more} more"));
                }
                return Ok(names.join("\n"));
            }
            use std::io::Read;
            let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            let mut bytes = Vec::new();
            let limit = u64::try_from(max_bytes).unwrap_or(u64::MAX).saturating_add(1);
            file.take(limit).read_to_end(&mut bytes).map_err(|e| Error::io(&path, e))?;
            let cut = bytes.len() > max_bytes;
            bytes.truncate(max_bytes);
            if bytes.contains(&0) {
                return Err(refuse(format!("{requested:?} is a binary file")));
            }
            // A cut may split a UTF-8 sequence: keep the valid prefix.
            let text = match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) if cut => {
                    let valid = e.utf8_error().valid_up_to();
                    String::from_utf8_lossy(e.as_bytes().get(..valid).unwrap_or_default()).into_owned()
                }
                Err(_) => return Err(refuse(format!("{requested:?} is not UTF-8 text"))),
            };
            Ok(if cut { format!("{text}\n[cut at {max_bytes} bytes]") } else { text })
        };
        let content =
            tokio::task::spawn_blocking(work).await.map_err(|e| refuse(format!("reading failed: {e}")))??;
        Ok(ToolOutput::text(content))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use catena_core::Tool;
    use serde_json::json;

    #[tokio::test]
    async fn reads_inside_the_root_and_refuses_everything_else() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(root.join("docs/a.md"), "# A\nalpha").unwrap();
        std::fs::write(root.join("big.txt"), "é".repeat(100)).unwrap();
        std::fs::write(root.join("bin.dat"), [0u8, 1, 2]).unwrap();
        std::fs::write(outer.path().join("secret.txt"), "secret").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(outer.path().join("secret.txt"), root.join("link.txt")).unwrap();
        let tool = ReadFileTool::new(&root).unwrap().with_max_bytes(11);
        let ctx = RunContext::new();
        let call = |path: &str| tool.call(json!({"path": path}), &ctx);
        assert_eq!(call("docs/a.md").await.unwrap().content, "# A\nalpha");
        assert_eq!(call("docs/../docs/a.md").await.unwrap().content, "# A\nalpha");
        assert_eq!(call(".").await.unwrap().content, "big.txt\nbin.dat\ndocs/\nlink.txt");
        // Cut inside a two-byte character: the valid prefix and a note.
        assert_eq!(call("big.txt").await.unwrap().content, "ééééé\n[cut at 11 bytes]");
        for (path, needle) in [
            ("../secret.txt", "outside the allowed folder"),
            ("docs/../../secret.txt", "outside the allowed folder"),
            ("/etc/passwd", "absolute"),
            ("nope.txt", "does not exist"),
            ("bin.dat", "binary"),
        ] {
            let err = call(path).await.unwrap_err();
            assert_eq!(err.kind(), catena_core::ErrorKind::Tool, "{path}");
            assert!(err.to_string().contains(needle), "{path}: {err}");
        }
        #[cfg(unix)]
        assert!(call("link.txt").await.unwrap_err().to_string().contains("outside the allowed folder"));
        assert!(ReadFileTool::new(outer.path().join("missing")).is_err());
    }
}
