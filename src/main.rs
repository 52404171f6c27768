//! `aiagc`: the command-line entry point (see DESIGN.md, "Command line").

mod campaign_cmd;
mod check;
mod config;
mod demo;
mod eval;
mod originate;
mod serve;
mod spool;

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
    /// The embedded demo: the Asterisk simulator and the app in one process;
    /// German callers book, move, cancel and ask for a person; prints each
    /// turn (what was said, heard, answered) with its latency breakdown.
    Demo(demo::DemoArgs),
    /// Runs the Stasis app against a real Asterisk (until SIGINT/SIGTERM,
    /// then drains calls).
    Serve {
        /// Configuration file (default: ./aiagc.toml if present).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Stasis app name (overrides the file and AIAGC_APP).
        #[arg(long)]
        app: Option<String>,
        /// Dialogue backend: scenario or llm.
        #[arg(long)]
        dialogue: Option<String>,
        /// Scenario file (default: the built-in practice scenario).
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
    /// Diagnoses the way to Asterisk (HTTP, credentials, version, ARI
    /// resources, app registration), the RTP ports and the models, with a
    /// fix for each failure. Exit status 0 only when all pass.
    Check {
        /// Configuration file (default: ./aiagc.toml if present).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Prove the media path in this format instead of `[media] format`
        /// (e.g. `slin16`, to see on your own Asterisk why it is refused).
        #[arg(long)]
        format: Option<String>,
    },
    /// German recognition over the labelled fixtures: per telephone
    /// condition (µ-law, A-law, 16 kHz) and biasing (none, prompt,
    /// grammar) the word error rate, intent and slot accuracy, STT time.
    Eval(eval::EvalArgs),
    /// Concurrent German callers against the embedded simulator and the
    /// whole app: turn latency, RTP health, leaks, memory per call.
    Loadtest(demo::load::LoadArgs),
    /// Places an outbound call through ARI and follows it until it is
    /// answered and hung up (`--detach`: print the channel id and return).
    Originate(originate::OriginateArgs),
    /// Calls a list of numbers (CSV) at a bounded rate inside a time
    /// window, busy and unanswered ones again later; answered calls go on
    /// into the app as outbound calls (a person or a machine).
    Campaign(campaign_cmd::CampaignArgs),
    /// Prints the effective configuration (file, environment, defaults),
    /// where each value came from, secrets redacted.
    Config {
        /// Configuration file (default: ./aiagc.toml if present).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Post-call documents waiting for the webhook: list them, send them now.
    Spool {
        #[command(subcommand)]
        action: spool::SpoolAction,
    },
    /// Model files: what is installed, where, and whether it is intact.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Synthesizes German (or a Piper voice's language) to a WAV file.
    Say {
        /// Text to speak.
        text: String,
        /// Output WAV.
        #[arg(short, long)]
        out: PathBuf,
        /// `espeak:<voice>` (default `espeak:de`) or a Piper voice `.onnx` path.
        #[arg(long, default_value = "espeak:de")]
        voice: String,
    },
    /// Transcribes a WAV file with the local whisper model.
    Transcribe {
        /// WAV file (any rate; resampled to 16 kHz).
        file: PathBuf,
        /// Language code, or `auto`.
        #[arg(long, default_value = "de")]
        lang: String,
        /// ggml model (default: the converted whisper base, q8_0, in the models folder).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Encode the full 30 s window instead of sizing it to the audio.
        #[arg(long)]
        full_window: bool,
        /// CPU threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Vocabulary hint for the decoder (domain words).
        #[arg(long)]
        prompt: Option<String>,
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
    /// Converts a CTranslate2 whisper model to ggml (skipped when done).
    Convert {
        /// CTranslate2 folder (model.bin, tokenizer.json); default: whisper base.
        #[arg(long)]
        ct2: Option<PathBuf>,
        /// Output ggml file; default: ggml-base.bin in the models folder.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Convert even if the output exists.
        #[arg(long)]
        force: bool,
        /// Weight matrices as `f16` (default), `q8_0` or `q5_0`.
        #[arg(long, default_value = "f16")]
        quant: String,
    },
}

fn main() -> Result<()> {
    // One line per event; `AIAGC_LOG_FORMAT=json` for log shippers.
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("AIAGC_LOG").unwrap_or_else(|_| "warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("AIAGC_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    // A `.env` in the working directory, as deployments already use.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    match cli.command {
        Command::Loadtest(args) => demo::loadtest(&args),
        Command::Originate(args) => tokio::runtime::Runtime::new()?.block_on(originate::run(args)),
        Command::Check { config, format } => {
            let c = config::Config::load(config.as_deref(), &|k| std::env::var(k).ok())?;
            let codec = match &format {
                Some(f) => aiagc_engine::Codec::from_asterisk_format(f).context("--format")?,
                None => c.codec()?,
            };
            let rt = tokio::runtime::Runtime::new()?;
            let outcomes = rt.block_on(check::run(&c, codec));
            if check::print(&outcomes) {
                Ok(())
            } else {
                bail!("some checks failed (see the fixes above)")
            }
        }
        Command::Config { config } => {
            let (c, sources) =
                config::Config::load_with_sources(config.as_deref(), &|k| std::env::var(k).ok())?;
            print!("{}", c.explain(&sources));
            Ok(())
        }
        Command::Serve {
            config,
            app,
            dialogue,
            scenario,
        } => {
            let mut c = config::Config::load(config.as_deref(), &|k| std::env::var(k).ok())?;
            if let Some(a) = app {
                c.ari.app = a;
            }
            if let Some(d) = dialogue {
                c.dialogue.backend = d;
            }
            if let Some(s) = scenario {
                c.dialogue.scenario = s.display().to_string();
            }
            c.validate()?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(serve::run(c))
        }
        Command::Demo(args) => demo::run(&args),
        Command::Spool { action } => spool::run(action),
        Command::Campaign(args) => campaign_cmd::run(args),
        Command::Eval(args) => eval::run(&args),
        Command::Models {
            action: ModelsAction::List { dir },
        } => models(dir, false),
        Command::Models {
            action: ModelsAction::Check { dir },
        } => models(dir, true),
        Command::Models {
            action:
                ModelsAction::Convert {
                    ct2,
                    out,
                    force,
                    quant,
                },
        } => convert(ct2, out, force, &quant),
        Command::Transcribe {
            file,
            lang,
            model,
            full_window,
            threads,
            prompt,
        } => transcribe(&file, &lang, model, full_window, threads, prompt),
        Command::Say { text, out, voice } => say(&text, &out, &voice),
    }
}

fn convert(ct2: Option<PathBuf>, out: Option<PathBuf>, force: bool, quant: &str) -> Result<()> {
    let Some(quant) = aiagc_models::convert::Quant::parse(quant) else {
        bail!("--quant {quant}: use f16, q8_0 or q5_0");
    };
    let dir = aiagc_models::manifest::default_dir();
    let ct2 = ct2.unwrap_or_else(|| dir.join("whisper-base-ct2"));
    let out = out.unwrap_or_else(|| dir.join(aiagc_models::WHISPER_GGML));
    let newer = |a: &std::path::Path, b: &std::path::Path| -> bool {
        match (
            a.metadata().and_then(|m| m.modified()),
            b.metadata().and_then(|m| m.modified()),
        ) {
            (Ok(x), Ok(y)) => x >= y,
            _ => false,
        }
    };
    if !force && newer(&out, &ct2.join("model.bin")) {
        println!("{} is up to date", out.display());
        return Ok(());
    }
    let started = std::time::Instant::now();
    let report = aiagc_models::convert::convert_as(&ct2, &out, quant)
        .with_context(|| format!("converting {}", ct2.display()))?;
    println!(
        "{}: {} bytes, {} tensors, {} tokens, {} encoder / {} decoder layers, {:.1} s",
        out.display(),
        report.bytes,
        report.tensors,
        report.tokens,
        report.hparams.n_audio_layer,
        report.hparams.n_text_layer,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn say(text: &str, out: &std::path::Path, voice: &str) -> Result<()> {
    use aiagc_models::tts::{sentences, EspeakVoice, PiperVoice, Tts};
    let mut tts: Box<dyn Tts> = match voice.strip_prefix("espeak:") {
        Some(v) => Box::new(EspeakVoice {
            voice: v.to_owned(),
            ..EspeakVoice::german()
        }),
        None => {
            let lib = aiagc_models::onnx::library(&aiagc_models::manifest::default_dir());
            Box::new(PiperVoice::load(&lib, std::path::Path::new(voice))?)
        }
    };
    let started = std::time::Instant::now();
    let mut first_audio = None;
    let mut samples = Vec::new();
    let mut rate = 0;
    for sentence in sentences(text) {
        let audio = tts.synthesize(sentence)?;
        first_audio.get_or_insert(started.elapsed());
        rate = audio.sample_rate;
        samples.extend_from_slice(&audio.samples);
    }
    if samples.is_empty() {
        bail!("nothing to say");
    }
    aiagc_models::audio::write_wav(out, &samples, rate)?;
    eprintln!(
        "{}: {:.2} s at {} Hz, first audio after {:.0} ms, total {:.0} ms",
        out.display(),
        samples.len() as f64 / rate as f64,
        rate,
        first_audio.unwrap_or_default().as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

fn transcribe(
    file: &std::path::Path,
    lang: &str,
    model: Option<PathBuf>,
    full_window: bool,
    threads: usize,
    prompt: Option<String>,
) -> Result<()> {
    use aiagc_models::stt::{SttConfig, WhisperModel};
    let model = model.unwrap_or_else(|| {
        aiagc_models::manifest::default_dir().join(aiagc_models::WHISPER_DEFAULT)
    });
    let audio = aiagc_models::audio::read_wav_16k(file)?;
    let loaded = std::time::Instant::now();
    let whisper = WhisperModel::load(&model)?;
    let load_time = loaded.elapsed();
    let mut worker = whisper.worker()?;
    let config = SttConfig {
        language: lang.to_owned(),
        threads,
        initial_prompt: prompt,
        fit_audio_ctx: !full_window,
        ..SttConfig::default()
    };
    let t = worker.transcribe(&audio, &config)?;
    println!("{}", t.text);
    eprintln!(
        "audio {:.2} s, decode {:.0} ms (RTF {:.2}, audio_ctx {}), model load {:.0} ms",
        t.audio.as_secs_f64(),
        t.elapsed.as_secs_f64() * 1000.0,
        t.rtf(),
        t.audio_ctx,
        load_time.as_secs_f64() * 1000.0
    );
    Ok(())
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
        let lib = aiagc_models::onnx::library(&dir);
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
