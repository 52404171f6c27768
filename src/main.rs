//! `aiagc`: the command-line entry point (see DESIGN.md, "Command line").

mod demo;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "aiagc",
    version,
    about = "Low-latency German voice agent for Asterisk (ARI Stasis app `aiagc`)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Plays the German fixture callers through the media engine over a
    /// simulated network and prints each turn's segmentation and latency.
    Demo(demo::DemoArgs),
    /// Model files: what is installed, where, and whether it is intact.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
}

#[derive(Subcommand)]
enum ModelsAction {
    /// Lists the model files with their source package and state.
    List {
        /// Models folder (default: $AIAGC_MODELS or ~/.cache/aiagc/models).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Verifies sizes and sha256 of every file and loads the ONNX models.
    Check {
        /// Models folder (default: $AIAGC_MODELS or ~/.cache/aiagc/models).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AIAGC_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Models {
            action: ModelsAction::List { dir },
        } => models(dir, false),
        Command::Models {
            action: ModelsAction::Check { dir },
        } => models(dir, true),
    }
}

fn models(dir: Option<PathBuf>, full: bool) -> Result<()> {
    use aiagc_models::manifest::{check, default_dir, FileState, Manifest};
    let dir = dir.unwrap_or_else(default_dir);
    let manifest = Manifest::embedded().context("reading the embedded model manifest")?;
    println!("models folder: {}", dir.display());
    let mut bad = 0;
    for f in &manifest.files {
        let state = check(&dir, f, full);
        let package = manifest.packages.iter().find(|p| p.name == f.package);
        let source = package
            .map(|p| format!("{}=={}", p.name, p.version))
            .unwrap_or_default();
        let shown = match &state {
            FileState::Ok if full => "ok (sha256)".to_string(),
            FileState::Ok => "ok (size)".to_string(),
            FileState::Missing => "MISSING".to_string(),
            FileState::WrongSize(n) => format!("WRONG SIZE {n} (expected {})", f.size),
            FileState::WrongHash(h) => format!("WRONG SHA256 {h}"),
            FileState::Unreadable(e) => format!("UNREADABLE {e}"),
        };
        if state != FileState::Ok {
            bad += 1;
        }
        println!(
            "  {:<48} {:>11} {:<12} {:<34} {}",
            f.path, f.size, f.role, source, shown
        );
    }
    if bad > 0 {
        bail!("{bad} model file(s) missing or damaged: run `bash scripts/setup.sh`");
    }
    if full {
        let lib = manifest
            .find("onnxruntime", "libonnxruntime.so.1.32.0")
            .map(|f| dir.join(&f.path))
            .context("manifest has no ONNX Runtime library")?;
        for f in manifest.files.iter().filter(|f| f.path.ends_with(".onnx")) {
            let info = aiagc_models::onnx::probe(&lib, &dir.join(&f.path))?;
            println!(
                "  loaded {:<41} inputs {:?} outputs {:?}",
                f.path, info.inputs, info.outputs
            );
        }
    }
    Ok(())
}
