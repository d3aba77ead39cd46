//! Splitters. The first bytes of an input choose the settings (sizes, separators, flags), the
//! rest is the text, so the fuzzer explores both.

use std::sync::{Arc, OnceLock};

use catena_core::{Document, Splitter};
use catena_splitters::{
    KeepSeparator, MarkdownHeaderSplitter, RecursiveCharacterSplitter, TiktokenTokenizer, TokenSplitter,
};

/// The settings bytes and the text after them.
fn settings<const N: usize>(data: &[u8]) -> ([u8; N], String) {
    let mut head = [0u8; N];
    for (slot, byte) in head.iter_mut().zip(data) {
        *slot = *byte;
    }
    (head, crate::text(data.get(N..).unwrap_or_default()))
}

/// The recursive splitter with any sizes, keep-separator mode, stripping, and (when the flag is
/// set) separators of the input's own choosing: its first line, split at `|`.
///
/// Properties: every chunk is non-empty; with the separators kept, every chunk is a substring of
/// the text found at its `start_index`, and without overlap the chunks cover every
/// non-whitespace character; the same input splits the same way twice.
pub(crate) fn recursive(data: &[u8]) {
    let ([size, overlap, flags], mut text) = settings::<3>(data);
    let chunk_size = 1 + usize::from(size);
    let overlap = usize::from(overlap) % chunk_size;
    let keep = match flags % 3 {
        0 => KeepSeparator::Start,
        1 => KeepSeparator::End,
        _ => KeepSeparator::None,
    };
    let strip = flags & 4 != 0;
    let mut splitter = RecursiveCharacterSplitter::new(chunk_size, overlap)
        .expect("valid sizes")
        .with_keep_separator(keep)
        .with_strip_whitespace(strip)
        .with_start_index(true);
    let mut custom = false;
    if flags & 8 != 0
        && let Some((first, rest)) = text.split_once('\n')
    {
        let separators: Vec<String> =
            first.split('|').filter(|s| !s.is_empty()).take(4).map(str::to_owned).collect();
        if !separators.is_empty() {
            splitter = splitter.with_separators(separators);
            custom = true;
        }
        text = rest.to_owned();
    }
    let document = Document::new(text.clone());
    let chunks =
        splitter.split_documents(std::slice::from_ref(&document)).expect("splitting text never fails");
    let again =
        splitter.split_documents(std::slice::from_ref(&document)).expect("splitting text never fails");
    assert_eq!(chunks, again, "the same text split differently twice");

    let chars: Vec<char> = text.chars().collect();
    let mut covered = vec![false; chars.len()];
    let mut all_found = true;
    for chunk in &chunks {
        assert!(!chunk.content.is_empty(), "an empty chunk");
        if keep == KeepSeparator::None {
            // Dropped separators are put back once between pieces, as LangChain does, so runs
            // of a separator collapse ("a  b" split at " " merges to "a b"): not a substring.
            continue;
        }
        let start =
            chunk.metadata.get("start_index").and_then(serde_json::Value::as_i64).expect("start_index");
        let Ok(start) = usize::try_from(start) else {
            // Not found from where the search began (LangChain's -1): still a piece of the text.
            assert!(text.contains(&chunk.content), "chunk {:?} is not in the text", chunk.content);
            all_found = false;
            continue;
        };
        let len = chunk.content.chars().count();
        let at: String = chars.iter().skip(start).take(len).collect();
        assert_eq!(at, chunk.content, "chunk not found at its start_index {start}");
        for slot in covered.iter_mut().skip(start).take(len) {
            *slot = true;
        }
    }
    // With the separators kept and no overlap, every character that is not whitespace is in some
    // chunk. (With an overlap, LangChain's start_index search, which catena follows, begins where
    // the previous chunk's overlap would begin, and can name an earlier copy of a short chunk:
    // "a" from "as a" is placed at the "a" of "as". Found by fuzzing; the text is all there.)
    if keep != KeepSeparator::None
        && overlap == 0
        && all_found
        && !custom
        && let Some((i, c)) = chars
            .iter()
            .enumerate()
            .find(|(i, c)| !python_space(**c) && !covered.get(*i).copied().unwrap_or(true))
    {
        panic!("character {c:?} at {i} is in no chunk");
    }
}

/// Whitespace as Python's `str.strip` sees it (the splitter strips chunks as LangChain does):
/// Unicode whitespace and the information separators U+001C to U+001F. (Found by fuzzing.)
fn python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The markdown header splitter on the usual three levels, each line kept or sections merged,
/// headers stripped or kept. Properties: deterministic; the letters and digits of every line of
/// every section appear in that order in the text (the splitter strips lines and, as LangChain
/// does, drops characters that are not printable, so lines are compared on what is left).
pub(crate) fn markdown(data: &[u8]) {
    let ([flags], text) = settings::<1>(data);
    let splitter = MarkdownHeaderSplitter::new([("#", "h1"), ("##", "h2"), ("###", "h3")])
        .with_return_each_line(flags & 1 != 0)
        .with_strip_headers(flags & 2 == 0);
    let sections = splitter.split_sections(&text);
    assert_eq!(sections, splitter.split_sections(&text), "the same markdown split differently twice");
    let letters = |s: &str| s.chars().filter(|c| c.is_alphanumeric()).collect::<String>();
    let all = letters(&text);
    for (content, _) in &sections {
        for line in content.lines() {
            assert!(all.contains(&letters(line)), "section line {line:?} is not in the text");
        }
    }
}

/// The token splitter on cl100k_base. Properties: deterministic; no chunk is empty.
pub(crate) fn token(data: &[u8]) {
    static TOKENIZER: OnceLock<Arc<TiktokenTokenizer>> = OnceLock::new();
    let tokenizer =
        TOKENIZER.get_or_init(|| Arc::new(TiktokenTokenizer::new("cl100k_base").expect("cl100k_base")));
    let ([size, overlap], text) = settings::<2>(data);
    let chunk_size = 1 + usize::from(size);
    let splitter = TokenSplitter::new(tokenizer.clone(), chunk_size, usize::from(overlap) % chunk_size)
        .expect("valid sizes");
    let chunks = splitter.split_text(&text).expect("splitting text never fails");
    assert_eq!(chunks, splitter.split_text(&text).expect("splitting text never fails"));
    assert!(chunks.iter().all(|c| !c.is_empty()), "an empty chunk");
}

/// The semantic splitter's sentence splitting and grouping, with a deterministic embedder.
/// Properties: deterministic; every chunk's words come from the text.
pub(crate) fn semantic(data: &[u8]) {
    let runtime = crate::runtime();
    let ([buffer], text) = settings::<1>(data);
    let embedder = Arc::new(catena_core::testing::DeterministicEmbedder::new(8));
    let splitter =
        catena_splitters::SemanticSplitter::new(embedder).with_buffer_size(usize::from(buffer % 4));
    let ctx = catena_core::RunContext::new();
    let first = runtime.block_on(splitter.split_text(&text, &ctx)).map_err(|e| e.to_string());
    let second = runtime.block_on(splitter.split_text(&text, &ctx)).map_err(|e| e.to_string());
    assert_eq!(first, second, "the same text split differently twice");
    for chunk in first.unwrap_or_default() {
        for word in chunk.split_whitespace() {
            assert!(text.contains(word), "chunk word {word:?} is not in the text");
        }
    }
}
