//! [`PdfLoader`]: one document per page of a PDF, text in reading order.

use std::path::PathBuf;

use catena_core::{Document, Error, Loader, Result, RunContext};
use futures::stream::BoxStream;
use lopdf::Object;
use serde_json::Value;

use crate::blocking::blocking_stream;

/// Loads a PDF with lopdf as one [`Document`] per page, in page order.
///
/// Text comes out in reading order: each page's text runs are placed by their position (text
/// and graphics matrices), grouped into lines top to bottom and ordered left to right within a
/// line, with a blank line where the vertical gap shows a paragraph break. (Multi-column layouts
/// are read line by line across the columns.)
///
/// Metadata: `source`, `page` (0-based, as LangChain's PyPDFLoader), `page_label` (from the
/// document's page labels: roman front matter, prefixes, or the 1-based number), `total_pages`,
/// and the document information (`title`, `author`, `subject`, `keywords`, `creator`,
/// `producer`, `creation_date`) when present.
///
/// Errors are items of the stream and never end it: a file that is not a PDF, truncated beyond
/// repair, or encrypted with a password not given is one error naming the file; a page without a
/// text layer (scanned or image-only) is an error naming the page, and the other pages still load.
#[derive(Debug, Clone)]
pub struct PdfLoader {
    path: PathBuf,
    password: Option<String>,
}

impl PdfLoader {
    /// A loader for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), password: None }
    }

    /// The password of an encrypted PDF.
    #[must_use]
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }
}

/// Passes one document (or error) per page of the PDF in `bytes` to `send`, stopping when it
/// returns false (the consumer went away).
pub(crate) fn pdf_pages(
    bytes: &[u8],
    source: &str,
    password: Option<&str>,
    send: &mut dyn FnMut(Result<Document>) -> bool,
) {
    let loaded = match password {
        Some(p) => lopdf::Document::load_mem_with_options(bytes, lopdf::LoadOptions::with_password(p)),
        None => lopdf::Document::load_mem(bytes),
    };
    let pdf = match loaded {
        Ok(pdf) => pdf,
        Err(e) => {
            let message = match e {
                lopdf::Error::Decryption(_) | lopdf::Error::InvalidPassword => format!(
                    "{source} is encrypted and could not be opened{}; give its password with \
                     PdfLoader::with_password",
                    if password.is_some() { " with the given password" } else { "" }
                ),
                other => {
                    format!("{source} is not a readable PDF ({other}); the file may be truncated or corrupt")
                }
            };
            send(Err(Error::invalid_input(message)));
            return;
        }
    };
    let pages = pdf.get_pages();
    let total = pages.len();
    if total == 0 {
        send(Err(Error::invalid_input(format!("{source} has no pages"))));
        return;
    }
    let info = document_info(&pdf);
    let labels = page_labels(&pdf);
    for (index, (_, page_id)) in pages.iter().enumerate() {
        let item = page_text(&pdf, *page_id).and_then(|text| {
            if text.trim().is_empty() {
                return Err(Error::invalid_input(format!(
                    "{source}: page {} of {total} has no text layer (scanned or image-only); OCR it to \
                     index its text",
                    index + 1
                )));
            }
            let mut doc = Document::new(text)
                .with_metadata("source", source)
                .with_metadata("page", index)
                .with_metadata("page_label", label_for(&labels, index))
                .with_metadata("total_pages", total);
            for (k, v) in &info {
                doc.metadata.insert(k.clone(), v.clone());
            }
            Ok(doc)
        });
        if !send(item) {
            return;
        }
    }
}

/// A run of text placed on the page.
struct Span {
    x: f64,
    y: f64,
    size: f64,
    text: String,
}

type Matrix = [f64; 6];
const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

fn multiply(m: &Matrix, n: &Matrix) -> Matrix {
    [
        m[0] * n[0] + m[1] * n[2],
        m[0] * n[1] + m[1] * n[3],
        m[2] * n[0] + m[3] * n[2],
        m[2] * n[1] + m[3] * n[3],
        m[4] * n[0] + m[5] * n[2] + n[4],
        m[4] * n[1] + m[5] * n[3] + n[5],
    ]
}

fn number(o: &Object) -> f64 {
    match o {
        Object::Integer(i) => *i as f64,
        Object::Real(r) => f64::from(*r),
        _ => 0.0,
    }
}

fn numbers<const N: usize>(operands: &[Object]) -> [f64; N] {
    let mut out = [0.0; N];
    for (slot, o) in out.iter_mut().zip(operands) {
        *slot = number(o);
    }
    out
}

fn page_text(pdf: &lopdf::Document, page_id: lopdf::ObjectId) -> Result<String> {
    let fonts = pdf.get_page_fonts(page_id).unwrap_or_default();
    let encodings: std::collections::BTreeMap<Vec<u8>, lopdf::Encoding<'_>> = fonts
        .into_iter()
        .filter_map(|(name, font)| font.get_font_encoding(pdf).ok().map(|e| (name, e)))
        .collect();
    let data = pdf
        .get_page_content_with_limit(page_id, 256 << 20)
        .map_err(|e| Error::invalid_input(format!("page content is unreadable ({e})")))?;
    let content = lopdf::content::Content::decode(&data)
        .map_err(|e| Error::invalid_input(format!("page content does not parse ({e})")))?;

    let mut spans: Vec<Span> = Vec::new();
    let (mut ctm, mut stack) = (IDENTITY, Vec::new());
    let (mut tm, mut tlm) = (IDENTITY, IDENTITY);
    let (mut leading, mut size) = (0.0, 12.0);
    let mut encoding = None;
    let mut show = |tm: &mut Matrix, ctm: &Matrix, size: f64, text: String| {
        let m = multiply(tm, ctm);
        let scale = (m[0] * m[0] + m[1] * m[1]).sqrt().max(1e-6);
        let width = text.chars().count() as f64 * size * 0.5;
        spans.push(Span { x: m[4], y: m[5], size: size * scale, text });
        // No font metrics: advance by an estimate, enough to order runs shown without moves.
        tm[4] += width * tm[0];
        tm[5] += width * tm[1];
    };
    for op in &content.operations {
        let o = &op.operands;
        match op.operator.as_str() {
            "q" => stack.push(ctm),
            "Q" => ctm = stack.pop().unwrap_or(IDENTITY),
            "cm" => ctm = multiply(&numbers::<6>(o), &ctm),
            "BT" => (tm, tlm) = (IDENTITY, IDENTITY),
            "Tf" => {
                size = o.get(1).map_or(size, number);
                encoding = o.first().and_then(|n| n.as_name().ok()).and_then(|n| encodings.get(n));
            }
            "TL" => leading = o.first().map_or(leading, number),
            "Td" | "TD" => {
                let [tx, ty] = numbers::<2>(o);
                if op.operator == "TD" {
                    leading = -ty;
                }
                tlm = multiply(&[1.0, 0.0, 0.0, 1.0, tx, ty], &tlm);
                tm = tlm;
            }
            "Tm" => {
                tlm = numbers::<6>(o);
                tm = tlm;
            }
            "T*" | "'" | "\"" => {
                tlm = multiply(&[1.0, 0.0, 0.0, 1.0, 0.0, -leading], &tlm);
                tm = tlm;
                if op.operator != "T*"
                    && let Some(text) = decode(encoding, o.last())
                {
                    show(&mut tm, &ctm, size, text);
                }
            }
            "Tj" | "TJ" => {
                if let Some(text) = decode(encoding, o.first()) {
                    show(&mut tm, &ctm, size, text);
                }
            }
            _ => {}
        }
    }
    Ok(layout(spans))
}

/// The text of a string operand, or of a TJ array (a large negative kerning is a word gap).
fn decode(encoding: Option<&lopdf::Encoding<'_>>, operand: Option<&Object>) -> Option<String> {
    let decode_bytes = |bytes: &[u8]| match encoding {
        Some(e) => e.bytes_to_string(bytes).ok(),
        None => Some(bytes.iter().map(|&b| char::from(b)).collect()),
    };
    match operand? {
        Object::String(bytes, _) => decode_bytes(bytes),
        Object::Array(items) => {
            let mut out = String::new();
            for item in items {
                match item {
                    Object::String(bytes, _) => out.push_str(&decode_bytes(bytes)?),
                    other if number(other) < -200.0 && !out.ends_with(' ') => out.push(' '),
                    _ => {}
                }
            }
            Some(out)
        }
        _ => None,
    }
}

/// Orders spans into lines (top to bottom, left to right) and lines into paragraphs.
fn layout(mut spans: Vec<Span>) -> String {
    spans.retain(|s| !s.text.trim().is_empty());
    spans.sort_by(|a, b| b.y.total_cmp(&a.y).then(a.x.total_cmp(&b.x)));
    let mut lines: Vec<(f64, f64, Vec<Span>)> = Vec::new();
    for span in spans {
        match lines.last_mut() {
            Some((y, size, line)) if (*y - span.y).abs() <= size.max(span.size) * 0.5 => line.push(span),
            _ => lines.push((span.y, span.size, vec![span])),
        }
    }
    let mut out = String::new();
    let mut previous: Option<(f64, f64)> = None;
    for (y, size, mut line) in lines {
        line.sort_by(|a, b| a.x.total_cmp(&b.x));
        let text = line.iter().map(|s| s.text.trim()).collect::<Vec<_>>().join(" ");
        if let Some((py, psize)) = previous {
            out.push_str(if py - y > psize.max(size) * 1.8 { "\n\n" } else { "\n" });
        }
        out.push_str(&text);
        previous = Some((y, size));
    }
    out
}

fn document_info(pdf: &lopdf::Document) -> Vec<(String, Value)> {
    let Ok(info) = pdf.trailer.get_deref(b"Info", pdf).and_then(Object::as_dict) else { return Vec::new() };
    let keys = [
        ("Title", "title"),
        ("Author", "author"),
        ("Subject", "subject"),
        ("Keywords", "keywords"),
        ("Creator", "creator"),
        ("Producer", "producer"),
        ("CreationDate", "creation_date"),
    ];
    keys.iter()
        .filter_map(|(pdf_key, key)| {
            let bytes = info.get_deref(pdf_key.as_bytes(), pdf).ok()?.as_str().ok()?;
            let text = text_string(bytes);
            (!text.trim().is_empty()).then(|| ((*key).to_owned(), Value::String(text)))
        })
        .collect()
}

/// A PDF text string: UTF-16BE with a byte-order mark, else PDFDocEncoding (Latin-1 for the
/// characters that matter here).
fn text_string(bytes: &[u8]) -> String {
    match bytes.strip_prefix(&[0xFE, 0xFF]) {
        Some(utf16) => {
            let units: Vec<u16> = utf16
                .chunks_exact(2)
                .map(|c| {
                    u16::from_be_bytes([c.first().copied().unwrap_or(0), c.get(1).copied().unwrap_or(0)])
                })
                .collect();
            String::from_utf16_lossy(&units)
        }
        None => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// Page label ranges: (first page index, style, prefix, first number).
type Labels = Vec<(usize, Option<u8>, String, i64)>;

fn page_labels(pdf: &lopdf::Document) -> Labels {
    let Ok(tree) = pdf.catalog().and_then(|c| c.get_deref(b"PageLabels", pdf)).and_then(Object::as_dict)
    else {
        return Vec::new();
    };
    let Ok(nums) = tree.get_deref(b"Nums", pdf).and_then(Object::as_array) else { return Vec::new() };
    let mut out = Vec::new();
    for pair in nums.chunks(2) {
        let (Some(start), Some(dict)) = (pair.first(), pair.get(1)) else { continue };
        let Ok(start) = start.as_i64() else { continue };
        let Ok(dict) = pdf.dereference(dict).and_then(|(_, o)| o.as_dict()) else { continue };
        let style = dict.get(b"S").and_then(Object::as_name).ok().and_then(|s| s.first().copied());
        let prefix = dict.get(b"P").and_then(Object::as_str).map(text_string).unwrap_or_default();
        let first = dict.get(b"St").and_then(Object::as_i64).unwrap_or(1);
        out.push((usize::try_from(start).unwrap_or(0), style, prefix, first));
    }
    out.sort_by_key(|l| l.0);
    out
}

fn label_for(labels: &Labels, index: usize) -> String {
    let Some((start, style, prefix, first)) = labels.iter().rev().find(|l| l.0 <= index) else {
        return (index + 1).to_string();
    };
    let n = first + i64::try_from(index - start).unwrap_or(0);
    let number = match style {
        Some(b'D') => n.to_string(),
        Some(b'R') => roman(n),
        Some(b'r') => roman(n).to_lowercase(),
        Some(b'A') => letters(n),
        Some(b'a') => letters(n).to_lowercase(),
        _ => String::new(),
    };
    format!("{prefix}{number}")
}

fn roman(mut n: i64) -> String {
    const DIGITS: [(i64, &str); 13] = [
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    ];
    let mut out = String::new();
    for (value, digits) in DIGITS {
        while n >= value {
            out.push_str(digits);
            n -= value;
        }
    }
    out
}

/// A, B, ..., Z, AA, BB, ... (the PDF page-label letter style).
fn letters(n: i64) -> String {
    if n < 1 {
        return String::new();
    }
    let letter = char::from(b'A' + u8::try_from((n - 1) % 26).unwrap_or(0));
    std::iter::repeat_n(letter, usize::try_from((n - 1) / 26 + 1).unwrap_or(1)).collect()
}

impl Loader for PdfLoader {
    fn load<'a>(&'a self, _ctx: &'a RunContext) -> BoxStream<'a, Result<Document>> {
        let (path, password) = (self.path.clone(), self.password.clone());
        blocking_stream(move |sink| match std::fs::read(&path) {
            Ok(bytes) => {
                pdf_pages(&bytes, &path.to_string_lossy(), password.as_deref(), &mut |item| sink.send(item))
            }
            Err(e) => {
                sink.send(Err(Error::io(&path, e)));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_pdf_styles() {
        let labels: Labels = vec![(0, Some(b'r'), String::new(), 1), (3, Some(b'D'), "A-".into(), 1)];
        let got: Vec<String> = (0..5).map(|i| label_for(&labels, i)).collect();
        assert_eq!(got, ["i", "ii", "iii", "A-1", "A-2"]);
        assert_eq!(label_for(&Vec::new(), 4), "5");
        assert_eq!(letters(28), "BB");
    }
}
