//! The PDF loader on PDFs written here with lopdf: reading order, page labels, document info, an
//! image-only page, and corrupt or truncated files.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use catena_core::{Loader, RunContext};
use catena_loaders::PdfLoader;
use futures::StreamExt;
use lopdf::content::{Content, Operation};
use lopdf::{Object, Stream, dictionary};

/// A page's text runs: (x, y, text), shown in the given (not reading) order.
type Runs<'a> = &'a [(i64, i64, &'a str)];

fn pdf(pages: &[Runs<'_>], labels: bool) -> Vec<u8> {
    let mut doc = lopdf::Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font =
        doc.add_object(dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica"});
    let resources = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => font}});
    let mut kids = Vec::new();
    for runs in pages {
        let mut ops = Vec::new();
        for (x, y, text) in *runs {
            ops.push(Operation::new("BT", vec![]));
            ops.push(Operation::new("Tf", vec!["F1".into(), 12.into()]));
            ops.push(Operation::new("Td", vec![(*x).into(), (*y).into()]));
            ops.push(Operation::new("Tj", vec![Object::string_literal(*text)]));
            ops.push(Operation::new("ET", vec![]));
        }
        let content =
            doc.add_object(Stream::new(dictionary! {}, Content { operations: ops }.encode().unwrap()));
        kids.push(
            doc.add_object(dictionary! {"Type" => "Page", "Parent" => pages_id, "Contents" => content})
                .into(),
        );
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => count, "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let mut catalog = dictionary! {"Type" => "Catalog", "Pages" => pages_id};
    if labels {
        catalog.set(
            "PageLabels",
            dictionary! {"Nums" => vec![0.into(), dictionary! {"S" => "r"}.into(),
            1.into(), dictionary! {"S" => "D", "P" => Object::string_literal("A-")}.into()]},
        );
    }
    let catalog = doc.add_object(catalog);
    let info = doc.add_object(dictionary! {"Title" => Object::string_literal("Field Guide"), "Author" => Object::string_literal("Ann")});
    doc.trailer.set("Root", catalog);
    doc.trailer.set("Info", info);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

async fn load(bytes: &[u8]) -> Vec<catena_core::Result<catena_core::Document>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.pdf");
    std::fs::write(&path, bytes).unwrap();
    PdfLoader::new(&path).load(&RunContext::new()).collect().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_in_reading_order_with_labels_and_info() {
    let bytes = pdf(
        &[
            &[(72, 700, "Preface")],
            // Shown bottom line first and right half first: read top to bottom, left to right.
            &[
                (72, 600, "Second paragraph."),
                (300, 720, "world."),
                (72, 720, "Hello"),
                (72, 706, "Next line."),
            ],
            &[],
        ],
        true,
    );
    let docs = load(&bytes).await;
    assert_eq!(docs.len(), 3);
    let (first, second) = (docs[0].as_ref().unwrap(), docs[1].as_ref().unwrap());
    assert_eq!(first.content, "Preface");
    assert_eq!(second.content, "Hello world.\nNext line.\n\nSecond paragraph.");
    assert_eq!(second.metadata["page"], 1);
    assert_eq!(
        (first.metadata["page_label"].as_str(), second.metadata["page_label"].as_str()),
        (Some("i"), Some("A-1"))
    );
    assert_eq!(second.metadata["total_pages"], 3);
    assert_eq!(second.metadata["title"], "Field Guide");
    assert_eq!(second.metadata["author"], "Ann");
    assert!(second.metadata["source"].as_str().unwrap().ends_with("doc.pdf"));
    // The page with no text layer is reported, and the pages before it were kept.
    let err = docs[2].as_ref().unwrap_err().to_string();
    assert!(err.contains("page 3 of 3 has no text layer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_truncated_files_are_errors_not_panics() {
    let docs = load(b"%PDF-1.7\nthis is not really a pdf").await;
    assert_eq!(docs.len(), 1);
    assert!(docs[0].as_ref().unwrap_err().to_string().contains("not a readable PDF"));

    // Cut a real PDF at every tenth byte: each prefix gives pages or errors, never a panic.
    let bytes = pdf(&[&[(72, 700, "Some text")], &[(72, 700, "More text")]], false);
    for cut in (0..bytes.len()).step_by(bytes.len() / 10) {
        let docs = load(&bytes[..cut]).await;
        assert!(!docs.is_empty(), "a truncated file yields at least an error");
    }
}
