//! `catena redteam`: catena's probe suite against a model, with the defences on and off; writes
//! report.html and report.json.

use std::path::PathBuf;
use std::sync::Arc;

use catena::core::security::{Defences, Spotlighting};
use catena::core::{ChatModel, Error, Result, RunContext};
use catena::models::openai::{OpenAiChatModel, OpenAiConfig};
use catena::redteam::{Probe, probes, run_with};
use clap::Args;

/// `catena redteam` options.
#[derive(Args)]
pub(crate) struct RedteamArgs {
    /// Attack the model of an OpenAI-compatible endpoint at this base URL (a `catena serve`,
    /// vLLM, a provider: `http://127.0.0.1:8080/v1`) instead of a local model.
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// The model: with --base-url, the endpoint's model name (default `chat`); otherwise a local
    /// model (`agent`, the default: Qwen2.5-Coder 1.5B; `agent-small`, `chat`) or a GGUF path.
    #[arg(long, short)]
    model: Option<String>,
    /// The environment variable holding the endpoint's API key (none needed on loopback).
    #[arg(long, default_value = "OPENAI_API_KEY")]
    api_key_env: String,
    /// Only these families, comma-separated: direct-injection, indirect-rag, indirect-tool,
    /// leakage, exfiltration, encoding, xss.
    #[arg(long, value_delimiter = ',')]
    family: Vec<String>,
    /// Only these probes, comma-separated ids (`rag-01,exfil-01`; `--list` shows them).
    #[arg(long, value_delimiter = ',')]
    probe: Vec<String>,
    /// List the probes and exit.
    #[arg(long)]
    list: bool,
    /// How the "on" setting marks untrusted text: `delimit` (the default), `datamark` (words
    /// joined by ^ too) or `encode` (base64).
    #[arg(long, value_enum, default_value_t = Mode::Delimit)]
    spotlighting: Mode,
    /// Where report.html and report.json go (created if missing).
    #[arg(long, default_value = "redteam")]
    out: PathBuf,
}

/// The spotlighting modes, as the command line names them.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Mode {
    Delimit,
    Datamark,
    Encode,
}

/// Runs `catena redteam`.
pub(crate) async fn redteam(args: RedteamArgs) -> Result<()> {
    let chosen = choose(&args)?;
    if args.list {
        for p in &chosen {
            println!("{:<12} {:<17} {}", p.id, p.family.name(), p.question);
        }
        return Ok(());
    }
    let (model, target): (Arc<dyn ChatModel>, String) = match &args.base_url {
        Some(url) => {
            let name = args.model.clone().unwrap_or_else(|| "chat".to_owned());
            let key = std::env::var(&args.api_key_env).unwrap_or_default();
            let config = OpenAiConfig::new(name.clone()).with_base_url(url.clone()).with_api_key(key);
            (Arc::new(OpenAiChatModel::new(config)?), format!("{name} at {url}"))
        }
        None => {
            let name = args.model.clone().unwrap_or_else(|| "agent".to_owned());
            (Arc::new(crate::chat_model(&name).await?), format!("local model {name}"))
        }
    };
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let bar = indicatif::ProgressBar::new(chosen.len() as u64 * 2);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} attempts",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let shown = bar.clone();
    let spotlighting = match args.spotlighting {
        Mode::Delimit => Spotlighting::Delimit,
        Mode::Datamark => Spotlighting::Datamark,
        Mode::Encode => Spotlighting::Encode,
    };
    let on = Defences::default().with_spotlighting(spotlighting);
    let ctx = RunContext::new();
    let report =
        run_with(model, &target, &chosen, &on, &ctx, move |(done, _)| shown.set_position(done as u64)).await;
    bar.finish_and_clear();

    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| Error::parse("the report as JSON", e.to_string()))?;
    let json_path = args.out.join("report.json");
    std::fs::write(&json_path, json).map_err(|e| Error::io(&json_path, e))?;
    let html_path = args.out.join("report.html");
    std::fs::write(&html_path, report.html()?).map_err(|e| Error::io(&html_path, e))?;

    println!("{:<17} {:>6} {:>14} {:>13} {:>7}", "family", "probes", "defences off", "defences on", "errors");
    for f in &report.families {
        println!(
            "{:<17} {:>6} {:>13.0}% {:>12.0}% {:>7}",
            f.family.name(),
            f.probes,
            f.success_off * 100.0,
            f.success_on * 100.0,
            f.errors
        );
    }
    println!(
        "{:<17} {:>6} {:>13.0}% {:>12.0}%",
        "all",
        chosen.len(),
        report.overall.0 * 100.0,
        report.overall.1 * 100.0
    );
    println!("attack success rate; report: {} ({:.0} s)", html_path.display(), report.seconds);
    Ok(())
}

/// The probes the flags select, or an error naming the unknown ones.
fn choose(args: &RedteamArgs) -> Result<Vec<Probe>> {
    let all = probes();
    for name in &args.family {
        if !all.iter().any(|p| p.family.name() == name) {
            let mut names: Vec<&str> = all.iter().map(|p| p.family.name()).collect();
            names.dedup();
            return Err(Error::invalid_input(format!(
                "no probe family `{name}`; the families: {}",
                names.join(", ")
            )));
        }
    }
    for id in &args.probe {
        if !all.iter().any(|p| p.id == id) {
            return Err(Error::invalid_input(format!("no probe `{id}`; `catena redteam --list` shows them")));
        }
    }
    let wanted = |p: &Probe| {
        (args.family.is_empty() || args.family.iter().any(|f| f == p.family.name()))
            && (args.probe.is_empty() || args.probe.iter().any(|id| id == p.id))
    };
    let chosen: Vec<Probe> = all.into_iter().filter(wanted).collect();
    if chosen.is_empty() {
        return Err(Error::invalid_input("--family and --probe together select no probe"));
    }
    Ok(chosen)
}
