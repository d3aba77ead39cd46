//! `catena chat` and `catena embed`: the local models from the command line.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use catena::core::{ChatModel, ChatRequest, Embedder, Error, Message, ResponseFormat, Result, RunContext};
use catena::models::{LlamaChatModel, LlamaEmbedder, LlamaOptions};
use futures::StreamExt;

use crate::{model_path, speculation};

#[derive(clap::Args)]
pub(crate) struct ChatArgs {
    /// The prompt; without one, reads turns from stdin until EOF.
    prompt: Option<String>,
    /// `chat` (the default model) or a path to a GGUF file.
    #[arg(long, short, default_value = "chat")]
    model: String,
    /// A system message.
    #[arg(long, short)]
    system: Option<String>,
    /// A JSON Schema file: the reply is constrained to JSON matching it.
    #[arg(long)]
    json_schema: Option<PathBuf>,
    /// Most tokens per reply.
    #[arg(long, default_value_t = 512)]
    max_tokens: u32,
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    temperature: Option<f32>,
    /// Context window in tokens.
    #[arg(long)]
    ctx_size: Option<u32>,
    /// Speculative decoding by prompt lookup: guesses from n-grams of the prompt and reply,
    /// checked in one batched pass (pays when the reply quotes the prompt).
    #[arg(long)]
    speculate: bool,
    /// Speculative decoding with a draft model: a smaller model of the same family (same
    /// tokenizer) guesses ahead, e.g. `agent-small` for `agent`. A default's name or a GGUF path.
    #[arg(long, value_name = "MODEL", conflicts_with = "speculate")]
    draft_model: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct EmbedArgs {
    /// Texts to embed; without any, one text per line of stdin.
    texts: Vec<String>,
    /// `embed` (the default model) or a path to a GGUF file.
    #[arg(long, short, default_value = "embed")]
    model: String,
}

/// Runs `catena chat`.
pub(crate) async fn chat(args: ChatArgs) -> Result<()> {
    let path = model_path(&args.model).await?;
    let speculation = speculation(args.speculate, args.draft_model.as_deref()).await?;
    let options = LlamaOptions { n_ctx: args.ctx_size, speculation, ..LlamaOptions::default() };
    let model = LlamaChatModel::load(&path, options).await?;
    let format = match &args.json_schema {
        None => None,
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
            let schema = serde_json::from_str(&text)
                .map_err(|e| Error::invalid_input(format!("{} is not valid JSON: {e}", file.display())))?;
            Some(ResponseFormat::JsonSchema { name: "output".into(), schema })
        }
    };
    let mut history: Vec<Message> = args.system.iter().map(|s| Message::system(s.clone())).collect();
    let make_request = |history: &[Message]| {
        let mut req = ChatRequest::new(history.to_vec()).with_max_tokens(args.max_tokens);
        req.sampling.temperature = args.temperature;
        req.response_format = format.clone();
        req
    };
    if let Some(prompt) = &args.prompt {
        history.push(Message::user(prompt.clone()));
        stream_reply(&model, make_request(&history)).await?;
        return Ok(());
    }
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if interactive {
        eprintln!("catena chat on {} — type a message; Ctrl-D to quit.", model.model_name());
    }
    let stdin = std::io::stdin();
    loop {
        if interactive {
            eprint!("> ");
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).map_err(Error::from)? == 0 {
            break;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        history.push(Message::user(line));
        match stream_reply(&model, make_request(&history)).await {
            Ok(reply) => history.push(Message::assistant(reply)),
            // Keep the session going (a too-long conversation, say): say what happened and drop
            // the turn that failed.
            Err(e) => {
                eprintln!("error: {e}");
                history.pop();
            }
        }
    }
    Ok(())
}

/// Streams a reply to stdout as it is generated; Ctrl-C stops the generation.
async fn stream_reply(model: &LlamaChatModel, request: ChatRequest) -> Result<String> {
    let ctx = RunContext::new();
    let cancel = ctx.cancellation().clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    });
    let mut stream = model.chat_stream(request, &ctx);
    let mut out = std::io::stdout();
    let mut text = String::new();
    let mut result = Ok(());
    while let Some(delta) = stream.next().await {
        match delta {
            Ok(d) => {
                text.push_str(&d.content);
                let _ = out.write_all(d.content.as_bytes());
                let _ = out.flush();
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    drop(stream);
    ctrl_c.abort();
    println!();
    match result {
        Err(Error::Cancelled) => {
            eprintln!("(stopped)");
            Ok(text)
        }
        other => other.map(|()| text),
    }
}

/// Runs `catena embed`.
pub(crate) async fn embed(args: EmbedArgs) -> Result<()> {
    let path = model_path(&args.model).await?;
    let embedder = LlamaEmbedder::load(&path, LlamaOptions::default()).await?;
    let texts: Vec<String> = if args.texts.is_empty() {
        std::io::stdin().lock().lines().collect::<std::io::Result<_>>().map_err(Error::from)?
    } else {
        args.texts
    };
    let ctx = RunContext::new().with_events(|event: catena::core::Event| {
        if let catena::core::Event::Warning { message } = event {
            eprintln!("warning: {message}");
        }
    });
    let mut out = std::io::stdout().lock();
    for chunk in texts.chunks(64) {
        let vectors = embedder.embed(chunk, &ctx).await?;
        for (text, vector) in chunk.iter().zip(vectors) {
            let line = serde_json::json!({"text": text, "embedding": vector});
            writeln!(out, "{line}").map_err(Error::from)?;
        }
    }
    Ok(())
}
