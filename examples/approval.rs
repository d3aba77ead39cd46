//! A two-step approval workflow on the local model: the model drafts a short note, a person
//! approves, edits or sends it back with feedback, and only an approved note is saved. The run is
//! a state graph saved in SQLite after every step, so you can quit while it waits for you and
//! pick it up later, in another process.
//!
//! ```text
//! cargo run --example approval -- "Thank Ada for reviewing the graph module"
//! #  ... the draft streams, then: [a]pprove, [e]dit, [r]evise with feedback, [q]uit and decide later
//! cargo run --example approval                  # later: shows the waiting draft again
//! cargo run --example approval -- --thread other "Invite the team to Friday's demo"
//! ```
//!
//! Reading order: (1) the state, (2) the three nodes (write, review, save), (3) the graph and its
//! checkpointer, (4) the loop that starts or resumes the run and asks you.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use catena::agents::graph::{
    END, Goto, GraphEvent, GraphState, NodeContext, Outcome, Resume, START, SqliteCheckpointer, StateGraph,
    StreamMode, Thread,
};
use catena::core::{ChatModel, ChatRequest, Error, Message, Result, RunContext};
use catena::models::{LlamaChatModel, LlamaOptions};
use clap::Parser;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// Draft a note with the local model, approve it, and save it; quit while it waits and resume later.
#[derive(Debug, Parser)]
#[command(name = "approval")]
struct Args {
    /// What the note should say (starts a new run; leave it out to resume a waiting one).
    request: Option<String>,
    /// The workflow to start or resume: each thread is saved separately.
    #[arg(long, default_value = "note")]
    thread: String,
    /// Where the checkpoints and the saved notes go.
    #[arg(long, default_value = "target/approval")]
    dir: PathBuf,
    /// The local model: a default's name (`agent`, `chat`) or a GGUF path.
    #[arg(long, short, default_value = "agent")]
    model: String,
}

// (1) The state. `feedback` appends (every round of comments is kept); the rest is overwritten.
#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Note {
    request: String,
    draft: String,
    #[state(append)]
    feedback: Vec<String>,
    approved: bool,
    saved_to: Option<String>,
}

/// What the person decides at the review step (the interrupt's answer).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
enum Review {
    Approve,
    Edit { text: String },
    Revise { feedback: String },
}

// (2) The nodes.

/// Drafts the note, or redrafts it with every round of feedback so far.
async fn write(note: Note, ctx: NodeContext, model: Arc<LlamaChatModel>) -> Result<NoteUpdate> {
    let system = "You write short, friendly notes to colleagues: a greeting, two or three sentences in \
                  your own words, and a sign-off. Reply with the note only.";
    let mut prompt = format!("Write a note for this purpose: {}", note.request);
    if !note.feedback.is_empty() {
        prompt.push_str(&format!(
            "\n\nYour previous draft was:\n{}\n\nRewrite it following this feedback: {}",
            note.draft,
            note.feedback.join("; ")
        ));
    }
    let request = ChatRequest::new(vec![Message::system(system), Message::user(prompt)])
        .with_temperature(0.0)
        .with_max_tokens(200);
    // The run context carries the node's token stream to whoever streams the graph.
    let reply = model.chat(request, ctx.run_context()).await?;
    Ok(NoteUpdate::default().draft(reply.message.content.trim()))
}

/// Stops the run until a person decides; the answer arrives when the thread is resumed.
async fn review(note: Note, ctx: NodeContext) -> Result<NoteUpdate> {
    let review: Review = ctx.interrupt(&serde_json::json!({ "draft": note.draft }))?;
    Ok(match review {
        Review::Approve => NoteUpdate::default().approved(true),
        Review::Edit { text } => NoteUpdate::default().draft(text).approved(true),
        Review::Revise { feedback } => NoteUpdate::default().feedback(vec![feedback]).approved(false),
    })
}

/// Saves the approved note. Writing the same file twice is harmless, so a re-run after a crash
/// between the write and the checkpoint changes nothing.
async fn save(note: Note, ctx: NodeContext, notes: PathBuf) -> Result<NoteUpdate> {
    std::fs::create_dir_all(&notes).map_err(|e| Error::io(&notes, e))?;
    let file = notes.join(format!("{}.md", ctx.thread()));
    std::fs::write(&file, format!("{}\n", note.draft)).map_err(|e| Error::io(&file, e))?;
    Ok(NoteUpdate::default().saved_to(file.display().to_string()))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    // (3) The graph: write -> review -> (approved? save : write again).
    let model = Arc::new(LlamaChatModel::load_named(&args.model, LlamaOptions::default()).await?);
    let notes = args.dir.join("notes");
    let graph = StateGraph::<Note>::new()
        .node("write", move |note, ctx| write(note, ctx, Arc::clone(&model)))
        .node("review", review)
        .node("save", move |note, ctx| save(note, ctx, notes.clone()))
        .edge(START, "write")
        .edge("write", "review")
        .conditional_edge("review", ["save", "write"], |note: &Note| {
            vec![Goto::to(if note.approved { "save" } else { "write" })]
        })
        .edge("save", END)
        .compile()?
        .with_checkpointer(Arc::new(SqliteCheckpointer::open(args.dir.join("checkpoints.db")).await?));

    // (4) Start a new run, or pick up the one waiting on this thread.
    let thread = Thread::new(&args.thread);
    let ctx = RunContext::new();
    let waiting = graph.state(&thread).await?.is_some_and(|s| !s.interrupts.is_empty());
    let mut next = match (&args.request, waiting) {
        (Some(request), false) => Step::Start(NoteUpdate::default().request(request.as_str())),
        (None, true) => Step::AskAgain,
        (Some(_), true) => {
            return Err(Error::invalid_input(format!(
                "thread `{}` is waiting for your review: run without a request to see it, or pick another --thread",
                args.thread
            )));
        }
        (None, false) => {
            return Err(Error::invalid_input(format!(
                "nothing waits on thread `{}`: give a request, e.g. \"Thank Ada for the review\"",
                args.thread
            )));
        }
    };
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        let streamed = !matches!(next, Step::AskAgain);
        let outcome = match next {
            Step::Start(input) => drive(graph.stream(&thread, input, &[StreamMode::Messages], &ctx)).await?,
            Step::Resume(review) => {
                drive(graph.stream_resume(&thread, Resume::with(&review)?, &[StreamMode::Messages], &ctx))
                    .await?
            }
            Step::AskAgain => match graph.state(&thread).await? {
                Some(s) => Outcome::Interrupted { state: s.state, interrupts: s.interrupts },
                None => return Ok(()),
            },
        };
        let draft = match outcome {
            Outcome::Done(note) => {
                println!("Saved to {}.", note.saved_to.unwrap_or_default());
                return Ok(());
            }
            Outcome::Interrupted { interrupts, .. } => interrupts
                .first()
                .and_then(|i| i.payload.get("draft").and_then(serde_json::Value::as_str).map(str::to_owned))
                .unwrap_or_default(),
        };
        if streamed {
            println!("\n-------------");
        } else {
            println!("\n--- draft ---\n{draft}\n-------------");
        }
        print!("[a]pprove, [e]dit, [r]evise with feedback, [q]uit and decide later: ");
        std::io::stdout().flush().map_err(|e| Error::io("stdout", e))?;
        let mut ask = |prompt: &str| -> Option<String> {
            if !prompt.is_empty() {
                print!("{prompt}");
                let _ = std::io::stdout().flush();
            }
            lines.next().and_then(std::io::Result::ok).map(|l| l.trim().to_owned())
        };
        next = match ask("").as_deref() {
            Some("a") => Step::Resume(Review::Approve),
            Some("e") => Step::Resume(Review::Edit { text: ask("new text: ").unwrap_or(draft) }),
            Some("r") => Step::Resume(Review::Revise { feedback: ask("feedback: ").unwrap_or_default() }),
            _ => {
                println!(
                    "\nSaved; run `cargo run --example approval -- --thread {}` to decide.",
                    args.thread
                );
                return Ok(());
            }
        };
    }
}

/// What the loop does next.
enum Step {
    Start(NoteUpdate),
    Resume(Review),
    AskAgain,
}

/// Prints the draft's tokens as the model writes them; returns how the run ended.
async fn drive(
    mut events: futures::stream::BoxStream<'_, Result<GraphEvent<Note>>>,
) -> Result<Outcome<Note>> {
    let mut first = true;
    while let Some(event) = events.next().await {
        match event? {
            GraphEvent::Token { text, .. } => {
                if std::mem::take(&mut first) {
                    println!("\n--- draft ---");
                }
                print!("{text}");
                let _ = std::io::stdout().flush();
            }
            GraphEvent::Finished(outcome) => return Ok(outcome),
            _ => {}
        }
    }
    Err(Error::invalid_input("the run ended without an outcome"))
}
