//! Saving notes into one folder: a side-effecting tool, registered behind approval.

use std::path::{Path, PathBuf};

use catena_core::{Error, Result, RunContext, ToolOutput, TypedTool, async_trait};
use schemars::JsonSchema;
use serde::Deserialize;

/// Saves a note as a Markdown file in one folder: `<folder>/<slug of the title>.md`, never
/// overwriting (a taken name gets `-2`, `-3`, ...), written to a temporary file and renamed so a
/// crash leaves no half-written note. The file name comes from the title's letters and digits
/// only, so no title can reach outside the folder.
///
/// It changes the world: register it with
/// [`ToolOptions::needs_confirmation`](crate::ToolOptions::needs_confirmation) so a person
/// approves each note.
///
/// ```
/// use catena_core::{RunContext, Tool};
/// use catena_tools::SaveNoteTool;
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let tool = SaveNoteTool::new(dir.path());
/// let out = tool.call(serde_json::json!({"title": "Groceries", "text": "buy milk"}), &RunContext::new()).await.unwrap();
/// assert_eq!(out.content, "Saved the note as groceries.md.");
/// assert_eq!(std::fs::read_to_string(dir.path().join("groceries.md")).unwrap(), "# Groceries\n\nbuy milk\n");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct SaveNoteTool {
    folder: PathBuf,
}

/// Arguments of [`SaveNoteTool`].
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SaveNoteArgs {
    /// A short title; it names the file.
    #[schemars(length(max = 80))]
    pub title: String,
    /// The note's text.
    #[schemars(length(max = 4000))]
    pub text: String,
}

impl SaveNoteTool {
    /// Notes go into `folder` (created when the first note is saved).
    pub fn new(folder: impl AsRef<Path>) -> Self {
        Self { folder: folder.as_ref().to_path_buf() }
    }
}

/// `Groceries for Friday!` -> `groceries-for-friday`; `note` when nothing is left.
fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 60 {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() { "note".to_owned() } else { out }
}

#[async_trait]
impl TypedTool for SaveNoteTool {
    type Args = SaveNoteArgs;
    const NAME: &'static str = "save_note";
    const DESCRIPTION: &'static str = "Saves a note (a title and its text) as a file in the notes folder. Use it when the user asks to note, remember or write something down.";

    async fn run(&self, args: SaveNoteArgs, _ctx: &RunContext) -> Result<ToolOutput> {
        if args.text.trim().is_empty() {
            return Err(Error::tool(Self::NAME, "the note is empty: give its text"));
        }
        let folder = self.folder.clone();
        let name = slug(&args.title);
        let body = format!("# {}\n\n{}\n", args.title.trim(), args.text.trim());
        let saved = tokio::task::spawn_blocking(move || -> Result<String> {
            std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
            let temp = folder.join(format!(".{name}.md.tmp"));
            std::fs::write(&temp, body).map_err(|e| Error::io(&temp, e))?;
            for n in 1..1000 {
                let file = if n == 1 { format!("{name}.md") } else { format!("{name}-{n}.md") };
                let path = folder.join(&file);
                // A hard link fails when the name is taken, so no existing note is replaced.
                match std::fs::hard_link(&temp, &path) {
                    Ok(()) => {
                        let _ = std::fs::remove_file(&temp);
                        return Ok(file);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::io(&path, e)),
                }
            }
            let _ = std::fs::remove_file(&temp);
            Err(Error::tool(Self::NAME, "too many notes with this title: choose another"))
        })
        .await
        .map_err(|e| Error::tool(Self::NAME, format!("the write did not finish: {e}")))??;
        Ok(ToolOutput::text(format!("Saved the note as {saved}.")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use catena_core::Tool;

    #[test]
    fn titles_become_safe_file_names() {
        assert_eq!(slug("Groceries for Friday!"), "groceries-for-friday");
        assert_eq!(slug("../../etc/passwd"), "etc-passwd");
        assert_eq!(slug("???"), "note");
        assert_eq!(slug(&"a".repeat(200)).len(), 60);
    }

    #[tokio::test]
    async fn a_taken_name_gets_a_number_and_nothing_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let tool = SaveNoteTool::new(dir.path().join("notes"));
        let ctx = RunContext::new();
        let save = |text: &str| tool.call(serde_json::json!({"title": "Plan", "text": text}), &ctx);
        assert_eq!(save("one").await.unwrap().content, "Saved the note as plan.md.");
        assert_eq!(save("two").await.unwrap().content, "Saved the note as plan-2.md.");
        let first = std::fs::read_to_string(dir.path().join("notes/plan.md")).unwrap();
        assert!(first.contains("one"));
        assert!(save("  ").await.is_err());
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join("notes")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }
}
