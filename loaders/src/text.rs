//! [`TextLoader`]: a text file as one document (or as parts, when it is very large), with the
//! encoding detected.

use std::io::Read;
use std::path::{Path, PathBuf};

use catena_core::{Document, Error, Event, Loader, Result, RunContext};
use futures::stream::BoxStream;

use crate::blocking::{Sink, blocking_stream};

/// Files larger than this are loaded as several documents (`part` 0, 1, ...), cut at line ends,
/// so a 1 GB log never has to sit in memory at once.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 32 << 20;

/// Loads a text file as a [`Document`] with `source` (the path) in its metadata.
///
/// The encoding is detected: a byte-order mark (UTF-8, UTF-16) wins; otherwise valid UTF-8 is
/// taken as such; otherwise chardetng guesses (windows-1252, Shift_JIS, GBK, ...) and the document
/// records `"encoding"`. Bytes that still do not decode are replaced with U+FFFD, the document is
/// marked `"lossy": true`, and an [`Event::Warning`] says so: the text is kept, and the loss is
/// never silent. An empty file is an [`Error::InvalidInput`] naming it, and so is a binary file
/// (NUL bytes where text has none). Files over [`DEFAULT_MAX_DOCUMENT_BYTES`] come as parts.
#[derive(Debug, Clone)]
pub struct TextLoader {
    path: PathBuf,
    max_document_bytes: usize,
}

impl TextLoader {
    /// A loader for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES }
    }

    /// Files larger than `bytes` are loaded in parts of about that size (at least 4 KiB).
    #[must_use]
    pub fn with_max_document_bytes(mut self, bytes: usize) -> Self {
        self.max_document_bytes = bytes.max(4096);
        self
    }
}

/// Decodes bytes as text, detecting the encoding; returns the text, the encoding's name when it
/// is not UTF-8, and whether any bytes had to be replaced.
pub fn decode_text(bytes: &[u8]) -> (String, Option<&'static str>, bool) {
    if let Some((encoding, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, had_errors) = encoding.decode_without_bom_handling(bytes.get(bom..).unwrap_or_default());
        let name = (encoding != encoding_rs::UTF_8).then(|| encoding.name());
        return (text.into_owned(), name, had_errors);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), None, false),
        // A character cut at the very end of a part is not an encoding problem.
        Err(e) if e.error_len().is_none() && e.valid_up_to() + 4 > bytes.len() => {
            (String::from_utf8_lossy(bytes).into_owned(), None, false)
        }
        Err(_) => {
            let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
            detector.feed(bytes, true);
            // Not UTF-8 (checked above), so the guess may not be UTF-8 either.
            let encoding = detector.guess(None, chardetng::Utf8Detection::Deny);
            let (text, _, had_errors) = encoding.decode(bytes);
            (text.into_owned(), Some(encoding.name()), had_errors)
        }
    }
}

/// True when the bytes look like a binary file: a NUL byte in the first 8 KiB (and no UTF-16
/// byte-order mark, whose text is full of NULs).
pub fn looks_binary(bytes: &[u8]) -> bool {
    let head = bytes.get(..8192).unwrap_or(bytes);
    encoding_rs::Encoding::for_bom(head).is_none() && head.contains(&0)
}

/// Reads `path` as one document (see [`TextLoader`] for the rules; no parts).
pub fn read_text(path: &Path, ctx: &RunContext) -> Result<Document> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    text_document(path, &bytes, None, ctx)
}

/// Builds the document for `bytes` read from `path` (part `part` of it, when split).
pub(crate) fn text_document(
    path: &Path,
    bytes: &[u8],
    part: Option<usize>,
    ctx: &RunContext,
) -> Result<Document> {
    if part.is_none_or(|p| p == 0) && looks_binary(bytes) {
        return Err(Error::invalid_input(format!(
            "{} looks like a binary file (it contains NUL bytes); load it with a loader for its format",
            path.display()
        )));
    }
    let (content, encoding, lossy) = decode_text(bytes);
    if part.is_none() && content.trim().is_empty() {
        return Err(Error::invalid_input(format!("{} is empty: there is nothing to load", path.display())));
    }
    if lossy {
        ctx.emit(Event::Warning {
            message: format!(
                "{} is not valid {}; undecodable bytes were replaced with U+FFFD",
                path.display(),
                encoding.unwrap_or("UTF-8")
            ),
        });
    }
    let mut doc = Document::new(content).with_metadata("source", path.to_string_lossy().into_owned());
    if let Some(encoding) = encoding {
        doc = doc.with_metadata("encoding", encoding);
    }
    if lossy {
        doc = doc.with_metadata("lossy", true);
    }
    if let Some(part) = part {
        doc = doc.with_metadata("part", part);
    }
    Ok(doc)
}

/// Streams a large file in parts cut after the last newline of each window.
fn read_parts(path: &Path, max: usize, ctx: &RunContext, sink: &Sink) {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            sink.send(Err(Error::io(path, e)));
            return;
        }
    };
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut carry: Vec<u8> = Vec::new();
    let mut part = 0;
    loop {
        let mut window = std::mem::take(&mut carry);
        let want = max.saturating_sub(window.len());
        if let Err(e) = reader.by_ref().take(want as u64).read_to_end(&mut window) {
            sink.send(Err(Error::io(path, e)));
            return;
        }
        let at_end = window.len() < max;
        if !at_end {
            // Keep the unfinished last line for the next part; a window with no line end at all
            // is cut at a character boundary instead.
            let cut = memchr::memrchr(b'\n', &window)
                .map(|i| i + 1)
                .or_else(|| window.iter().rposition(|b| b & 0xC0 != 0x80).filter(|&i| i > 0));
            if let Some(cut) = cut {
                carry = window.split_off(cut);
            }
        }
        if window.is_empty() {
            return;
        }
        if !sink.send(text_document(path, &window, Some(part), ctx)) {
            return;
        }
        part += 1;
        if at_end && carry.is_empty() {
            return;
        }
    }
}

impl Loader for TextLoader {
    fn load<'a>(&'a self, ctx: &'a RunContext) -> BoxStream<'a, Result<Document>> {
        let (path, max, ctx) = (self.path.clone(), self.max_document_bytes, ctx.clone());
        blocking_stream(move |sink| match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > max as u64 => read_parts(&path, max, &ctx, sink),
            Ok(_) => {
                sink.send(read_text(&path, &ctx));
            }
            Err(e) => {
                sink.send(Err(Error::io(&path, e)));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use futures::StreamExt;

    #[test]
    fn encodings_are_detected() {
        let (t, e, lossy) = decode_text("naïve café, Grüße aus Köln, déjà vu".as_bytes());
        assert_eq!((t.as_str(), e, lossy), ("naïve café, Grüße aus Köln, déjà vu", None, false));
        let latin1 = encoding_rs::WINDOWS_1252.encode("naïve café, Grüße aus Köln, déjà vu").0;
        let (t, e, lossy) = decode_text(&latin1);
        assert_eq!(
            (t.as_str(), e, lossy),
            ("naïve café, Grüße aus Köln, déjà vu", Some("windows-1252"), false)
        );
        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend("hé".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(decode_text(&utf16).0, "hé");
        assert!(!looks_binary(&utf16));
        assert!(looks_binary(b"\x7fELF\x02\x01\x00\x00"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_files_come_in_parts_cut_at_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.log");
        let line = "0123456789 abcdefghij\n";
        std::fs::write(&path, line.repeat(1000)).unwrap();
        let parts: Vec<_> =
            TextLoader::new(&path).with_max_document_bytes(4096).load(&RunContext::new()).collect().await;
        assert!(parts.len() > 4);
        let mut all = String::new();
        for (i, p) in parts.iter().enumerate() {
            let p = p.as_ref().unwrap();
            assert_eq!(p.metadata["part"], i);
            assert!(p.content.ends_with('\n'), "parts end at a line end");
            all.push_str(&p.content);
        }
        assert_eq!(all, line.repeat(1000), "nothing lost or duplicated");
    }
}
