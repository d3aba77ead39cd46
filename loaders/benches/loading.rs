//! Loading throughput: PDF pages/s and HTML MB/s with the process's peak memory, and a mixed
//! corpus generator for the end-to-end ingest benchmark. Each part runs in its own process so
//! peak memory is its own: `cargo bench -p catena-loaders --bench loading -- pdf|html`,
//! `... -- corpus DIR MB`. benches/run.sh runs them all.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::path::Path;
use std::time::Instant;

use catena_core::{Loader, RunContext};
use catena_loaders::{HtmlLoader, PdfLoader};
use futures::StreamExt;
use lopdf::content::{Content, Operation};
use lopdf::{Object, Stream, dictionary};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 1_000_000) as usize
    }
    fn sentence(&mut self) -> String {
        const WORDS: [&str; 12] = [
            "the", "loader", "reads", "pages", "of", "text", "and", "every", "chunk", "keeps", "its",
            "source",
        ];
        let n = 6 + self.next() % 12;
        let mut s: String = (0..n).map(|_| WORDS[self.next() % WORDS.len()]).collect::<Vec<_>>().join(" ");
        s.push('.');
        s
    }
}

fn pdf_bytes(pages: usize, rng: &mut Rng) -> Vec<u8> {
    let mut doc = lopdf::Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font =
        doc.add_object(dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica"});
    let resources = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => font}});
    let mut kids = Vec::new();
    for _ in 0..pages {
        let mut ops = vec![Operation::new("BT", vec![]), Operation::new("Tf", vec!["F1".into(), 10.into()])];
        ops.push(Operation::new("Td", vec![50.into(), 800.into()]));
        ops.push(Operation::new("TL", vec![14.into()]));
        for _ in 0..50 {
            ops.push(Operation::new("Tj", vec![Object::string_literal(rng.sentence())]));
            ops.push(Operation::new("T*", vec![]));
        }
        ops.push(Operation::new("ET", vec![]));
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
        Object::Dictionary(dictionary! {"Type" => "Pages", "Kids" => kids, "Count" => count,
        "Resources" => resources, "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()]}),
    );
    let catalog = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

fn html_page(rng: &mut Rng, paragraphs: usize) -> String {
    let mut s =
        String::from("<!doctype html><html><head><title>Page</title><style>p{margin:0}</style></head><body>");
    s.push_str("<nav><a href='/'>home</a><a href='/docs'>docs</a></nav><main><h1>Title</h1>");
    for i in 0..paragraphs {
        if i % 8 == 0 {
            s.push_str(&format!("<h2>Section {i}</h2>"));
        }
        s.push_str(&format!("<p>{} <a href='/p/{i}'>link</a> {}</p>", rng.sentence(), rng.sentence()));
    }
    s.push_str("</main><footer>footer</footer><script>var x = 1;</script></body></html>");
    s
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn count(loader: impl Loader) -> (usize, usize) {
    let ctx = RunContext::new();
    let docs: Vec<_> = loader.load(&ctx).collect().await;
    let ok: Vec<_> = docs.into_iter().map(Result::unwrap).collect();
    (ok.len(), ok.iter().map(|d| d.content.len()).sum())
}

fn write_corpus(dir: &Path, megabytes: usize, rng: &mut Rng) {
    std::fs::create_dir_all(dir).unwrap();
    let target = megabytes << 20;
    let (mut written, mut i) = (0usize, 0usize);
    while written < target {
        let (name, bytes): (String, Vec<u8>) = match i % 20 {
            0..=7 => {
                let body: Vec<String> = (0..400).map(|_| rng.sentence()).collect();
                (
                    format!("doc{i}.md"),
                    format!("---\ntitle: Doc {i}\n---\n# Doc {i}\n\n{}", body.join(" ")).into_bytes(),
                )
            }
            8..=12 => (format!("page{i}.html"), html_page(rng, 150).into_bytes()),
            13..=15 => {
                let body: Vec<String> = (0..400).map(|_| rng.sentence()).collect();
                (format!("notes{i}.txt"), body.join("\n").into_bytes())
            }
            16..=17 => (format!("report{i}.pdf"), pdf_bytes(20, rng)),
            18 => {
                let rows: Vec<String> =
                    (0..500).map(|r| format!("{r},{},{}", rng.sentence(), rng.next())).collect();
                (format!("table{i}.csv"), format!("id,text,value\n{}", rows.join("\n")).into_bytes())
            }
            _ => {
                let rows: Vec<String> = (0..500)
                    .map(|r| serde_json::json!({"id": r, "text": rng.sentence()}).to_string())
                    .collect();
                (format!("events{i}.jsonl"), rows.join("\n").into_bytes())
            }
        };
        written += bytes.len();
        std::fs::write(dir.join(name), bytes).unwrap();
        i += 1;
    }
    eprintln!("wrote {i} files, {:.1} MB, to {}", written as f64 / 1e6, dir.display());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut rng = Rng(0x10ad);
    let dir = tempfile::tempdir().unwrap();
    match args.first().map(String::as_str) {
        Some("pdf") => {
            let path = dir.path().join("big.pdf");
            let bytes = pdf_bytes(500, &mut rng);
            std::fs::write(&path, &bytes).unwrap();
            let start = Instant::now();
            let (pages, chars) = rt.block_on(count(PdfLoader::new(&path)));
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({"impl": "catena", "format": "pdf", "pages": pages, "file_mb": bytes.len() as f64 / 1e6,
                    "text_mb": chars as f64 / 1e6, "seconds": secs, "pages_s": pages as f64 / secs,
                    "mb_s": bytes.len() as f64 / 1e6 / secs, "peak_rss_mb": peak_rss_mb()})
            );
        }
        Some("html") => {
            let mut total = 0;
            let files = 200;
            for i in 0..files {
                let page = html_page(&mut rng, 300);
                total += page.len();
                std::fs::write(dir.path().join(format!("p{i}.html")), page).unwrap();
            }
            let start = Instant::now();
            let mut pages = 0;
            for i in 0..files {
                pages += rt.block_on(count(HtmlLoader::new(dir.path().join(format!("p{i}.html"))))).0;
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({"impl": "catena", "format": "html", "pages": pages, "file_mb": total as f64 / 1e6,
                    "seconds": secs, "pages_s": pages as f64 / secs, "mb_s": total as f64 / 1e6 / secs,
                    "peak_rss_mb": peak_rss_mb()})
            );
        }
        Some("corpus") => {
            let out = Path::new(args.get(1).map_or("/tmp/catena-ingest-corpus", String::as_str));
            let mb = args.get(2).and_then(|m| m.parse().ok()).unwrap_or(50);
            write_corpus(out, mb, &mut rng);
        }
        _ => eprintln!("usage: cargo bench -p catena-loaders --bench loading -- pdf|html|corpus DIR MB"),
    }
}
